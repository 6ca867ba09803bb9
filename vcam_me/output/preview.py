"""A preview window showing exactly what the virtual camera sends.

Kept deliberately simple: one window, shown un-mirrored (as the other side of a call sees
it), refreshed on each frame. The window is OpenCV's HighGUI where OpenCV has one; the
installed app ships the headless OpenCV (its GUI build brings 49 MB of Qt 5, see
installers/README.md), so there the composition root hands :meth:`PreviewSink.open` a
``fallback`` that draws the same window with Qt (:mod:`vcam_me.ui.qt_preview_sink`; this
module stays free of Qt). Either must be driven from the thread that opened it (on macOS the
main thread). When the user closes the window the sink keeps accepting
frames and ignores them; ``window_closed`` tells the caller.
"""

from __future__ import annotations

import os

import numpy as np

from vcam_me.errors import OutputError
from vcam_me.output import virtualcam as _vc
from vcam_me.output.base import SinkBase, check_image
from vcam_me.types import RenderedFrame


def display_available() -> tuple[bool, str]:
    """``(ok, reason)``: whether a window can be shown (only Linux/BSD need a display server)."""
    if _vc._system() in ("Windows", "Darwin"):
        return True, "desktop session"
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return True, "display server found"
    return False, "no display (DISPLAY and WAYLAND_DISPLAY are unset)"


class PreviewSink(SinkBase):
    """Shows each frame in an OpenCV window. Build it with :meth:`open`."""

    kind = "preview window"

    def __init__(self, window_name: str, cv2_module) -> None:
        super().__init__()
        self.window_name = window_name
        self._cv2 = cv2_module
        self._bgr: np.ndarray | None = None
        #: True once the user has closed the window; frames are then ignored.
        self.window_closed = False

    @classmethod
    def open(cls, window_name: str = "vcam-me preview", *, fallback=None):
        """A HighGUI window; where this OpenCV is a headless build, ``fallback(window_name)``
        (another sink showing the same window) when given, else a one-line OutputError."""
        ok, reason = display_available()
        if not ok:
            raise OutputError(f"cannot open a preview window: {reason}; use --record FILE or the virtual camera instead")
        import cv2

        try:
            cv2.namedWindow(window_name, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO)
        except cv2.error as err:
            if fallback is not None:
                return fallback(window_name)
            detail = " ".join(str(err).split())[-160:]
            raise OutputError(f"cannot open a preview window: OpenCV has no usable GUI here ({detail}) and PySide6 "
                              "is not installed to draw one (pip install 'vcam-me[ui]')") from err
        return cls(window_name, cv2)

    def _send(self, frame: RenderedFrame) -> None:
        check_image(frame.image)
        if self.window_closed:
            return
        cv2 = self._cv2
        image = frame.image
        if self._bgr is None or self._bgr.shape != image.shape:
            self._bgr = np.empty_like(image)
        cv2.cvtColor(image, cv2.COLOR_RGB2BGR, dst=self._bgr)
        try:
            cv2.imshow(self.window_name, self._bgr)
            cv2.waitKey(1)
            if cv2.getWindowProperty(self.window_name, cv2.WND_PROP_VISIBLE) < 1:
                self.window_closed = True
        except cv2.error as err:
            raise OutputError(f"preview window failed: {' '.join(str(err).split())[-160:]}") from err

    def _close(self) -> None:
        try:
            self._cv2.destroyWindow(self.window_name)
            self._cv2.waitKey(1)
        except self._cv2.error:
            pass

