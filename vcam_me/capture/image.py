"""A still image repeated at a fixed rate (the still-photo jitter test, avatar previews).

Each repetition is a new :class:`~vcam_me.types.Frame` (new index, new timestamp) sharing
one read-only pixel array, so a tracker sees a perfectly still "camera".
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import numpy as np

from vcam_me.capture.base import LiveSource
from vcam_me.clock import Pacer
from vcam_me.errors import CaptureError
from vcam_me.media import image_problem
from vcam_me.types import Frame

log = logging.getLogger(__name__)

#: File name endings read as still images by :func:`vcam_me.capture.open_source`.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})

_MAGIC = (
    b"\xff\xd8\xff",  # JPEG
    b"\x89PNG\r\n\x1a\n",  # PNG
    b"BM",  # BMP
    b"II*\x00", b"MM\x00*",  # TIFF
)


def looks_like_image(path: Path) -> bool:
    """True if ``path`` has an image suffix or starts with a known image signature."""
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return True
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
    except OSError:
        return False
    return head.startswith(_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def read_image_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as ``(H, W, 3) uint8 RGB`` (alpha dropped, grey expanded).

    Raises:
        CaptureError: the file is missing or is not a readable image.
    """
    import cv2

    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)  # works with non-ASCII paths on Windows too
    except FileNotFoundError:
        raise CaptureError(f"image file not found: {path}") from None
    except OSError as err:
        raise CaptureError(f"cannot read image {path}: {err.strerror or err}") from None
    if data.size == 0:
        raise CaptureError(f"image {path} is empty")
    problem = image_problem(data.tobytes())
    if problem:
        raise CaptureError(f"image {path} {problem}")
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error:  # some decoders throw instead of returning None
        image = None
    if image is None:
        raise CaptureError(f"not a readable image: {path}")
    return np.ascontiguousarray(image[:, :, ::-1])


class ImageSource(LiveSource):
    """One image, repeated ``fps`` times a second (or as fast as asked, ``pace="fast"``).

    Live interface as for a camera; ``for frame in source`` yields frames forever, or
    ``max_frames`` of them.
    """

    kind = "image"

    def __init__(self, image: np.ndarray, *, fps: float = 30.0, pace: str = "realtime",
                 max_frames: int | None = None, path: Path | None = None) -> None:
        super().__init__()
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise TypeError(f"expected (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        image = np.ascontiguousarray(image)
        image.flags.writeable = False
        self.image = image
        self.fps = float(fps)
        self.pace = pace
        self.lockstep = pace == "fast"
        self.max_frames = max_frames
        self.path = path

    @classmethod
    def open(cls, path: str | Path, *, fps: float = 30.0, pace: str = "realtime",
             max_frames: int | None = None) -> "ImageSource":
        """Read ``path`` and repeat it. Raises :class:`CaptureError` if it cannot be read."""
        path = Path(path)
        image = read_image_rgb(path)
        log.info("image %s: %dx%d repeated at %g fps", path.name, image.shape[1], image.shape[0], fps)
        return cls(image, fps=fps, pace=pace, max_frames=max_frames, path=path)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.image.shape[1]), int(self.image.shape[0])

    def __iter__(self) -> Iterator[Frame]:
        self._claim("iteration")
        yield from self._frames()

    def start(self) -> None:
        if self._thread is None:
            self._claim("live")
        super().start()

    def _frames(self) -> Iterator[Frame]:
        pacer = Pacer(self.fps) if self.pace == "realtime" else None
        count = 0
        while not self._stop.is_set() and (self.max_frames is None or count < self.max_frames):
            if pacer is not None:
                pacer.wait()
            count += 1
            yield self._make_frame(self.image)

    def _run(self) -> None:
        for frame in self._frames():
            self._publish(frame)
