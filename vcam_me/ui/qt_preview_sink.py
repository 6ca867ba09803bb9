"""The preview window drawn with Qt, for OpenCV builds without HighGUI (the installed app
ships the headless OpenCV; see :mod:`vcam_me.output.preview`). ``vcam-me run --preview``
gets it through the composition root as :meth:`PreviewSink.open`'s fallback."""

from __future__ import annotations

import numpy as np

from vcam_me.output.base import SinkBase, check_image
from vcam_me.types import RenderedFrame


def _frame_widget_class():
    """A QWidget drawing the newest frame scaled to fit, its aspect kept. Defined on first use:
    PySide6 is an optional dependency of the package."""
    from PySide6.QtCore import QRectF
    from PySide6.QtGui import QColor, QImage, QPainter
    from PySide6.QtWidgets import QWidget

    class FrameWidget(QWidget):
        def __init__(self) -> None:
            super().__init__()
            self.image: np.ndarray | None = None  # kept alive while Qt reads it
            self.frames_painted = 0
            self.setMinimumSize(320, 180)

        def paintEvent(self, event) -> None:
            painter = QPainter(self)
            painter.fillRect(self.rect(), QColor(0, 0, 0))
            image = self.image
            if image is not None:
                h, w = image.shape[:2]
                scale = min(self.width() / w, self.height() / h)
                target = QRectF((self.width() - w * scale) / 2, (self.height() - h * scale) / 2, w * scale, h * scale)
                painter.drawImage(target, QImage(image.data, w, h, image.strides[0], QImage.Format.Format_RGB888))
                self.frames_painted += 1
            painter.end()

    return FrameWidget


class QtPreviewSink(SinkBase):
    """The preview drawn with Qt, for OpenCV builds without HighGUI. Build it with :meth:`open`
    from the thread that runs the stream: each frame repaints the window and runs Qt's pending
    events (there is no Qt event loop of its own, as with ``cv2.waitKey``)."""

    kind = "preview window"

    def __init__(self, window, application) -> None:
        super().__init__()
        self.window = window
        self._application = application
        self.window_closed = False

    @classmethod
    def open(cls, window_name: str = "vcam-me preview") -> QtPreviewSink:
        from PySide6.QtWidgets import QApplication

        application = QApplication.instance() or QApplication([window_name])
        window = _frame_widget_class()()
        window.setWindowTitle(window_name)
        window.resize(640, 360)
        window.show()
        application.processEvents()
        return cls(window, application)

    def _send(self, frame: RenderedFrame) -> None:
        check_image(frame.image)
        if self.window_closed:
            return
        if not self.window.isVisible():  # the user closed it
            self.window_closed = True
            return
        self.window.image = np.ascontiguousarray(frame.image)
        self.window.repaint()
        self._application.processEvents()

    def _close(self) -> None:
        self.window.close()
        self._application.processEvents()
