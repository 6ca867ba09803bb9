"""The preview window: the output exactly as the call receives it (label and mark included),
with an optional overlay of the live figures and the current AUs as bars."""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt, Slot
from PySide6.QtGui import QColor, QFont, QImage, QPainter
from PySide6.QtWidgets import QCheckBox, QLabel, QVBoxLayout, QWidget

from vcam_me.types import AU_CHANNELS
from vcam_me.ui.bridge import FrameReport

#: The AU panel starts this far down the frame (a fraction of its height), under the AI badge.
AU_PANEL_TOP = 0.16


def frame_image(report: FrameReport) -> QImage:
    """The frame as a QImage sharing the frame's memory (the report keeps it alive)."""
    image = report.frame.image
    h, w = image.shape[:2]
    return QImage(image.data, w, h, image.strides[0], QImage.Format.Format_RGB888)


def figures_line(report: FrameReport) -> str:
    def show(value, fmt, unit):
        return "–" if value is None else f"{value:{fmt}}{unit}"

    return (f"{show(report.fps, '.1f', ' fps')}   latency {show(report.latency_ms, '.0f', ' ms')}   "
            f"CPU {show(report.cpu_cores, '.2f', ' cores')}")


class FrameView(QWidget):
    """Draws the newest frame, scaled to fit with its aspect kept, and the overlay."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.report: FrameReport | None = None
        self.overlay = True
        self.frames_shown = 0
        self.setMinimumSize(320, 180)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)

    def show_report(self, report: FrameReport) -> None:
        self.report = report
        self.update()

    def target_rect(self) -> QRectF:
        if self.report is None:
            return QRectF(self.rect())
        h, w = self.report.frame.image.shape[:2]
        scale = min(self.width() / w, self.height() / h)
        tw, th = w * scale, h * scale
        return QRectF((self.width() - tw) / 2, (self.height() - th) / 2, tw, th)

    def paintEvent(self, event) -> None:
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(24, 24, 24))
        report = self.report
        if report is None:
            p.setPen(QColor(200, 200, 200))
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "Not streaming: start it from the tray menu")
            p.end()
            return
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        target = self.target_rect()
        p.drawImage(target, frame_image(report))
        self.frames_shown += 1
        if self.overlay:
            self._draw_overlay(p, report, target)
        p.end()

    def _draw_overlay(self, p: QPainter, report: FrameReport, target: QRectF) -> None:
        font = QFont()
        font.setPixelSize(12)
        p.setFont(font)
        text = figures_line(report)
        box = QRectF(target.left() + 6, target.top() + 6, p.fontMetrics().horizontalAdvance(text) + 12, 20)
        p.fillRect(box, QColor(0, 0, 0, 170))
        p.setPen(QColor(255, 255, 255))
        p.drawText(box, Qt.AlignmentFlag.AlignCenter, text)
        # the current AUs, one thin bar each, in a panel at the right edge, below the frame's
        # own "AI" badge (the disclosure stays visible in the preview too)
        au = report.state.au
        rows = len(AU_CHANNELS)
        top = target.top() + AU_PANEL_TOP * target.height()
        row_h = max((target.bottom() - 6 - top) / rows, 3.0)
        small = QFont()
        small.setPixelSize(max(int(row_h) - 1, 6))
        p.setFont(small)
        panel = QRectF(target.right() - 130, top, 124, row_h * rows)
        p.fillRect(panel, QColor(0, 0, 0, 150))
        for i, name in enumerate(AU_CHANNELS):
            y = panel.top() + i * row_h
            p.setPen(QColor(230, 230, 230))
            p.drawText(QRectF(panel.left() + 3, y, 56, row_h), Qt.AlignmentFlag.AlignVCenter, name)
            value = float(min(max(au[i], 0.0), 1.0))
            p.fillRect(QRectF(panel.left() + 60, y + 1, 60, max(row_h - 2, 1)), QColor(70, 70, 70))
            p.fillRect(QRectF(panel.left() + 60, y + 1, 60 * value, max(row_h - 2, 1)), QColor(90, 200, 120))


class PreviewWindow(QWidget):
    """A window with the frame view and a switch for the overlay. Feed it with
    ``bridge.frame_ready.connect(window.show_report)``; hidden windows ignore frames."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("vcam-me preview — what the call sees")
        self.view = FrameView(self)
        self.overlay_box = QCheckBox("Show fps, latency, CPU and AUs", self)
        self.overlay_box.setChecked(True)
        self.overlay_box.toggled.connect(self._set_overlay)
        #: the latest notice, where there is no tray to show it (empty: hidden)
        self.message = QLabel("", self)
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #cf222e")
        self.message.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.message)
        layout.addWidget(self.overlay_box)
        self.resize(660, 420)

    @Slot(object)
    def show_report(self, report: FrameReport) -> None:
        if self.isVisible():
            self.view.show_report(report)

    def show_message(self, text: str) -> None:
        self.message.setText(text)
        self.message.setVisible(bool(text))

    def _set_overlay(self, on: bool) -> None:
        self.view.overlay = on
        self.view.update()
