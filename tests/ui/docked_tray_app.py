"""The tray app on a real X server with a real system-tray host: run by test_qt_tray_docked.py
as a child process (Qt's platform is chosen once per process, and the test process runs
offscreen). Usage: ``python docked_tray_app.py OUT_DIR`` with DISPLAY set and a tray host up.

It builds the tray app as ``vcam-me`` does (the controller streaming the bundled clip through
MediaPipe and the avatar into an in-memory sink), shows the icon, grabs the screen where the
icon docked while stopped, starts the stream from the menu's action and grabs it again when
live, then right-clicks the icon with xdotool and grabs the menu that opens. Prints one JSON
line of what it saw; the screenshots go to OUT_DIR.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from PySide6.QtWidgets import QApplication, QSystemTrayIcon

from vcam_me.app import BUNDLED_AVATAR, BUNDLED_DRIVING, LiveSession
from vcam_me.config import load_config
from vcam_me.output import MemorySink
from vcam_me.ui.bridge import StreamStatus
from vcam_me.ui.controller import TrayController
from vcam_me.ui.qt_bridge import QtBridge
from vcam_me.ui.qt_tray import TrayApp


def wait_for(app: QApplication, condition, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        app.processEvents()
        if condition():
            return True
        time.sleep(0.02)
    return False


def grab(app: QApplication, out: Path) -> None:
    """Save the whole screen (the root window, tray host and all) to ``out``."""
    app.processEvents()
    app.primaryScreen().grabWindow(0).save(str(out))


def window_tree() -> str:
    """``xwininfo -root -tree``: which windows the X server holds, and whose children they are."""
    if shutil.which("xwininfo") is None:
        return ""
    return subprocess.run(["xwininfo", "-root", "-tree"], check=False, capture_output=True, text=True, timeout=10).stdout


def main(out_dir: Path) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    app = QApplication(["vcam-me"])
    app.setQuitOnLastWindowClosed(False)
    seen: dict = {"platform": app.platformName(), "tray_available": QSystemTrayIcon.isSystemTrayAvailable()}
    cfg = load_config(use_user_config=False)
    cfg = dataclasses.replace(
        cfg, capture=dataclasses.replace(cfg.capture, source=str(BUNDLED_DRIVING), loop=True, pace="realtime"),
        output=dataclasses.replace(cfg.output, width=320, height=180, fps=30),
        avatar=dataclasses.replace(cfg.avatar, appearance="warp"))
    sink = MemorySink(max_frames=60)
    bridge = QtBridge()
    controller = TrayController(
        cfg, bridge.listener, avatars=lambda: [("sample", BUNDLED_AVATAR)], log_folder=lambda: out_dir / "logs",
        make_session=lambda c, listener, **kw: LiveSession(c, listener, sinks=[sink], hotkeys=False, microphone=False,
                                                            **kw))
    tray = TrayApp(controller, bridge, open_folder=lambda _path: None, on_quit=lambda: None)
    seen["use_tray"] = tray.use_tray
    tray.show()
    try:
        # docked: the tray host has embedded the icon, which then has a place on the screen
        seen["docked"] = wait_for(app, lambda: tray.tray.isVisible() and tray.tray.geometry().width() > 0, 10.0)
        wait_for(app, lambda: False, 0.5)  # the host paints the embedded window
        rect = tray.tray.geometry()
        seen["icon"] = [rect.x(), rect.y(), rect.width(), rect.height()]
        seen["preview_visible"] = tray.preview.isVisible()
        seen["window_tree"] = window_tree()
        grab(app, out_dir / "tray-stopped.png")

        tray.actions["start_stop"].trigger()
        seen["live"] = wait_for(app, lambda: bridge.stream_status is StreamStatus.LIVE, 60.0)
        wait_for(app, lambda: False, 0.5)
        seen["frames_sent"] = sink.count
        grab(app, out_dir / "tray-live.png")
        seen["tooltip"] = tray.tray.toolTip()

        # the context menu: a real right click on the docked icon, as the user would
        centre = rect.center()
        seen["menu_opened"] = False
        if shutil.which("xdotool"):
            subprocess.run(["xdotool", "mousemove", str(centre.x()), str(centre.y()), "click", "3"], check=True,
                           timeout=10)
            seen["menu_opened"] = wait_for(app, tray.menu.isVisible, 10.0)
        if seen["menu_opened"]:
            wait_for(app, lambda: False, 0.3)
            menu = tray.menu.geometry()
            seen["menu"] = [menu.x(), menu.y(), menu.width(), menu.height()]
            seen["menu_items"] = [a.text() for a in tray.menu.actions() if a.text()]
            grab(app, out_dir / "tray-menu.png")
            tray.menu.close()
    finally:
        controller.stop(wait_s=5.0)
        tray.tray.hide()
    print(json.dumps(seen))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
