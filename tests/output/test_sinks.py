"""Memory sink, fan-out, preview window errors, and the public surface of vcam_me.output."""

from __future__ import annotations

import numpy as np
import pytest

from vcam_me import output
from vcam_me.errors import OutputError
from vcam_me.output import FanOutSink, MemorySink, PreviewSink, Sink
from vcam_me.output import virtualcam as vc
from vcam_me.types import RenderedFrame


def _frame(i, size=(8, 6)):
    return RenderedFrame(np.full((size[1], size[0], 3), i, np.uint8), i * 10, i * 10 - 3)


def test_public_surface():
    assert set(output.__all__) == {
        "DEFAULT_BACKENDS", "FanOutSink", "MemorySink", "PreviewSink", "RecorderSink", "RetryingVirtualCamera",
        "Sink", "SinkBase",
        "VirtualCameraSink", "check_image", "check_writable", "display_available", "driver_hint",
        "virtual_camera_status",
    }


def test_memory_sink_keeps_copies_in_order():
    buffer = np.zeros((6, 8, 3), np.uint8)
    with MemorySink() as sink:
        for i in range(5):
            buffer[:] = i
            sink.send(RenderedFrame(buffer, i * 10, None))
    assert [int(f.image[0, 0, 0]) for f in sink.frames] == [0, 1, 2, 3, 4]
    assert [f.timestamp_ms for f in sink.frames] == [0, 10, 20, 30, 40]
    assert sink.count == 5
    assert isinstance(sink, Sink)


def test_memory_sink_bounded():
    sink = MemorySink(max_frames=3)
    for i in range(10):
        sink.send(_frame(i))
    assert [int(im[0, 0, 0]) for im in sink.images] == [7, 8, 9]
    assert sink.count == 10


def test_memory_sink_without_copy_keeps_the_same_arrays():
    sink = MemorySink(copy=False)
    frame = _frame(3)
    sink.send(frame)
    assert sink.frames[0] is frame


def test_memory_sink_checks_frames():
    sink = MemorySink(size=(8, 6))
    with pytest.raises(ValueError):
        sink.send(_frame(1, size=(4, 4)))
    with pytest.raises(TypeError):
        sink.send(RenderedFrame(np.zeros((6, 8, 3), np.float32), 0))
    sink.close()
    sink.close()
    with pytest.raises(OutputError):
        sink.send(_frame(1))
    with pytest.raises(ValueError):
        MemorySink(max_frames=0)


class _Failing(MemorySink):
    def __init__(self, error="boom"):
        super().__init__()
        self.error = error

    def _send(self, frame):
        raise OutputError(self.error)

    def _close(self):
        raise OutputError(f"close {self.error}")


def test_fan_out_sends_to_all_and_closes_all():
    a, b = MemorySink(), MemorySink()
    with FanOutSink([a, b]) as fan:
        for i in range(3):
            fan.send(_frame(i))
    assert a.count == b.count == 3
    assert a.closed and b.closed
    fan.close()  # idempotent


def test_fan_out_keeps_feeding_the_others_then_raises():
    bad, good = _Failing(), MemorySink()
    fan = FanOutSink([bad, good])
    with pytest.raises(OutputError, match="boom"):
        fan.send(_frame(1))
    assert good.count == 1
    with pytest.raises(OutputError, match="close boom"):
        fan.close()
    assert good.closed


def test_fan_out_raises_the_first_failure_and_logs_the_later_ones(caplog):
    good = MemorySink()
    fan = FanOutSink([_Failing(), good, _Failing("second boom")])
    with pytest.raises(OutputError, match="^boom$"):
        fan.send(_frame(1))
    assert good.count == 1 and "_Failing failed too: second boom" in caplog.text
    with pytest.raises(OutputError, match="^close boom$"):
        fan.close()
    assert good.closed and "closing _Failing failed too: close second boom" in caplog.text


def test_preview_without_display(monkeypatch):
    monkeypatch.setattr(vc, "_system", lambda: "Linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(OutputError, match="no display") as info:
        PreviewSink.open("test")
    assert "\n" not in str(info.value)


def test_preview_without_gui_support(monkeypatch):
    import cv2

    monkeypatch.setattr(vc, "_system", lambda: "Linux")
    monkeypatch.setenv("DISPLAY", ":99")

    def no_gui(*args, **kwargs):
        raise cv2.error("The function is not implemented. Rebuild the library with GTK+ support\n more")

    monkeypatch.setattr(cv2, "namedWindow", no_gui)
    with pytest.raises(OutputError, match="no usable GUI.*PySide6") as info:
        PreviewSink.open("test")  # no fallback given: what to install
    assert "\n" not in str(info.value)


def test_preview_shows_bgr_and_notices_closed_window(monkeypatch):
    """With a fake HighGUI: the window gets BGR pixels; closing it makes later frames no-ops."""
    import cv2

    shown = []

    class FakeCv2:
        error = cv2.error
        COLOR_RGB2BGR = cv2.COLOR_RGB2BGR
        WND_PROP_VISIBLE = cv2.WND_PROP_VISIBLE
        cvtColor = staticmethod(cv2.cvtColor)
        visible = 1.0

        @staticmethod
        def imshow(name, image):
            shown.append(image.copy())

        @staticmethod
        def waitKey(delay):
            return -1

        @classmethod
        def getWindowProperty(cls, name, prop):
            return cls.visible

        @staticmethod
        def destroyWindow(name):
            pass

    sink = PreviewSink("test", FakeCv2)
    image = np.zeros((4, 4, 3), np.uint8)
    image[..., 0] = 200  # red in RGB
    sink.send(RenderedFrame(image, 0))
    assert shown[0][0, 0].tolist() == [0, 0, 200]  # BGR for OpenCV
    FakeCv2.visible = 0.0
    sink.send(RenderedFrame(image, 1))
    assert sink.window_closed
    sink.send(RenderedFrame(image, 2))
    assert len(shown) == 2
    sink.close()
    sink.close()
