"""The preview window drawn with Qt, which `vcam-me run --preview` uses where OpenCV has no
HighGUI (the installed app's headless OpenCV): chosen by the composition root, it shows the
frames as sent (RGB, not swapped) and notices when the user closes it."""

from __future__ import annotations

import numpy as np
import pytest

from vcam_me.output import PreviewSink
from vcam_me.output import virtualcam as vc
from vcam_me.types import RenderedFrame

pytest.importorskip("PySide6")


def test_run_preview_draws_with_qt_when_opencv_is_headless(monkeypatch):
    import cv2

    from vcam_me.app import _qt_preview_opener
    from vcam_me.ui.qt_preview_sink import QtPreviewSink

    monkeypatch.setattr(vc, "_system", lambda: "Linux")
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")  # before Qt's application object exists

    def headless(*args, **kwargs):
        raise cv2.error("The function is not implemented. Rebuild the library with Windows, GTK+ 2.x or Cocoa support")

    monkeypatch.setattr(cv2, "namedWindow", headless)
    sink = PreviewSink.open("test", fallback=_qt_preview_opener())
    assert isinstance(sink, QtPreviewSink)
    image = np.zeros((36, 64, 3), np.uint8)
    image[..., 0] = 200  # red in RGB
    sink.send(RenderedFrame(image, 0))
    assert sink.window.frames_painted == 1
    grabbed = sink.window.grab().toImage()
    centre = grabbed.pixelColor(grabbed.width() // 2, grabbed.height() // 2)
    assert (centre.red(), centre.green(), centre.blue()) == (200, 0, 0)
    painted = sink.window.frames_painted
    sink.window.close()  # as the user closing the window
    sink.send(RenderedFrame(image, 1))
    assert sink.window_closed
    sink.send(RenderedFrame(image, 2))
    assert sink.window.frames_painted == painted
    sink.close()
