"""Output sinks: virtual camera (pyvirtualcam), preview window, MP4 recorder, in-memory.

Every sink is duck-typed (``send(frame)``, idempotent ``close()``, context manager); see
:mod:`vcam_me.output.base`. Frames arrive as :class:`~vcam_me.types.RenderedFrame` with
``(H, W, 3) uint8 RGB`` images of the size the sink was opened with.
"""

from vcam_me.output.base import FanOutSink, Sink, SinkBase, check_image
from vcam_me.output.memory import MemorySink
from vcam_me.output.preview import PreviewSink, display_available
from vcam_me.output.recorder import RecorderSink, check_writable
from vcam_me.output.virtualcam import (
    DEFAULT_BACKENDS,
    RetryingVirtualCamera,
    VirtualCameraSink,
    driver_hint,
    virtual_camera_status,
)

__all__ = [
    "DEFAULT_BACKENDS",
    "FanOutSink",
    "MemorySink",
    "PreviewSink",
    "RecorderSink",
    "RetryingVirtualCamera",
    "Sink",
    "SinkBase",
    "VirtualCameraSink",
    "check_image",
    "check_writable",
    "display_available",
    "driver_hint",
    "virtual_camera_status",
]
