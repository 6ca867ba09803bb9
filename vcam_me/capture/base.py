"""What every capture source offers: the latest-wins live interface.

A live source runs its own thread and keeps only the newest frame; nothing is queued, so a
slow consumer never sees stale frames (it simply skips the ones it was too slow for). The
consumer remembers the index of the last frame it took and asks for a newer one::

    with open_source(options) as source:
        last = -1
        while running:
            frame = source.wait_newer(last, timeout_s=0.5)
            if frame is None:          # nothing new yet (or the source has finished)
                if source.finished:
                    break
                continue
            last = frame.index
            ...

Cameras, paced video files and repeated still images all behave this way, so the pipeline
can replay a video exactly as it would consume a webcam. Frame images are read-only (one
frame may be shared by several consumers); copy before drawing into one. Errors raised on
the source's thread are kept and re-raised (as :class:`~vcam_me.errors.CaptureError`) by
the next call of :meth:`LiveSource.wait_newer`.
"""

from __future__ import annotations

import logging
import threading

from vcam_me.clock import now_ms
from vcam_me.errors import CaptureError
from vcam_me.types import Frame

log = logging.getLogger(__name__)


class LiveSource:
    """Base class: one background producer thread, one slot holding the newest frame.

    Subclasses implement :meth:`_run` (the producer loop, which calls :meth:`_publish` and
    checks :attr:`_stop`) and may override :meth:`_release` (free the device or file).
    """

    #: Name used in log lines and the thread name.
    kind = "source"

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._next_index = 0
        self._last_ts = -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._finished = False
        self._error: BaseException | None = None
        self._closed = False
        self._close_lock = threading.Lock()
        #: Times the device came back after disappearing (cameras only; see ``reconnects``).
        self.reconnect_count = 0
        #: When True the producer waits until each frame has been taken by
        #: :meth:`wait_newer` before making the next: no frame is skipped and none queues.
        #: Files and images set it for ``pace="fast"``; a camera never does.
        self.lockstep = False
        self._taken_index = -1
        self._consumer: str | None = None  # how a read-once source is being read (see _claim)

    # -- consumer side ---------------------------------------------------------------------
    def start(self) -> None:
        """Start the producer thread (idempotent; :meth:`wait_newer` calls it when needed)."""
        with self._close_lock:
            if self._closed:
                raise RuntimeError(f"{self.kind} is closed")
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._thread_main, name=f"vcam-{self.kind}", daemon=True)
            self._thread.start()

    def latest(self) -> Frame | None:
        """The newest frame so far, or ``None`` before the first one. Never blocks."""
        with self._cond:
            return self._latest

    def wait_newer(self, after_index: int = -1, timeout_s: float | None = None) -> Frame | None:
        """The newest frame whose ``index`` is greater than ``after_index``.

        Blocks up to ``timeout_s`` seconds (``None``: until one arrives or the source
        finishes). Returns ``None`` on timeout and once the source has :attr:`finished`
        (or was closed) with nothing newer left. Frames the caller was too slow for are
        skipped, never queued (except in lockstep, see :attr:`lockstep`). An error on the
        source's thread is re-raised here as ``CaptureError``.
        """
        if not self._closed:
            self.start()
        with self._cond:
            ok = self._cond.wait_for(
                lambda: (self._latest is not None and self._latest.index > after_index)
                or self._finished
                or self._error is not None
                or self._closed,
                timeout=timeout_s,
            )
            if self._error is not None:
                err = self._error
                if isinstance(err, CaptureError):
                    raise CaptureError(str(err)) from err
                raise CaptureError(f"{self.kind} failed: {type(err).__name__}: {err}") from err
            if ok and self._latest is not None and self._latest.index > after_index:
                if self._latest.index > self._taken_index:
                    self._taken_index = self._latest.index
                    self._cond.notify_all()  # a lockstep producer may go on
                return self._latest
            return None

    @property
    def reconnects(self) -> int:
        """How many times the device came back after disappearing (always 0 for files)."""
        return self.reconnect_count

    @property
    def finished(self) -> bool:
        """True once the source will produce no more frames (end of a non-looping file, closed)."""
        with self._cond:
            return self._finished or self._closed

    # -- producer side ---------------------------------------------------------------------
    def _stamp(self) -> int:
        """A strictly increasing capture timestamp (ms) on the shared monotonic clock."""
        ts = max(now_ms(), self._last_ts + 1)
        self._last_ts = ts
        return ts

    def _make_frame(self, image, timestamp_ms: int | None = None) -> Frame:
        # One frame may be read by several consumers at once: nobody may draw into it.
        image.flags.writeable = False
        frame = Frame(image=image, timestamp_ms=self._stamp() if timestamp_ms is None else timestamp_ms,
                      index=self._next_index)
        self._next_index += 1
        return frame

    def _publish(self, frame: Frame) -> None:
        with self._cond:
            self._latest = frame
            self._cond.notify_all()
            if self.lockstep:  # hand over one frame at a time: wait until this one is taken
                self._cond.wait_for(lambda: self._taken_index >= frame.index or self._stop.is_set())

    def _finish(self) -> None:
        with self._cond:
            self._finished = True
            self._cond.notify_all()

    def _thread_main(self) -> None:
        try:
            self._run()
        except BaseException as err:  # thread boundary: keep it for the consumer, log it
            log.error("%s stopped: %s", self.kind, err)
            with self._cond:
                self._error = err
                self._cond.notify_all()
        finally:
            self._finish()

    def _claim(self, how: str) -> None:
        """Mark a read-once source (a file, an image) as read ``how`` ("iteration" or "live"):
        its frames go to one reader, so a second claim is a programming error."""
        if self._closed:
            raise RuntimeError(f"{self.kind} source is closed")
        if self._consumer is not None:
            raise RuntimeError(f"{self.kind} source already consumed by {self._consumer}; open it again for {how}")
        self._consumer = how

    def _run(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _release(self) -> None:
        """Free the underlying device or file (called once, by :meth:`close`)."""

    # -- lifetime --------------------------------------------------------------------------
    def close(self, join_timeout_s: float = 3.0) -> None:
        """Stop the thread and release the device or file. Idempotent."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(join_timeout_s)
            if thread.is_alive():
                log.warning("%s thread did not stop within %.1f s", self.kind, join_timeout_s)
        self._release()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close(join_timeout_s=0.1)
        except Exception:
            pass


def first_line(err: BaseException) -> str:
    """The first non-empty line of an exception's text (libraries raise long messages)."""
    for line in str(err).splitlines():
        if line.strip():
            return line.strip()
    return type(err).__name__


