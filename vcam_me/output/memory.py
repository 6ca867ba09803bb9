"""An in-memory sink for tests and for code that inspects what would have been sent."""

from __future__ import annotations

from collections import deque

import numpy as np

from vcam_me.output.base import SinkBase, check_image
from vcam_me.types import RenderedFrame


class MemorySink(SinkBase):
    """Keeps the frames it is sent (all of them, or the newest ``max_frames``).

    Args:
        max_frames: keep at most this many (oldest dropped first); ``None`` keeps all.
        copy: store a copy of each image (default), so later changes to the caller's buffer
            do not alter what was recorded. ``False`` stores the caller's frames as they are.
        size: if given, ``(width, height)`` every frame must have.
    """

    kind = "memory sink"

    def __init__(self, max_frames: int | None = None, *, copy: bool = True, size: tuple[int, int] | None = None) -> None:
        super().__init__()
        if max_frames is not None and max_frames < 1:
            raise ValueError(f"max_frames must be ≥ 1 or None, got {max_frames}")
        self._frames: deque[RenderedFrame] = deque(maxlen=max_frames)
        self._copy = copy
        self._size = size
        #: Frames sent in total (including those no longer kept).
        self.count = 0

    def _send(self, frame: RenderedFrame) -> None:
        check_image(frame.image, self._size)
        if self._copy:
            frame = RenderedFrame(np.array(frame.image, copy=True), frame.timestamp_ms, frame.source_timestamp_ms)
        self._frames.append(frame)
        self.count += 1

    @property
    def frames(self) -> list[RenderedFrame]:
        """The kept frames, oldest first."""
        return list(self._frames)

    @property
    def images(self) -> list[np.ndarray]:
        return [f.image for f in self._frames]

    def clear(self) -> None:
        self._frames.clear()
