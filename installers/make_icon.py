"""The app's icon files for the installers, drawn by the app's own tray-icon code (the green
"live" icon), so every system shows the same picture:

    python installers/make_icon.py build/icon

writes ``vcam-me.png`` (256 px: the AppImage and Linux menus), ``vcam-me.ico`` (16 to 256 px:
the Windows executables, shortcuts and installer) and ``vcam-me.icns`` (the macOS .app).
Runs without a display (Qt's offscreen platform).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ICO_SIZES = [(16, 16), (24, 24), (32, 32), (48, 48), (64, 64), (128, 128), (256, 256)]


def draw(size: int):
    """The icon as a Pillow RGBA image of ``size`` pixels."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import io

    from PIL import Image
    from PySide6.QtCore import QBuffer, QIODevice
    from PySide6.QtWidgets import QApplication

    from vcam_me.ui.bridge import StreamStatus
    from vcam_me.ui.qt_icons import status_pixmap

    _app = QApplication.instance() or QApplication(["vcam-me-icon"])  # noqa: F841 - pixmaps need one
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not status_pixmap(StreamStatus.LIVE, size).save(buffer, "PNG"):
        raise SystemExit("make_icon: Qt could not draw the icon")
    return Image.open(io.BytesIO(bytes(buffer.data()))).convert("RGBA")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python installers/make_icon.py OUT_DIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    big = draw(1024)
    big.resize((256, 256), resample=3).save(out / "vcam-me.png")  # 3: bicubic
    big.save(out / "vcam-me.ico", sizes=ICO_SIZES)
    big.save(out / "vcam-me.icns")
    print(f"make_icon: {out}/vcam-me.png, .ico, .icns")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
