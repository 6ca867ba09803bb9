"""``vcam-me desktop-entry``: the AppImage's applications-menu entry, written into a private data
folder from a stand-in AppImage (a file and its "mounted" folder, as the runtime sets APPIMAGE
and APPDIR); the real AppImage runs it in installers/linux/smoke_test.sh's environment."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from vcam_me.app import main
from vcam_me.config import PROJECT_ROOT

DESKTOP = PROJECT_ROOT / "installers" / "linux" / "vcam-me.desktop"


@pytest.fixture
def appimage(tmp_path, monkeypatch, private_user_dirs):
    image = tmp_path / "Apps" / "vcam-me-0.1.0-x86_64.AppImage"
    image.parent.mkdir()
    image.write_bytes(b"\x7fELF stand-in")
    appdir = tmp_path / "mount"
    appdir.mkdir()
    (appdir / "vcam-me.desktop").write_text(
        DESKTOP.read_text(encoding="utf-8").replace("Icon=camera-web", "Icon=vcam-me") + "X-AppImage-Version=0.1.0\n",
        encoding="utf-8")
    (appdir / "vcam-me.png").write_bytes(b"\x89PNG stand-in")
    monkeypatch.setenv("APPIMAGE", str(image))
    monkeypatch.setenv("APPDIR", str(appdir))
    return image


def _entry(private_user_dirs: Path) -> Path:
    return private_user_dirs / "xdg_data_home" / "applications" / "vcam-me.desktop"


def _icon(private_user_dirs: Path) -> Path:
    return private_user_dirs / "xdg_data_home" / "icons" / "hicolor" / "256x256" / "apps" / "vcam-me.png"


def test_the_menu_entry_starts_the_appimage_and_has_its_icon(appimage, private_user_dirs, capsys):
    assert main(["desktop-entry"]) == 0
    entry = _entry(private_user_dirs)
    parsed = configparser.ConfigParser(interpolation=None)
    parsed.optionxform = str
    parsed.read(entry, encoding="utf-8")
    section = parsed["Desktop Entry"]
    assert section["Exec"] == f'"{appimage}"' and section["TryExec"] == str(appimage)
    assert section["Name"] == "vcam-me" and section["Icon"] == "vcam-me"
    assert _icon(private_user_dirs).read_bytes() == b"\x89PNG stand-in"
    assert str(entry) in capsys.readouterr().out
    if shutil.which("desktop-file-validate"):
        result = subprocess.run(["desktop-file-validate", str(entry)], check=False, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
    # again (the AppImage was replaced by a newer one): its own entry is rewritten, not doubled
    assert main(["desktop-entry"]) == 0
    assert [line for line in entry.read_text(encoding="utf-8").splitlines() if line.startswith("Exec=")] == [
        f'Exec="{appimage}"']


def test_remove_takes_out_what_it_wrote(appimage, private_user_dirs, capsys):
    assert main(["desktop-entry"]) == 0
    assert main(["desktop-entry", "--remove"]) == 0
    assert not _entry(private_user_dirs).exists() and not _icon(private_user_dirs).exists()
    assert main(["desktop-entry", "--remove"]) == 0
    assert "no menu entry to remove" in capsys.readouterr().out


def test_another_installs_entry_is_never_overwritten_or_removed(appimage, private_user_dirs, capsys):
    entry = _entry(private_user_dirs)
    entry.parent.mkdir(parents=True)
    entry.write_text("[Desktop Entry]\nType=Application\nName=vcam-me\nExec=/home/u/.local/share/vcam-me/vcam-me\n",
                     encoding="utf-8")
    before = entry.read_bytes()
    assert main(["desktop-entry"]) == 2
    assert main(["desktop-entry", "--remove"]) == 2
    err = capsys.readouterr().err
    assert "belongs to another vcam-me install" in err and all(len(line) < 300 for line in err.splitlines())
    assert entry.read_bytes() == before


def test_outside_an_appimage_or_from_an_awkward_path_it_says_so_in_one_line(tmp_path, monkeypatch, capsys,
                                                                            private_user_dirs):
    monkeypatch.delenv("APPIMAGE", raising=False)
    assert main(["desktop-entry"]) == 2
    assert "is for the AppImage" in capsys.readouterr().err
    odd = tmp_path / "$HOME" / "vcam-me.AppImage"
    odd.parent.mkdir()
    odd.write_bytes(b"x")
    appdir = tmp_path / "m"
    appdir.mkdir()
    (appdir / "vcam-me.desktop").write_text("[Desktop Entry]\nName=vcam-me\n", encoding="utf-8")
    monkeypatch.setenv("APPIMAGE", str(odd))
    monkeypatch.setenv("APPDIR", str(appdir))
    assert main(["desktop-entry"]) == 2
    err = capsys.readouterr().err.strip()
    assert "move the AppImage to a path without" in err and "\n" not in err
    assert not _entry(private_user_dirs).exists()
