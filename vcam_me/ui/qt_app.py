"""``vcam-me`` on a desktop: the tray app. Starts streaming at once (the user picks vcam-me
as their camera in the call and steers it from the tray and the hotkeys). On the first run
(no settings file yet) a welcome window offers the set-up wizard and, when no virtual-camera
driver is present, says what to install (:mod:`vcam_me.ui.first_run`)."""

from __future__ import annotations

import logging
import sys

from vcam_me.config import AppConfig

log = logging.getLogger(__name__)


def show_first_run(tray, cfg: AppConfig):
    """The welcome window (non-modal) if this is the first run, else ``None``. Showing it
    marks the first run done, so it comes once."""
    from vcam_me.output import virtual_camera_status
    from vcam_me.ui import first_run
    from vcam_me.ui.qt_first_run import FirstRunDialog

    if not first_run.is_first_run():
        return None
    ok, status = virtual_camera_status(cfg.output)
    dialog = FirstRunDialog(None if ok else first_run.driver_advice(), status)
    dialog.setup_requested.connect(tray.run_setup)
    dialog.show()
    try:
        first_run.mark_first_run_done()
    except Exception as err:  # noqa: BLE001 - an unwritable config folder must not stop the app
        log.warning("could not write the settings file after the first run: %s", err)
    return dialog


def run_desktop(cfg: AppConfig, *, start_streaming: bool = True, notice: str | None = None) -> int:
    """Run the tray app until Quit; returns the process exit code. ``notice``: a problem to
    show as soon as the tray is up (a settings file that could not be read, say)."""
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
    if notice:
        tray.notify("Settings not loaded", notice)
    tray.first_run_dialog = show_first_run(tray, cfg)
    if start_streaming:
        controller.start()
    try:
        return app.exec()
    finally:
        controller.stop(wait_s=3.0)
