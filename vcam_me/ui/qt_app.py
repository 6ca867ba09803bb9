"""``vcam-me`` on a desktop: the tray app. Starts streaming at once (the user picks vcam-me
as their camera in the call and steers it from the tray and the hotkeys)."""

from __future__ import annotations

import sys

from vcam_me.config import AppConfig


def run_desktop(cfg: AppConfig, *, start_streaming: bool = True) -> int:
    """Run the tray app until Quit; returns the process exit code."""
    from PySide6.QtWidgets import QApplication

    from vcam_me.ui.controller import TrayController
    from vcam_me.ui.qt_bridge import QtBridge
    from vcam_me.ui.qt_tray import TrayApp

    app = QApplication.instance() or QApplication(sys.argv[:1] or ["vcam-me"])
    app.setApplicationName("vcam-me")
    app.setQuitOnLastWindowClosed(False)  # closing the preview leaves the tray running
    bridge = QtBridge()
    controller = TrayController(cfg, bridge.listener)
    tray = TrayApp(controller, bridge)
    tray.show()
    if start_streaming:
        controller.start()
    try:
        return app.exec()
    finally:
        controller.stop(wait_s=3.0)
