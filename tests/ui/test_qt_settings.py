"""The settings dialog (pytest-qt, offscreen): a key combination is recorded by pressing it,
Save writes the user's config.toml through the validated loader, a conflict is refused."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox

from vcam_me.config import load_config, user_config_path
from vcam_me.ui.qt_settings import SettingsDialog


def _press_in(qtbot, edit, key, modifiers):
    edit.setFocus()
    qtbot.keyClick(edit, key, modifiers)


def test_recorded_hotkey_and_choices_are_saved(qtbot, private_user_dirs):
    dialog = SettingsDialog(load_config(use_user_config=False))
    qtbot.addWidget(dialog)
    saved = []
    dialog.saved.connect(lambda cfg, kept: saved.append(cfg))
    dialog.resolution.setCurrentIndex(dialog.resolution.findData("960x540"))
    dialog.fps.setCurrentIndex(dialog.fps.findData(30))
    dialog.intensity.setCurrentText("B")
    dialog.persona_spins["suppressed_smile"].setValue(3.0)
    dialog.persona_spins["brow_lowerer"].setValue(0.0)
    dialog.device.setText("/dev/video7")
    type_name, edit = dialog.binding_edits[1]
    edit.clear()
    _press_in(qtbot, edit, Qt.Key.Key_K, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert edit.keySequence().toString() == "Ctrl+Shift+K"
    dialog.buttons.button(QDialogButtonBox.StandardButton.Save).click()
    assert dialog.problem.text() == "" and len(saved) == 1
    cfg = load_config()
    assert (cfg.output.width, cfg.output.height, cfg.output.fps) == (960, 540, 30)
    assert cfg.micro.intensity == "B" and cfg.output.virtualcam_device == "/dev/video7"
    assert cfg.micro.persona == {"suppressed_smile": 3.0, "brow_lowerer": 0.0}  # only what differs from 1
    assert cfg.hotkeys.bindings["<ctrl>+<shift>+k"] == type_name
    assert len(cfg.hotkeys.bindings) == len(dialog.binding_edits)
    assert saved[0] == cfg


def test_one_combination_for_two_expressions_is_refused(qtbot, private_user_dirs):
    dialog = SettingsDialog(load_config(use_user_config=False))
    qtbot.addWidget(dialog)
    (first, a), (_second, b) = dialog.binding_edits[:2]
    for edit in (a, b):
        edit.clear()
        _press_in(qtbot, edit, Qt.Key.Key_J, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier)
    dialog.buttons.button(QDialogButtonBox.StandardButton.Save).click()
    assert "Ctrl+Alt+J" in dialog.problem.text() and first in dialog.problem.text()
    assert not user_config_path().exists()  # nothing written


def test_a_value_the_config_refuses_is_shown_in_one_line(qtbot, private_user_dirs):
    dialog = SettingsDialog(load_config(use_user_config=False))
    qtbot.addWidget(dialog)
    dialog.source.setText("/no/such/video.mp4")  # a path is allowed here: opening it is the stream's job
    dialog.resolution.addItem("odd", "641x360")
    dialog.resolution.setCurrentIndex(dialog.resolution.count() - 1)
    dialog.buttons.button(QDialogButtonBox.StandardButton.Save).click()
    assert "output.width" in dialog.problem.text() and "\n" not in dialog.problem.text()
    assert not user_config_path().exists()
