"""The applications-menu entry of the Linux AppImage.

An AppImage is one file the user keeps wherever they like, so it cannot put itself in the
applications menu when it is unpacked, as the tarball's ``install.sh`` does. ``vcam-me
desktop-entry``, run from the AppImage, writes the menu entry (``vcam-me.desktop``, pointing at
the AppImage file) and its icon into the user's data folder; ``--remove`` takes both out. An
entry that another install wrote (the tarball's ``install.sh`` uses the same name) is never
overwritten or removed: the user is told which file to deal with first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from vcam_me.errors import VcamError
from vcam_me.storage import atomic_copy, atomic_write_text

MENU_FILE = "vcam-me.desktop"
ICON_FILE = "vcam-me.png"
#: Marks the entries this module writes, so that it only ever replaces or removes its own.
MARKER = "X-vcam-me-AppImage=true"
#: Characters a path may not hold in an Exec line without escape rules that menus handle unevenly.
_EXEC_UNSAFE = set('"`$\\%\n')


class DesktopEntryError(VcamError):
    pass


def data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def entry_path() -> Path:
    return data_home() / "applications" / MENU_FILE


def icon_path() -> Path:
    return data_home() / "icons" / "hicolor" / "256x256" / "apps" / ICON_FILE


def running_appimage() -> tuple[Path, Path]:
    """``(the AppImage file, its mounted folder)`` of the AppImage this process runs from."""
    image, appdir = os.environ.get("APPIMAGE"), os.environ.get("APPDIR")
    if not image or not appdir or not Path(image).is_file() or not (Path(appdir) / MENU_FILE).is_file():
        raise DesktopEntryError("desktop-entry is for the AppImage (run it as ./vcam-me-<version>-x86_64.AppImage "
                                "desktop-entry); the tarball's install.sh makes the menu entry itself")
    return Path(image).resolve(), Path(appdir)


def _ours(path: Path) -> bool:
    try:
        return MARKER in path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return False


def _refresh_menu(folder: Path) -> None:
    tool = shutil.which("update-desktop-database")
    if tool:  # menus that cache entries pick the change up at once; others watch the folder
        subprocess.run([tool, "-q", str(folder)], check=False, capture_output=True, timeout=30)


def install(image: Path, appdir: Path) -> tuple[Path, Path]:
    """Write the menu entry for ``image`` (from the AppImage's own ``vcam-me.desktop``) and its
    icon; returns their paths."""
    if _EXEC_UNSAFE & set(str(image)):
        raise DesktopEntryError(f"{image}: move the AppImage to a path without \" ` $ \\ or % first "
                                "(a menu entry cannot start it from there reliably)")
    entry = entry_path()
    if entry.exists() and not _ours(entry):
        raise DesktopEntryError(f"{entry} belongs to another vcam-me install; remove that first "
                                "(the tarball's ./install.sh --uninstall), then run this again")
    lines = []
    for line in (appdir / MENU_FILE).read_text(encoding="utf-8").splitlines():
        if line.startswith(("Exec=", "TryExec=", "X-vcam-me-")):
            continue
        lines.append(line)
        if line.strip() == "[Desktop Entry]":
            lines += [f'Exec="{image}"', f"TryExec={image}", MARKER]
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        icon_path().parent.mkdir(parents=True, exist_ok=True)
        atomic_copy(appdir / ICON_FILE, icon_path())
        atomic_write_text(entry, "\n".join(lines) + "\n")
    except OSError as err:
        raise DesktopEntryError(f"cannot write the menu entry: {err.strerror}: {err.filename}") from None
    _refresh_menu(entry.parent)
    return entry, icon_path()


def remove() -> list[Path]:
    """Remove the menu entry and icon this module wrote; returns what was removed."""
    entry, removed = entry_path(), []
    if entry.exists():
        if not _ours(entry):
            raise DesktopEntryError(f"{entry} belongs to another vcam-me install: left as it is")
        entry.unlink()
        removed.append(entry)
        _refresh_menu(entry.parent)
    if icon_path().exists():
        icon_path().unlink()
        removed.append(icon_path())
    return removed
