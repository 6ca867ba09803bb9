"""The preview window draws the output frame as sent, scaled to fit, with the figures and
AU bars over it when asked (pytest-qt, offscreen)."""

from __future__ import annotations

import numpy as np

from vcam_me.types import AU_INDEX, ExpressionState, RenderedFrame
from vcam_me.ui.bridge import FrameReport
from vcam_me.ui.qt_preview import AU_PANEL_TOP, PreviewWindow, figures_line


def _report(colour=(40, 120, 200), smile=0.0):
    image = np.zeros((180, 320, 3), np.uint8)
    image[:] = colour
    state = ExpressionState.neutral(1000)
    state.au[AU_INDEX["AU12_L"]] = smile
    return FrameReport(RenderedFrame(image, 1000, 960), state, fps=59.8, latency_ms=41.0, cpu_cores=0.74)


def test_the_frame_is_drawn_as_sent(qtbot):
    window = PreviewWindow()
    qtbot.addWidget(window)
    window.overlay_box.setChecked(False)
    window.show()
    window.show_report(_report())
    qtbot.waitUntil(lambda: window.view.frames_shown >= 1)
    shot = window.view.grab().toImage()
    rect = window.view.target_rect()
    assert abs(rect.width() / rect.height() - 320 / 180) < 0.02  # aspect kept
    c = shot.pixelColor(int(rect.center().x()), int(rect.center().y()))
    assert (c.red(), c.green(), c.blue()) == (40, 120, 200)


def test_the_overlay_shows_figures_and_au_bars(qtbot):
    window = PreviewWindow()
    qtbot.addWidget(window)
    window.show()
    assert figures_line(_report()) == "59.8 fps   latency 41 ms   CPU 0.74 cores"
    bars = []
    for smile in (0.0, 1.0):
        window.show_report(_report(smile=smile))
        qtbot.waitUntil(lambda: window.view.report is not None)
        window.view.repaint()
        bars.append(window.view.grab().toImage())
    rect = window.view.target_rect()
    top = rect.top() + AU_PANEL_TOP * rect.height()
    row_h = max((rect.bottom() - 6 - top) / 45, 3.0)
    y = int(top + (AU_INDEX["AU12_L"] + 0.5) * row_h)
    x = int(rect.right() - 130 + 60 + 50)  # near the end of the AU12_L bar
    empty, full = bars[0].pixelColor(x, y), bars[1].pixelColor(x, y)
    assert full.green() > 150 and empty.green() < 100  # the bar fills with the smile


def test_a_hidden_preview_ignores_frames(qtbot):
    window = PreviewWindow()
    qtbot.addWidget(window)
    window.show_report(_report())
    assert window.view.report is None


def test_painting_does_not_corrupt_python(qtbot):
    """PySide6 6.12.0 dropped a reference to None on every void QPainter call (Python 3.11): a
    preview painting for a minute ends in 'deallocating None' when the process exits. The
    pinned version must not: None's reference count stays put over 300 paints."""
    import sys

    window = PreviewWindow()
    qtbot.addWidget(window)
    window.show()
    window.show_report(_report(smile=0.5))
    window.view.repaint()
    before = sys.getrefcount(None)
    for _ in range(300):
        window.view.repaint()
    assert sys.getrefcount(None) - before > -100  # 6.12.0 loses about one per paint (-299 measured)
