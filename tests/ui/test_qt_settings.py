"""The settings dialog (pytest-qt, offscreen): a key combination is recorded by pressing it,
Save writes the user's config.toml through the validated loader, a conflict is refused; the
camera is chosen by name from the cameras found (a fake lister), looked for off the GUI thread."""

from __future__ import annotations

import dataclasses
import threading

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox

from vcam_me.capture import CameraInfo
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


# -- the camera list ----------------------------------------------------------------------------

def _cfg_with_camera(index: int):
    cfg = load_config(use_user_config=False)
    return dataclasses.replace(cfg, capture=dataclasses.replace(cfg.capture, camera_index=index))


def _dialog(qtbot, cfg, cameras):
    """The dialog with ``cameras`` (a list, or a lister) found, once the search has answered."""
    dialog = SettingsDialog(cfg, list_cameras=cameras if callable(cameras) else lambda: cameras)
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: not dialog.camera.searching() and dialog.camera.cameras is not None, timeout=5_000)
    return dialog


def _items(combo):
    return [combo.itemText(i) for i in range(combo.count())]


def test_cameras_are_listed_by_name_and_the_configured_one_is_selected(qtbot, private_user_dirs):
    cameras = [CameraInfo(0, "Integrated Camera"), CameraInfo(2, "HD Pro Webcam C920"),
               CameraInfo(4, "vcam-me", is_virtual=True)]
    dialog = _dialog(qtbot, _cfg_with_camera(2), cameras)
    combo = dialog.camera.combo
    assert _items(combo) == ["Integrated Camera (camera 0)", "HD Pro Webcam C920 (camera 2)"]  # never our own output
    assert combo.currentText() == "HD Pro Webcam C920 (camera 2)"
    assert dialog.camera.status.text() == "2 cameras found"
    combo.setCurrentIndex(0)
    dialog.buttons.button(QDialogButtonBox.StandardButton.Save).click()
    assert dialog.problem.text() == ""
    assert load_config().capture.camera_index == 0


def test_a_configured_camera_that_is_not_there_stays_chosen(qtbot, private_user_dirs):
    dialog = _dialog(qtbot, _cfg_with_camera(3), [CameraInfo(0, "Integrated Camera")])
    combo = dialog.camera.combo
    assert _items(combo) == ["Integrated Camera (camera 0)", "Camera 3 (not found now)"]
    assert combo.currentText() == "Camera 3 (not found now)"
    dialog.buttons.button(QDialogButtonBox.StandardButton.Save).click()
    assert load_config().capture.camera_index == 3  # saving did not change it silently


def test_no_camera_at_all_says_what_to_do(qtbot, private_user_dirs):
    dialog = _dialog(qtbot, _cfg_with_camera(0), [CameraInfo(5, "v4l2loopback", is_virtual=True)])
    assert dialog.camera.status.text() == "No camera found: plug one in, or drive the avatar from a video file"
    assert _items(dialog.camera.combo) == ["Camera 0 (not found now)"]
    assert dialog.source.isEnabled()  # the video-file source is still there to choose


def test_search_again_finds_a_camera_plugged_in_since(qtbot, private_user_dirs):
    plugged: list[CameraInfo] = []
    dialog = SettingsDialog(_cfg_with_camera(1), list_cameras=lambda: list(plugged))
    qtbot.addWidget(dialog)
    qtbot.waitUntil(lambda: dialog.camera.status.text().startswith("No camera"), timeout=5_000)
    plugged.append(CameraInfo(1, "USB Camera"))
    dialog.camera.again.click()
    qtbot.waitUntil(lambda: dialog.camera.status.text() == "1 camera found", timeout=5_000)
    assert _items(dialog.camera.combo) == ["USB Camera (camera 1)"]
    assert dialog.camera.combo.currentText() == "USB Camera (camera 1)"


def test_a_failing_search_is_one_line_and_keeps_the_setting(qtbot, private_user_dirs):
    def broken():
        raise OSError("permission denied: /sys/class/video4linux\nmore detail")

    dialog = _dialog(qtbot, _cfg_with_camera(2), broken)
    assert dialog.camera.status.text() == "Could not look for cameras: permission denied: /sys/class/video4linux"
    assert dialog.camera.camera_index() == 2


def test_the_dialog_shows_and_answers_while_the_cameras_are_looked_for(qtbot, private_user_dirs):
    release = threading.Event()

    def slow_lister():  # like a driver that takes its time to open each device
        release.wait(10)
        return [CameraInfo(0, "Slow Camera")]

    dialog = SettingsDialog(_cfg_with_camera(0), list_cameras=slow_lister)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    # the search has not answered (it cannot: it waits for us), yet the dialog is up and usable
    assert dialog.camera.status.text() == "Looking for cameras…" and dialog.camera.searching()
    assert dialog.camera.combo.currentText() == "Looking for cameras…"
    dialog.fps.setCurrentIndex(dialog.fps.findData(30))
    qtbot.keyClicks(dialog.device, "/dev/video9")
    assert dialog.device.text() == "/dev/video9"
    assert dialog.changes()["capture"]["camera_index"] == 0  # saving meanwhile keeps the setting
    qtbot.wait(300)  # the GUI keeps running its event loop while the search is blocked
    release.set()
    qtbot.waitUntil(lambda: dialog.camera.combo.currentText() == "Slow Camera (camera 0)", timeout=5_000)
