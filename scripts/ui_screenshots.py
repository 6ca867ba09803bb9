"""Screenshots of the desktop app on a real X display: the tray menu open beside the preview
window, while the bundled real clip streams through the whole pipeline.

Run it under an X server (the UI tests start their own Xvfb; on a desktop it opens the
windows on your screen for a few seconds):

    .venv/bin/python scripts/ui_screenshots.py OUT_FOLDER [--docs]

It writes OUT_FOLDER/desktop.png (the whole screen, grabbed from the X server), crops of it
(tray-menu-and-preview.png, tray-menu.png, preview.png) and last-frame.png (the frame the
output last received), and prints one JSON line with what it measured. ``--docs`` writes
only the README's two pictures, small (docs/screenshots/ takes PNGs under 200 KB).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

MENU_AT = (700, 40)  # where the menu pops up, right of the preview window (screen pixels)


def save_small(pixmap, path: Path) -> None:
    """A PNG with a 256-colour palette: a third of the size, hardly different on screen."""
    import io

    from PIL import Image
    from PySide6.QtCore import QBuffer, QIODevice

    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    pixmap.save(buffer, "PNG")
    image = Image.open(io.BytesIO(bytes(buffer.data()))).convert("RGB")
    image.quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seconds", type=float, default=4.0, help="stream this long before the screenshot")
    parser.add_argument("--docs", action="store_true", help="small PNGs for the README")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv[:1])
    ok = shoot(app, args)
    # Every Qt object of shoot() is gone by now; free what Qt still holds while it is alive
    # (left to interpreter exit, PySide6 6.12 can crash freeing widgets).
    app.processEvents()
    app.shutdown()
    return 0 if ok else 1


def shoot(app, args) -> bool:
    import cv2
    from PySide6.QtCore import QPoint, Qt

    from vcam_me.app import BUNDLED_AVATAR, BUNDLED_DRIVING, LiveSession
    from vcam_me.config import load_config
    from vcam_me.output import MemorySink
    from vcam_me.ui.controller import TrayController
    from vcam_me.ui.qt_bridge import QtBridge
    from vcam_me.ui.qt_tray import TrayApp

    cfg = load_config(use_user_config=False)
    cfg = dataclasses.replace(
        cfg,
        capture=dataclasses.replace(cfg.capture, source=str(BUNDLED_DRIVING), loop=True, pace="realtime"),
        output=dataclasses.replace(cfg.output, width=640, height=360, fps=30),
    )
    sink = MemorySink(max_frames=2)

    def make_session(cfg, listener, **kwargs):  # the memory sink stands in for the virtual camera
        return LiveSession(cfg, listener, sinks=[sink], hotkeys=False, microphone=False, **kwargs)

    bridge = QtBridge()
    controller = TrayController(cfg, bridge.listener, make_session=make_session,
                                avatars=lambda: [("sample", BUNDLED_AVATAR)])
    tray = TrayApp(controller, bridge, use_tray=False, on_quit=app.quit)
    tray.preview.move(10, 10)
    tray.preview.show()
    controller.start()
    deadline = time.monotonic() + 60
    while sink.count == 0 and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.01)
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)
    tray.menu.popup(QPoint(*MENU_AT))
    settle = time.monotonic() + 0.5
    while time.monotonic() < settle:
        app.processEvents()
        time.sleep(0.01)
    screen = app.primaryScreen()
    desktop = screen.grabWindow(0)
    frame = sink.frames[-1].image if sink.count else None
    menu_rect = tray.menu.frameGeometry()
    preview_rect = tray.preview.frameGeometry()
    figures = {"frames_sent": sink.count, "frames_painted": tray.preview.view.frames_shown,
               "status": bridge.stream_status.value, "platform": app.platformName(),
               "menu": [menu_rect.x(), menu_rect.y(), menu_rect.width(), menu_rect.height()],
               "preview": [preview_rect.x(), preview_rect.y(), preview_rect.width(), preview_rect.height()]}
    tray.menu.hide()
    controller.stop(wait_s=5.0)

    menu = desktop.copy(menu_rect)
    preview = desktop.copy(preview_rect)
    if args.docs:  # the README's two pictures, small enough to commit
        both = desktop.copy(preview_rect.united(menu_rect).adjusted(-6, -6, 6, 6))
        save_small(both.scaledToWidth(800, Qt.TransformationMode.SmoothTransformation), args.out / "tray-menu.png")
        save_small(preview.scaledToWidth(560, Qt.TransformationMode.SmoothTransformation), args.out / "preview.png")
    else:
        desktop.save(str(args.out / "desktop.png"))
        desktop.copy(preview_rect.united(menu_rect).adjusted(-6, -6, 6, 6)).save(str(args.out / "tray-menu-and-preview.png"))
        menu.save(str(args.out / "tray-menu.png"))
        preview.save(str(args.out / "preview.png"))
        if frame is not None:
            cv2.imwrite(str(args.out / "last-frame.png"), frame[:, :, ::-1])
    print(json.dumps(figures), flush=True)
    tray.tray.hide()
    tray.preview.close()
    return bool(sink.count and tray.preview.view.frames_shown)


if __name__ == "__main__":
    sys.exit(main())
