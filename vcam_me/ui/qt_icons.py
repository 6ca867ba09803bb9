"""The tray icon, drawn in code: its colour and shape say the stream's status at a glance
(shape as well as colour, so it reads for colour-blind users and in monochrome trays)."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QIcon, QPainter, QPen, QPixmap

from vcam_me.ui.bridge import StreamStatus

#: status → (fill colour, one-word description for tooltips and the menu's status line)
STATUS_STYLE = {
    StreamStatus.LIVE: (QColor(46, 160, 67), "live"),
    StreamStatus.IDLE: (QColor(219, 154, 4), "idle (no face)"),
    StreamStatus.PAUSED: (QColor(56, 118, 217), "paused"),
    StreamStatus.ERROR: (QColor(207, 34, 46), "error"),
    StreamStatus.NO_VIRTUAL_CAMERA: (QColor(232, 106, 23), "virtual camera lost, retrying"),
    StreamStatus.STARTING: (QColor(130, 130, 130), "starting"),
    StreamStatus.STOPPED: (QColor(130, 130, 130), "stopped"),
}


def status_pixmap(status: StreamStatus, size: int = 64) -> QPixmap:
    """Live: a filled disc with a lens; idle: a ring with a lens; paused: a disc with two bars;
    error: a disc with "!"; no virtual camera: a broken ring with "!"; starting: a broken
    ring; stopped: an empty ring."""
    colour, _ = STATUS_STYLE[status]
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    p = QPainter(pixmap)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    s = float(size)
    disc = QRectF(0.06 * s, 0.06 * s, 0.88 * s, 0.88 * s)
    white = QColor(255, 255, 255)
    ring = QPen(colour, 0.12 * s)
    if status in (StreamStatus.LIVE, StreamStatus.PAUSED, StreamStatus.ERROR):
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(colour)
        p.drawEllipse(disc)
    else:
        inner = disc.adjusted(0.06 * s, 0.06 * s, -0.06 * s, -0.06 * s)
        p.setPen(ring)
        p.setBrush(Qt.BrushStyle.NoBrush)
        if status in (StreamStatus.STARTING, StreamStatus.NO_VIRTUAL_CAMERA):
            p.drawArc(inner, 90 * 16, -270 * 16)
        else:
            p.drawEllipse(inner)
    centre = QPointF(s / 2, s / 2)
    if status is StreamStatus.LIVE:
        p.setBrush(white)
        p.drawEllipse(centre, 0.16 * s, 0.16 * s)
    elif status is StreamStatus.IDLE:
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(colour)
        p.drawEllipse(centre, 0.14 * s, 0.14 * s)
    elif status is StreamStatus.PAUSED:
        p.setBrush(white)
        for x in (0.34, 0.56):
            p.drawRoundedRect(QRectF(x * s, 0.28 * s, 0.1 * s, 0.44 * s), 0.02 * s, 0.02 * s)
    elif status in (StreamStatus.ERROR, StreamStatus.NO_VIRTUAL_CAMERA):
        p.setPen(white if status is StreamStatus.ERROR else colour)
        font = QFont()
        font.setBold(True)
        font.setPixelSize(int(0.62 * s))
        p.setFont(font)
        p.drawText(disc, Qt.AlignmentFlag.AlignCenter, "!")
    p.end()
    return pixmap


def status_icon(status: StreamStatus) -> QIcon:
    icon = QIcon()
    for size in (16, 22, 32, 64):
        icon.addPixmap(status_pixmap(status, size))
    return icon
