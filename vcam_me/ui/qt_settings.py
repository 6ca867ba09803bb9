"""The settings dialog: the camera (chosen by name from the cameras that are there), resolution,
frame rate, hotkeys (recorded by pressing them), micro-expression intensity and persona (how
often automatic mode picks each type), and the virtual-camera device. Saving validates
everything through :mod:`vcam_me.config` and writes the user's ``config.toml``
(:mod:`vcam_me.ui.settings`)."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QKeySequenceEdit,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from vcam_me.config import AppConfig
from vcam_me.errors import VcamError
from vcam_me.ui.qt_cameras import CameraChooser, CameraLister
from vcam_me.ui.settings import pynput_to_qt, qt_to_pynput, save_settings

RESOLUTIONS = ((640, 360), (960, 540), (1280, 720), (1920, 1080))
#: FACS intensity letters and ranges offered for micro-expressions (A = trace … E = maximum).
INTENSITIES = ("A", "A-B", "B", "B-C", "C", "C-D", "D")


def library_types(cfg: AppConfig) -> list[str]:
    """The micro-expression types the persona weights apply to ([] when the library cannot
    be read: the stream reports that itself, in one line)."""
    from vcam_me.app import micro_library_paths
    from vcam_me.expression.micro import MicroLibrary

    try:
        return list(MicroLibrary.load(*micro_library_paths(cfg)).names)
    except VcamError:
        return []


def combo_edit(combo: str, parent: QWidget) -> QKeySequenceEdit:
    """A field that records one key combination when the user presses it."""
    edit = QKeySequenceEdit(QKeySequence(pynput_to_qt(combo)) if combo else QKeySequence(), parent)
    edit.setMaximumSequenceLength(1)
    edit.setClearButtonEnabled(True)
    return edit


def recorded_combo(edit: QKeySequenceEdit) -> str:
    return qt_to_pynput(edit.keySequence().toString(QKeySequence.SequenceFormat.PortableText))


class SettingsDialog(QDialog):
    """Emits ``saved(cfg, kept)`` with the configuration as it now loads and where a
    hand-written config file was kept (or ``None``). ``list_cameras`` finds the cameras
    (default: :func:`vcam_me.capture.list_cameras`, on a thread)."""

    saved = Signal(object, object)

    def __init__(self, cfg: AppConfig, parent: QWidget | None = None, *, path=None,
                 list_cameras: CameraLister | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("vcam-me settings")
        self._path = path
        layout = QVBoxLayout(self)

        video = QGroupBox("Camera and output", self)
        form = QFormLayout(video)
        self.source = QLineEdit(cfg.capture.source, video)
        self.source.setToolTip('"camera", or the path of a video file or image to drive the avatar with')
        form.addRow("Input", self.source)
        # the cameras that are there, by name; looked for on a thread, the dialog shows at once
        self.camera = CameraChooser(cfg.capture.camera_index, lister=list_cameras, parent=video)
        form.addRow("Camera", self.camera)
        self.resolution = QComboBox(video)
        sizes = list(RESOLUTIONS)
        current = (cfg.output.width, cfg.output.height)
        if current not in sizes:
            sizes.append(current)
        for w, h in sizes:
            self.resolution.addItem(f"{w} × {h}", f"{w}x{h}")  # a string: Qt keeps it as it is
        self.resolution.setCurrentIndex(sizes.index(current))
        form.addRow("Resolution", self.resolution)
        self.fps = QComboBox(video)
        for rate in (60, 30):
            self.fps.addItem(f"{rate} fps", rate)
        self.fps.setCurrentIndex(0 if cfg.output.fps == 60 else 1)
        self.fps.setToolTip("Some conferencing apps misbehave above about 55 fps: choose 30 for them")
        form.addRow("Frame rate", self.fps)
        self.device = QLineEdit(cfg.output.virtualcam_device, video)
        self.device.setPlaceholderText("automatic")
        self.device.setToolTip("Virtual camera device (Linux: /dev/videoN); empty lets vcam-me choose")
        form.addRow("Output device", self.device)
        layout.addWidget(video)

        micro = QGroupBox("Micro-expressions", self)
        form = QFormLayout(micro)
        self.intensity = QComboBox(micro)
        choices = list(INTENSITIES) + ([cfg.micro.intensity] if cfg.micro.intensity not in INTENSITIES else [])
        self.intensity.addItems(choices)
        self.intensity.setCurrentText(cfg.micro.intensity)
        self.intensity.setToolTip("FACS intensity: A = a trace … E = the maximum of your calibrated range")
        form.addRow("Intensity", self.intensity)
        # persona: how often automatic mode picks each type, relative to the library's weights
        self.persona_spins: dict[str, QDoubleSpinBox] = {}
        for name in library_types(cfg):
            spin = QDoubleSpinBox(micro)
            spin.setRange(0.0, 10.0)
            spin.setSingleStep(0.5)
            spin.setValue(float(cfg.micro.persona.get(name, 1.0)))
            spin.setToolTip("0 = never, 1 = as the library says, 2 = twice as often (automatic mode)")
            self.persona_spins[name] = spin
            form.addRow(f"Persona: {name.replace('_', ' ')}", spin)
        layout.addWidget(micro)

        keys = QGroupBox("Hotkeys (click a field, then press the combination)", self)
        form = QFormLayout(keys)
        self.pause_key = combo_edit(cfg.hotkeys.pause, keys)
        form.addRow("Pause / resume", self.pause_key)
        self.binding_edits: list[tuple[str, QKeySequenceEdit]] = []
        for combo, type_name in cfg.hotkeys.bindings.items():
            edit = combo_edit(combo, keys)
            self.binding_edits.append((type_name, edit))
            form.addRow(type_name.replace("_", " "), edit)
        layout.addWidget(keys)

        self.problem = QLabel("", self)
        self.problem.setStyleSheet("color: #cf222e")
        self.problem.setWordWrap(True)
        layout.addWidget(self.problem)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.reject)
        self.buttons = buttons
        layout.addWidget(buttons)

    def changes(self) -> dict:
        """What the dialog shows, as config sections; ValueError for a combination that
        cannot be a hotkey, or one used twice."""
        width, height = (int(v) for v in self.resolution.currentData().split("x"))
        bindings: dict[str, str] = {}
        for type_name, edit in self.binding_edits:
            combo = recorded_combo(edit)
            if not combo:
                continue
            if combo in bindings:
                raise ValueError(f"{pynput_to_qt(combo)} is given to both {bindings[combo]} and {type_name}")
            bindings[combo] = type_name
        pause = recorded_combo(self.pause_key)
        if pause and pause in bindings:
            raise ValueError(f"{pynput_to_qt(pause)} pauses and also triggers {bindings[pause]}: choose one")
        return {
            "capture": {"source": self.source.text().strip() or "camera", "camera_index": self.camera.camera_index()},
            "output": {"width": width, "height": height, "fps": self.fps.currentData(),
                       "virtualcam_device": self.device.text().strip()},
            "micro": {"intensity": self.intensity.currentText(),
                      "persona": {n: s.value() for n, s in self.persona_spins.items() if s.value() != 1.0}},
            "hotkeys": {"pause": pause, "bindings": bindings},
        }

    def save(self) -> None:
        try:
            cfg, kept = save_settings(self.changes(), self._path)
        except (ValueError, VcamError) as err:
            self.problem.setText(str(err))
            return
        self.problem.setText("")
        self.saved.emit(cfg, kept)
        self.accept()
