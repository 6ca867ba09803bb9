"""``vcam-me`` on a desktop: the tray app. Starts streaming at once (the user picks vcam-me
as their camera in the call and steers it from the tray and the hotkeys). On the first run
(no settings file yet) a welcome window offers the set-up wizard and, when no virtual-camera
driver is present, says what to install (:mod:`vcam_me.ui.first_run`)."""

from __future__ import annotations

import contextlib
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


#: How often Qt's event loop hands control back to Python, so that a signal handler can run (ms).
SIGNAL_POLL_MS = 250


@contextlib.contextmanager
def quit_on_termination_signals(app):
    """While inside: SIGTERM, SIGHUP and SIGINT (a logout, a shutdown, ``kill``, Ctrl+C in the
    terminal that started it) quit the tray as its Quit item does, so the session stops and
    closes a recording in progress. Python runs signal handlers only between its own bytecodes,
    and Qt's event loop is C++: a short repeating timer gives Python that chance. The previous
    handlers come back on leaving."""
    import signal

    from PySide6.QtCore import QTimer

    def quit_app(signum, _frame):
        log.warning("%s: quitting", signal.Signals(signum).name)
        app.quit()

    previous = {}
    try:
        for name in ("SIGTERM", "SIGHUP", "SIGINT"):
            number = getattr(signal, name, None)
            if number is not None:
                previous[number] = signal.signal(number, quit_app)
    except ValueError:  # not the main thread: leave the signals alone
        pass
    timer = QTimer()
    timer.timeout.connect(lambda: None)
    timer.start(SIGNAL_POLL_MS)
    try:
        yield
    finally:
        timer.stop()
        for number, handler in previous.items():
            signal.signal(number, handler)


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
        with quit_on_termination_signals(app):
            return app.exec()
    finally:
        controller.stop(wait_s=3.0)
