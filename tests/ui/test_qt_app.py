"""`vcam-me` with no command: the tray app where there is a desktop, the help elsewhere;
the tray app itself starts and quits (offscreen)."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QTimer

from vcam_me.app import desktop_available, main


def test_without_a_display_bare_vcam_me_prints_the_help(monkeypatch, capsys, private_user_dirs):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr("platform.system", lambda: "Linux")
    assert not desktop_available()
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: vcam-me") and "demo" in out and "run" in out


def test_on_a_desktop_bare_vcam_me_opens_the_tray_app(monkeypatch, private_user_dirs):
    calls = []
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr("vcam_me.ui.qt_app.run_desktop", lambda cfg, notice=None: calls.append(cfg) or 0)
    assert desktop_available()
    assert main([]) == 0
    assert len(calls) == 1 and calls[0].output.fps in (30, 60)


def test_unreadable_settings_stop_a_command_with_one_line(monkeypatch, capsys, private_user_dirs):
    from vcam_me.config import user_config_path

    path = user_config_path()
    path.parent.mkdir(parents=True)
    path.write_text("[output\nfps = ", encoding="utf-8")
    assert main(["avatar", "list"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(path) in err and "not valid TOML" in err


def test_the_tray_app_starts_with_defaults_and_says_so_when_settings_are_unreadable(monkeypatch, capsys,
                                                                                    private_user_dirs):
    from vcam_me.config import load_config, user_config_path

    path = user_config_path()
    path.parent.mkdir(parents=True)
    path.write_text("[output]\nfps = 30\n\x00garbage", encoding="utf-8")
    calls = []
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr("vcam_me.ui.qt_app.run_desktop", lambda cfg, notice=None: calls.append((cfg, notice)) or 0)
    assert main([]) == 0
    (cfg, notice), = calls
    assert cfg == load_config(use_user_config=False), "the defaults, not a half-read file"
    assert str(path) in notice and "default settings" in notice and "\n" not in notice
    assert notice in capsys.readouterr().err
    assert path.read_text(encoding="utf-8").endswith("garbage"), "the user's file is left as it was"


def test_the_tray_shows_the_settings_notice(qapp, private_user_dirs, monkeypatch):
    from vcam_me.config import load_config
    from vcam_me.ui import qt_tray
    from vcam_me.ui.qt_app import run_desktop

    shown = []
    real_notify = qt_tray.TrayApp.notify
    monkeypatch.setattr(qt_tray.TrayApp, "notify", lambda self, title, text: shown.append(text) or real_notify(self, title, text))
    QTimer.singleShot(300, qapp.quit)
    assert run_desktop(load_config(), start_streaming=False, notice="config.toml is not valid TOML") == 0
    assert "config.toml is not valid TOML" in shown


def test_the_tray_app_starts_and_quits(qapp, private_user_dirs):
    from vcam_me.config import load_config
    from vcam_me.ui.qt_app import run_desktop

    QTimer.singleShot(300, qapp.quit)  # as Quit in the menu does
    assert run_desktop(load_config(), start_streaming=False) == 0


@pytest.mark.parametrize("args", [["demo", "--help"], ["run", "--help"]])
def test_the_subcommands_stay_usable(args, capsys):
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 0 and "usage: vcam-me" in capsys.readouterr().out


def test_only_the_qt_modules_import_qt():
    import re
    from pathlib import Path

    import vcam_me

    root = Path(vcam_me.__file__).parent
    qt_import = re.compile(r"^\s*(from|import)\s+(PySide6|shiboken6)\b", re.MULTILINE)
    importers = sorted(str(p.relative_to(root)) for p in root.rglob("*.py") if qt_import.search(p.read_text(encoding="utf-8")))
    assert importers and all(p.startswith("ui/qt") for p in importers), importers


def test_the_command_line_works_without_qt(tmp_path):
    """With PySide6 made unimportable: the core, the plain UI modules and the help all work,
    and bare `vcam-me` on a desktop says what to install."""
    import os
    import subprocess
    import sys

    script = tmp_path / "no_qt.py"
    script.write_text(
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('PySide6', 'shiboken6'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import vcam_me.app, vcam_me.cli, vcam_me.ui.bridge, vcam_me.ui.controller, vcam_me.ui.settings\n"
        "assert 'PySide6' not in sys.modules\n"
        "sys.exit(vcam_me.app.main([]))\n", encoding="utf-8")
    env = dict(os.environ, DISPLAY=":0", XDG_CONFIG_HOME=str(tmp_path))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: vcam-me")
    assert "pip install 'vcam-me[ui]'" in done.stderr
