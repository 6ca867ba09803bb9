"""The sink interface every output offers, a base class for it, and the fan-out.

A *sink* is anything with two methods (duck-typed, like pyvirtualcam's backends)::

    send(frame: RenderedFrame) -> None   # hand one finished frame on; never keeps a reference
                                         # to frame.image unless it copies it first
    close() -> None                      # release the device/file; safe to call twice

and is a context manager whose ``__exit__`` calls ``close()``. Sinks validate at the boundary:
a frame whose image is not ``(H, W, 3) uint8 RGB`` of the size the sink was opened with is a
``TypeError``/``ValueError`` (a bug in the caller), while a device or file that cannot be
opened or written is an :class:`~vcam_me.errors.OutputError` with a one-line message.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Protocol, runtime_checkable

import numpy as np

from vcam_me.errors import OutputError
from vcam_me.types import RenderedFrame

log = logging.getLogger(__name__)


@runtime_checkable
class Sink(Protocol):
    """What the pipeline needs from an output (see the module docstring)."""

    def send(self, frame: RenderedFrame) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> "Sink": ...

    def __exit__(self, *exc) -> None: ...


def check_image(image: np.ndarray, size: tuple[int, int] | None = None) -> None:
    """Raise ``TypeError``/``ValueError`` unless ``image`` is ``(H, W, 3) uint8`` (of ``size`` = (W, H))."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"frame image must be a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(f"frame image dtype: {image.dtype} != uint8")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"frame image shape: {image.shape} != (H, W, 3)")
    if size is not None and (image.shape[1], image.shape[0]) != tuple(size):
        raise ValueError(
            f"frame size: {image.shape[1]}x{image.shape[0]} != {size[0]}x{size[1]} (the size this sink was opened with)"
        )


class SinkBase:
    """Context manager with an idempotent, thread-safe :meth:`close`.

    Subclasses implement :meth:`_send` and :meth:`_close` (called exactly once).
    """

    #: Short name for log lines and error messages.
    kind = "sink"

    def __init__(self) -> None:
        self._closed = False
        self._close_lock = threading.Lock()

    @property
    def closed(self) -> bool:
        return self._closed

    def send(self, frame: RenderedFrame) -> None:
        if self._closed:
            raise OutputError(f"{self.kind} is closed")
        self._send(frame)

    def close(self) -> None:
        """Release the device or file. Idempotent: later calls do nothing."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def _send(self, frame: RenderedFrame) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _close(self) -> None:
        pass


class FanOutSink(SinkBase):
    """Sends each frame to several sinks, in order.

    Every sink gets the frame even when an earlier one fails; then the first failure is
    raised (the others are logged). :meth:`close` closes every sink, also when some fail,
    and re-raises the first failure. The sinks see the same ``frame.image`` object, so none
    of them may modify it.
    """

    kind = "fan-out sink"

    def __init__(self, sinks: Iterable[Sink]) -> None:
        super().__init__()
        self.sinks: list[Sink] = list(sinks)

    def _send(self, frame: RenderedFrame) -> None:
        self._each(lambda sink: sink.send(frame), "%s failed too: %s")

    def _close(self) -> None:
        self._each(lambda sink: sink.close(), "closing %s failed too: %s")

    def _each(self, action: Callable[[Sink], None], later_failure: str) -> None:
        """Apply ``action`` to every sink, also after one fails; raise the first failure and
        log the later ones with ``later_failure`` (a format of the sink's class and the error)."""
        first: BaseException | None = None
        for sink in self.sinks:
            try:
                action(sink)
            except Exception as err:  # keep going through the others; report after the loop
                if first is None:
                    first = err
                else:
                    log.error(later_failure, type(sink).__name__, err)
        if first is not None:
            raise first
