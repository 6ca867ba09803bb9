"""Stage ①: camera, video file or still image in, :class:`~vcam_me.types.Frame` out.

Every source is a context manager with an idempotent ``close()`` and the same live,
latest-wins interface (``wait_newer(after_index, timeout_s)``, ``latest()``, ``finished``),
so the pipeline consumes a paced video file exactly like a webcam. Files and images can
also be iterated (``for frame in source``) for offline work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from vcam_me.capture.base import LiveSource
from vcam_me.capture.camera import (
    CameraFormat,
    CameraInfo,
    CameraSource,
    default_capture_factory,
    find_cameras,
    list_cameras,
)
from vcam_me.capture.image import ImageSource, looks_like_image, read_image_rgb
from vcam_me.capture.video import VideoFileSource
from vcam_me.config import CaptureOptions
from vcam_me.errors import CaptureError

__all__ = [
    "CameraFormat", "CameraInfo", "CameraSource", "ImageSource", "LiveSource", "VideoFileSource",
    "default_capture_factory", "find_cameras", "list_cameras", "looks_like_image", "open_source", "read_image_rgb",
]


def open_source(options: CaptureOptions | None = None, *, capture_factory=None,
                on_reconnect: Callable[[int], None] | None = None,
                wait_for_camera: bool = False) -> CameraSource | VideoFileSource | ImageSource:
    """Open what ``options.source`` names: ``"camera"``, a still image, or a video file.

    Images are recognised by their suffix or, failing that, their first bytes; they repeat
    at ``options.fps``. Videos use ``options.pace`` and ``options.loop``. A camera starts its
    thread at once; a file starts on the first ``wait_newer`` (or is iterated instead).
    ``wait_for_camera``: a missing or busy camera starts disconnected and is waited for
    (see :meth:`CameraSource.open`) instead of raising.

    Raises:
        CaptureError: the camera or file cannot be opened (one line saying why).
    """
    options = options or CaptureOptions()
    if options.source == "camera":
        return CameraSource.open(options, capture_factory=capture_factory, on_reconnect=on_reconnect,
                                 wait=wait_for_camera)
    if not options.source:
        raise CaptureError('capture.source is empty: use "camera" or a path to a video or image')
    path = Path(options.source).expanduser()
    if not path.exists():
        raise CaptureError(f"capture source not found: {path} (use \"camera\" or a path to a video or image)")
    if path.is_file() and looks_like_image(path):
        return ImageSource.open(path, fps=options.fps, pace=options.pace)
    return VideoFileSource.open(path, options)
