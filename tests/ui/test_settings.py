"""Saving settings into the user's config.toml: validated by the one config loader, written
atomically, a hand-written file kept; key combinations converted from Qt's to pynput's syntax."""

from __future__ import annotations

import pytest

from vcam_me.config import load_config, user_config_path
from vcam_me.errors import ConfigError
from vcam_me.ui.settings import HEADER, pynput_to_qt, qt_to_pynput, save_settings


@pytest.mark.parametrize(("qt", "pynput"), [
    ("Ctrl+Alt+1", "<ctrl>+<alt>+1"), ("Shift+F9", "<shift>+<f9>"), ("Ctrl+Alt+P", "<ctrl>+<alt>+p"),
    ("Meta+Space", "<cmd>+<space>"), ("Ctrl+PgDown", "<ctrl>+<page_down>"),
])
def test_key_combinations_round_trip(qt, pynput):
    assert qt_to_pynput(qt) == pynput and pynput_to_qt(pynput) == qt


@pytest.mark.parametrize("bad", ["Ctrl+K, Ctrl+C", "Ctrl+Alt", "Ctrl++", "Ctrl+Volume Up"])
def test_combinations_that_cannot_be_hotkeys_are_refused(bad):
    with pytest.raises(ValueError, match=repr(bad)[1:-1].split("+")[0]):
        qt_to_pynput(bad)


def test_saving_writes_overrides_that_load_back(private_user_dirs):
    cfg, kept = save_settings({"output": {"fps": 30, "width": 960, "height": 540},
                               "hotkeys": {"bindings": {"<ctrl>+<alt>+k": "brow_raise"}}})
    path = user_config_path()
    assert kept is None and path.read_text(encoding="utf-8").startswith(HEADER)
    loaded = load_config()
    assert loaded == cfg
    assert (loaded.output.fps, loaded.output.width, loaded.output.height) == (30, 960, 540)
    assert loaded.hotkeys.bindings == {"<ctrl>+<alt>+k": "brow_raise"}  # the table is replaced whole
    # a second save keeps the first one's values it does not change
    save_settings({"micro": {"intensity": "B"}})
    assert load_config().output.fps == 30 and load_config().micro.intensity == "B"


def test_a_hand_written_file_is_kept_and_its_values_stay(private_user_dirs):
    path = user_config_path()
    path.parent.mkdir(parents=True)
    mine = "# my own notes\n[idle]\nblinks_per_min = 12.0\n"
    path.write_text(mine, encoding="utf-8")
    _, kept = save_settings({"output": {"fps": 30}})
    assert kept == path.with_name("config.toml.bak") and kept.read_text(encoding="utf-8") == mine
    cfg = load_config()
    assert cfg.idle.blinks_per_min == 12.0 and cfg.output.fps == 30
    _, kept_again = save_settings({"output": {"fps": 60}})  # our own file: nothing more to keep
    assert kept_again is None and sorted(p.name for p in path.parent.iterdir()) == ["config.toml", "config.toml.bak"]


def test_a_value_that_is_not_allowed_writes_nothing(private_user_dirs):
    path = user_config_path()
    path.parent.mkdir(parents=True)
    path.write_text("[output]\nfps = 60\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="output.width"):
        save_settings({"output": {"width": 333}})
    assert path.read_text(encoding="utf-8") == "[output]\nfps = 60\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["config.toml"]


def test_an_unreadable_file_is_not_replaced(private_user_dirs):
    path = user_config_path()
    path.parent.mkdir(parents=True)
    path.write_text("[output\nfps = ", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        save_settings({"output": {"fps": 30}})
    assert path.read_text(encoding="utf-8") == "[output\nfps = "
