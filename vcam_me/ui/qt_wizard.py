"""The personalisation wizard: camera and face quality → the prompted expression session
(recorded) → training → "you / your avatar" → consent.

A thin Qt layer over :mod:`vcam_me.ui.setup_flow`: the camera, the training and the check
each run on a plain thread there; the pages poll their newest state with a timer, so the
GUI thread never waits on a camera, a tracker or PyTorch. Closing the wizard before
"Save" removes what it made (its capture and the new avatar folder), nothing else.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer
from PySide6.QtGui import QColor, QImage, QPainter, QPainterPath, QPen, QPixmap
from PySide6.QtWidgets import (
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
    QWizard,
    QWizardPage,
)

from vcam_me.config import AppConfig
from vcam_me.ui import setup_flow as flow
from vcam_me.ui.qt_cameras import CameraChooser, CameraLister

POLL_MS = 33  # the pages look at the workers' newest state at about the camera's rate
#: A camera in the wizard's source list: ``camera:N`` is camera index N (anything else is a file).
CAMERA_SPEC = "camera:"


def to_pixmap(image: np.ndarray, height: int | None = None) -> QPixmap:
    """``(H, W, 3) uint8 RGB`` → a QPixmap (copied: the array may change afterwards)."""
    image = np.ascontiguousarray(image)
    h, w = image.shape[:2]
    pixmap = QPixmap.fromImage(QImage(image.data, w, h, image.strides[0], QImage.Format.Format_RGB888).copy())
    if height is not None:
        pixmap = pixmap.scaledToHeight(height, Qt.TransformationMode.SmoothTransformation)
    return pixmap


def default_sources(cfg: AppConfig) -> list[tuple[str, str]]:
    """The sources offered before the cameras found: the configured video file, if there is one."""
    if cfg.capture.source != "camera":
        return [(f"Video file {Path(cfg.capture.source).name}", cfg.capture.source)]
    return []


def camera_spec(index: int) -> str:
    """The source spec of camera ``index`` in the wizard's list."""
    return f"{CAMERA_SPEC}{index}"


def free_folder(path: Path) -> Path:
    """``path``, or ``path-1``, ``path-2`` … whichever does not exist yet."""
    candidate, k = path, 0
    while candidate.exists():
        k += 1
        candidate = path.with_name(f"{path.name}-{k}")
    return candidate


class Illustration(QWidget):
    """A simple drawn face doing what the prompt asks."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.key = "neutral"
        self.setFixedSize(160, 160)

    def show_prompt(self, key: str) -> None:
        self.key = key
        self.update()

    def paintEvent(self, event) -> None:
        k = self.key
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), QColor(245, 245, 245))
        turn = {"turn_left": -18.0, "turn_right": 18.0}.get(k, 0.0)
        cx, cy = 80 + turn, 84
        p.setPen(QPen(QColor(60, 60, 60), 3))
        p.setBrush(QColor(255, 224, 189))
        p.drawEllipse(QPointF(80, cy), 58, 68)
        brow_y = cy - 30 - (10 if k == "brows_up" else 0) + (4 if k == "frown" else 0)
        tilt = 7 if k == "frown" else 0
        eye_h = {"wide_eyes": 12, "squint": 3, "blink": 0, "brows_up": 9}.get(k, 7)
        for side in (-1, 1):
            ex = cx + side * 22
            inner = ex - side * 12  # the brow's end nearer the nose drops in a frown
            p.drawLine(QPointF(inner, brow_y + tilt), QPointF(ex + side * 12, brow_y))
            p.setBrush(QColor(255, 255, 255))
            if eye_h:
                p.drawEllipse(QPointF(ex, cy - 14), 10, eye_h)
                p.setBrush(QColor(60, 60, 60))
                p.drawEllipse(QPointF(ex, cy - 14), 3, min(3, eye_h))
            else:
                p.drawLine(QPointF(ex - 10, cy - 14), QPointF(ex + 10, cy - 14))
        p.setBrush(Qt.BrushStyle.NoBrush)
        if k == "nose_wrinkle":
            for dy in (0, 5):
                p.drawLine(QPointF(cx - 6, cy + 2 + dy), QPointF(cx + 6, cy + 2 + dy))
        p.drawLine(QPointF(cx, cy - 4), QPointF(cx - 4, cy + 14))
        mouth = QPainterPath()
        my = cy + 34
        if k == "smile":
            mouth.moveTo(cx - 26, my - 6)
            mouth.quadTo(cx, my + 22, cx + 26, my - 6)
        elif k == "jaw_open":
            mouth.addEllipse(QRectF(cx - 14, my - 10, 28, 30))
        elif k == "pucker":
            mouth.addEllipse(QRectF(cx - 7, my - 6, 14, 12))
        elif k == "frown":
            mouth.moveTo(cx - 18, my + 6)
            mouth.quadTo(cx, my - 6, cx + 18, my + 6)
        else:
            mouth.moveTo(cx - 18, my)
            mouth.lineTo(cx + 18, my)
        p.drawPath(mouth)
        if turn:
            p.setPen(QPen(QColor(200, 60, 60), 4))
            x0, x1 = (60, 20) if turn < 0 else (100, 140)
            p.drawLine(QPointF(x0, 12), QPointF(x1, 12))
            p.drawLine(QPointF(x1, 12), QPointF(x1 + (8 if turn < 0 else -8), 5))
            p.drawLine(QPointF(x1, 12), QPointF(x1 + (8 if turn < 0 else -8), 19))
        p.end()


def _meter(label: str) -> tuple[QLabel, QProgressBar]:
    bar = QProgressBar()
    bar.setRange(0, 100)
    bar.setTextVisible(False)
    bar.setFixedHeight(12)
    return QLabel(label), bar


class CameraPage(QWizardPage):
    """Choose the camera; a live preview and the face-quality meter."""

    def __init__(self, wizard: SetupWizard) -> None:
        super().__init__()
        self.w = wizard
        self.setTitle("Your camera")
        self.setSubTitle("Sit in good light, facing the camera, with your face filling about half the picture.")
        # the video sources, then the cameras that are there (looked for on a thread)
        self.choice = CameraChooser(wizard.cfg.capture.camera_index, lister=wizard.list_cameras,
                                    sources=wizard.sources, camera_data=camera_spec, keep_missing=False)
        self.choice.chosen.connect(self._source_changed)
        self.view = QLabel()
        self.view.setMinimumSize(320, 180)
        self.view.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.meters = {name: _meter(text) for name, text in
                       (("lighting", "Lighting"), ("size", "Size"), ("frontal", "Facing the camera"))}
        self.hint = QLabel("Starting the camera…")
        self.hint.setWordWrap(True)
        grid = QGridLayout()
        for row, (label, bar) in enumerate(self.meters.values()):
            grid.addWidget(label, row, 0)
            grid.addWidget(bar, row, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.choice)
        layout.addWidget(self.view, 1)
        layout.addLayout(grid)
        layout.addWidget(self.hint)
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self._poll)
        self.face_seen = False

    def initializePage(self) -> None:
        self._preview(self.choice.current())
        self.timer.start()

    def cleanupPage(self) -> None:
        self.timer.stop()

    def _source_changed(self, spec: str | None) -> None:
        self.face_seen = False
        self.completeChanged.emit()
        if self.w.currentPage() is self:  # otherwise initializePage opens it when the page shows
            self._preview(spec)

    def _preview(self, spec: str | None) -> None:
        """Open ``spec`` for the live preview (nothing to open while no camera is found)."""
        if spec is None:
            self.w.stop_camera()
            self.w.camera = None
            self.view.clear()
            self.hint.setText("")
            return
        self.hint.setText("Starting the camera…")
        self.w.start_camera(spec)

    def isComplete(self) -> bool:
        return self.face_seen

    def _poll(self) -> None:
        if self.w.camera is None:
            return
        snap = self.w.camera.snapshot()
        if snap.error:
            self.hint.setText(f"The camera failed: {snap.error}")
            return
        if snap.image is None:
            return
        self.view.setPixmap(to_pixmap(snap.image, 240))
        q = snap.quality
        scores = {"lighting": _band(q.lighting, *flow.LIGHTING_RANGE, 255.0),
                  "size": _band(q.size, *flow.SIZE_RANGE, 1.0),
                  "frontal": max(0.0, 1.0 - max(abs(q.yaw_deg), abs(q.pitch_deg)) / (2 * flow.FRONTAL_DEG))}
        oks = {"lighting": q.lighting_ok, "size": q.size_ok, "frontal": q.frontal_ok}
        for name, (_, bar) in self.meters.items():
            bar.setValue(round(100 * scores[name]) if q.face else 0)
            bar.setStyleSheet(f"QProgressBar::chunk {{ background: {'#2da44e' if oks[name] else '#d4a72c'}; }}")
        self.hint.setText(" ".join(q.hints()) or "Good: press Next to start the expression session.")
        if q.face and not self.face_seen:
            self.face_seen = True
            self.completeChanged.emit()


def _band(value: float, low: float, high: float, top: float) -> float:
    """1 inside [low, high], falling linearly to 0 at 0 and at ``top``: a meter's fill."""
    if value < low:
        return max(0.0, value / low)
    if value > high:
        return max(0.0, (top - value) / (top - high))
    return 1.0


class SessionPage(QWizardPage):
    """The prompts, one by one, with an illustration, a countdown and the re-asks."""

    def __init__(self, wizard: SetupWizard) -> None:
        super().__init__()
        self.w = wizard
        self.setTitle("Your expressions")
        self.setSubTitle("Follow each prompt while the countdown runs. It takes about a minute and a half.")
        self.setCommitPage(True)  # the camera is let go after this: no way back
        self.setButtonText(QWizard.WizardButton.CommitButton, "Make my avatar")
        self.illustration = Illustration()
        self.prompt = QLabel()
        font = self.prompt.font()
        font.setPointSize(font.pointSize() + 6)
        self.prompt.setFont(font)
        self.prompt.setWordWrap(True)
        self.countdown = QLabel()
        self.again = QLabel()
        self.again.setStyleSheet("color: #9a6700")
        self.step = QLabel()
        self.view = QLabel()
        self.view.setFixedHeight(160)
        text = QVBoxLayout()
        for widget in (self.step, self.prompt, self.countdown, self.again):
            text.addWidget(widget)
        text.addStretch(1)
        top = QHBoxLayout()
        top.addWidget(self.illustration)
        top.addLayout(text, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.view)
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self._poll)
        self.session: flow.ExpressionSession | None = None
        self.finished = False

    def initializePage(self) -> None:
        self.finished = False
        self.session = self.w.begin_session()
        self.timer.start()

    def cleanupPage(self) -> None:
        self.timer.stop()
        self.w.abort_session()

    def isComplete(self) -> bool:
        return self.finished

    def _poll(self) -> None:
        session, camera = self.session, self.w.camera
        if session is None or camera is None:
            return
        snap = camera.snapshot()
        if snap.error:
            self.again.setText(f"The camera failed: {snap.error}")
            return
        if snap.image is not None:
            self.view.setPixmap(to_pixmap(snap.image, 160))
        if camera.session_done():
            self.timer.stop()
            self.finished = True
            missed = [p.title.lower() for p in session.missed()]
            self.prompt.setText("Done, thank you.")
            self.countdown.setText("")
            self.again.setText(("These did not show clearly, the training will do without: " + "; ".join(missed))
                               if missed else "")
            self.completeChanged.emit()
            return
        prompt = session.prompt
        if prompt is None:
            return
        self.illustration.show_prompt(prompt.key)
        self.step.setText(f"Prompt {session.index + 1} of {len(session.prompts)}")
        self.prompt.setText(prompt.title)
        left = session.seconds_left()
        self.countdown.setText(f"Get ready… {left:.0f}" if session.phase == "countdown" else f"Hold it… {left:.1f} s")
        self.again.setText("That did not show clearly: once more, a little stronger." if session.attempt else "")


class TrainingPage(QWizardPage):
    """Fine-tuning, with a progress bar, the time left and Cancel (resume starts it again)."""

    LABELS: ClassVar[dict[str, str]] = {"starting": "Starting…", "checking": "Checking the recording", "tracking": "Tracking your face",
                                        "preparing": "Preparing", "training": "Learning your face", "saving": "Saving"}

    def __init__(self, wizard: SetupWizard) -> None:
        super().__init__()
        self.w = wizard
        self.setTitle("Making your avatar")
        self.setSubTitle("This runs on your computer; nothing is uploaded. You can keep using it meanwhile.")
        self.setCommitPage(True)
        self.stage = QLabel()
        self.bar = QProgressBar()
        self.left = QLabel()
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.resume_button = QPushButton("Resume")
        self.resume_button.clicked.connect(self._start)
        self.resume_button.hide()
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.resume_button)
        layout = QVBoxLayout(self)
        for widget in (self.stage, self.bar, self.left, self.message):
            layout.addWidget(widget)
        layout.addLayout(buttons)
        layout.addStretch(1)
        self.timer = QTimer(self)
        self.timer.setInterval(100)
        self.timer.timeout.connect(self._poll)
        self.job: flow.TrainingJob | None = None
        self.completed = False  # set by the poll, so what the page shows is what it says

    def initializePage(self) -> None:
        self.w.stop_camera()  # the camera is free again while the network learns
        self._start()

    def _start(self) -> None:
        self.message.setText("")
        self.resume_button.hide()
        self.cancel_button.show()
        self.cancel_button.setEnabled(True)
        self.job = self.w.start_training()
        self.timer.start()

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
            self.cancel_button.setEnabled(False)
            self.message.setText("Stopping after the current step…")

    def isComplete(self) -> bool:
        return self.completed

    def _poll(self) -> None:
        if self.job is None:
            return
        state = self.job.state()
        self.stage.setText(self.LABELS.get(state.stage, state.stage))
        self.bar.setRange(0, max(1, state.total))
        self.bar.setValue(state.done)
        self.left.setText("" if state.seconds_left is None else f"About {_duration(state.seconds_left)} left")
        if not state.finished:
            return
        self.timer.stop()
        self.cancel_button.hide()
        if state.cancelled:
            self.message.setText("Cancelled. The work so far is kept: Resume goes on from there.")
            self.resume_button.show()
        elif state.error:
            self.message.setText(f"Could not make the avatar: {state.error}")
            self.resume_button.setText("Try again")
            self.resume_button.show()
        else:
            self.w.avatar_made(state.result)
            self.completed = True
            self.message.setText(f"Done in {_duration(state.result.seconds)}.")
            self.completeChanged.emit()


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


class CheckPage(QWizardPage):
    """You and your avatar, side by side; Save keeps the avatar, Discard removes it."""

    def __init__(self, wizard: SetupWizard) -> None:
        super().__init__()
        self.w = wizard
        self.setTitle("You and your avatar")
        self.setSubTitle("Does it look like you? Save it, or discard it and start again.")
        self.grid = QGridLayout()
        self.status = QLabel("Rendering…")
        self.status.setWordWrap(True)
        self.discard_button = QPushButton("Discard this avatar")
        self.discard_button.clicked.connect(wizard.discard_and_close)
        layout = QVBoxLayout(self)
        layout.addLayout(self.grid)
        layout.addWidget(self.status)
        layout.addWidget(self.discard_button, 0, Qt.AlignmentFlag.AlignLeft)
        self.timer = QTimer(self)
        self.timer.setInterval(100)
        self.timer.timeout.connect(self._poll)
        self.pairs: list | None = None
        self._result: dict = {}
        self._thread: threading.Thread | None = None

    def initializePage(self) -> None:
        self.setButtonText(QWizard.WizardButton.NextButton, "Save")
        self._result = {}
        self._thread = threading.Thread(target=self._render, args=(self._result,), name="vcam-wizard-check",
                                        daemon=True)
        self._thread.start()
        self.timer.start()

    def _render(self, out: dict) -> None:
        try:
            out["pairs"] = self.w.render_check()
        except Exception as err:  # noqa: BLE001 - thread boundary: shown on the page
            out["error"] = f"{type(err).__name__}: {err}"

    def isComplete(self) -> bool:
        return self.pairs is not None

    def validatePage(self) -> bool:
        self.w.save()
        return True

    def _poll(self) -> None:
        if "pairs" not in self._result and "error" not in self._result:
            return
        self.timer.stop()
        if "error" in self._result:
            self.status.setText(f"Could not render the avatar: {self._result['error']}")
            self.pairs = []
        else:
            self.pairs = self._result["pairs"]
            self.grid.addWidget(QLabel("You"), 0, 0)
            self.grid.addWidget(QLabel("Your avatar"), 0, 1)
            for row, (you, avatar) in enumerate(self.pairs, start=1):
                for col, image in enumerate((you, avatar)):
                    label = QLabel()
                    label.setPixmap(to_pixmap(image, 140))
                    self.grid.addWidget(label, row, col)
            self.status.setText(f"Saved as {self.w.avatar_folder.name} when you press Save.")
        self.completeChanged.emit()


class ConsentPage(QWizardPage):
    """The last step: the recorded consent statement that lets the avatar be used
    (:func:`vcam_me.app.capture_consent`, on its own thread; Cancel stops the recording)."""

    #: days the recorded consent stays valid (as ``vcam-me consent record``'s default)
    DAYS = 90

    def __init__(self, wizard: SetupWizard) -> None:
        super().__init__()
        self.w = wizard
        self.setTitle("Consent")
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.name = QLineEdit()
        self.name.setPlaceholderText("Your full name, as you will say it")
        self.record_button = QPushButton("Record my consent statement")
        self.record_button.clicked.connect(self.record)
        self.statement = QLabel()
        self.statement.setWordWrap(True)
        font = self.statement.font()
        font.setPointSize(font.pointSize() + 3)
        self.statement.setFont(font)
        self.bar = QProgressBar()
        self.bar.hide()
        self.outcome = QLabel()
        self.outcome.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.name, 1)
        row.addWidget(self.record_button)
        layout = QVBoxLayout(self)
        for widget in (self.text,):
            layout.addWidget(widget)
        layout.addLayout(row)
        for widget in (self.statement, self.bar, self.outcome):
            layout.addWidget(widget)
        layout.addStretch(1)
        self.timer = QTimer(self)
        self.timer.setInterval(100)
        self.timer.timeout.connect(self._poll)
        self._lock = threading.Lock()
        self._news: dict = {}
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None

    def initializePage(self) -> None:
        folder = self.w.avatar_folder
        self.text.setText(
            f"Your avatar is saved in {folder}.\n\nBefore it can be used in a call, record your consent: you read a "
            "short statement aloud on camera and microphone; it is checked, signed and bound to this avatar. "
            "You can also do it later from a terminal:\n"
            f"    vcam-me consent record --avatar \"{folder}\" --name \"YOUR NAME\"")

    def record(self) -> None:
        name = self.name.text().strip()
        if not name:
            self.outcome.setText("Type your name first.")
            return
        self.record_button.setEnabled(False)
        self.outcome.setText("Opening the camera and the microphone…")
        self._cancel.clear()
        self._news = {}
        self._thread = threading.Thread(target=self._record, args=(name,), name="vcam-wizard-consent", daemon=True)
        self._thread.start()
        self.timer.start()

    def cancel(self) -> None:
        self._cancel.set()

    def _record(self, name: str) -> None:
        def tell(**news) -> None:
            with self._lock:
                self._news.update(news)

        try:
            record = self.w.record_consent(name, self.DAYS, on_statement=lambda text: tell(statement=text),
                                           on_progress=lambda done, total: tell(progress=(done, total)),
                                           cancel=self._cancel)
        except Exception as err:  # noqa: BLE001 - thread boundary: shown on the page in one line
            tell(error=flow.one_line(err))
            return
        tell(record=record)

    def _poll(self) -> None:
        with self._lock:
            news = dict(self._news)
        if "statement" in news:
            self.statement.setText(f"Read aloud: “{news['statement']}”")
        if "progress" in news:
            done, total = news["progress"]
            self.bar.show()
            self.bar.setRange(0, max(1, round(total * 10)))
            self.bar.setValue(round(done * 10))
        if "error" in news or "record" in news:
            self.timer.stop()
            self.bar.hide()
            self.record_button.setEnabled(True)
            if "error" in news:
                self.outcome.setText(f"Not recorded: {news['error']}")
            else:
                code = getattr(news["record"], "code", "")
                self.outcome.setText(f"Consent recorded ({code}). Your avatar is ready: choose it in the tray menu.")
                self.record_button.setEnabled(False)


class SetupWizard(QWizard):
    """The whole set-up. Everything it needs from outside is a parameter, so tests can run it
    on a recorded video with few training steps; the defaults are the real app's.

    Args:
        cfg: the app's configuration (camera, tracking, avatar rendering).
        sources: ``(label, capture.source)`` pairs offered before the cameras found.
        list_cameras: ``() → [CameraInfo]`` (default: :func:`vcam_me.capture.list_cameras`),
            run on a thread when the wizard opens and on "Search again".
        open_source: ``spec → live source`` (default: the capture stage with ``cfg.capture``).
        open_microphone: ``on_block → running microphone`` for the consent recording (default:
            the system's default input, as :func:`vcam_me.app.capture_consent` opens it).
        make_tracker: ``() → video-mode tracker`` (default: :func:`vcam_me.app.build_tracker`).
        personalise: :func:`vcam_me.app.personalise_avatar` or a stand-in with its signature.
        prompts, countdown_s: the session; ``steps``, ``device``: the training.
        avatars_root: where the new avatar folder is made; ``work_dir``: where the capture goes.
    """

    def __init__(self, cfg: AppConfig, *, sources: Sequence[tuple[str, str]] | None = None,
                 list_cameras: CameraLister | None = None,
                 open_source: Callable[[str], object] | None = None,
                 open_microphone: Callable[[Callable], object] | None = None, make_tracker: Callable[[], object] | None = None,
                 personalise: Callable[..., object] | None = None, prompts: Sequence[flow.Prompt] = flow.PROMPTS,
                 countdown_s: float = 3.0, steps: int = 500, device: str = "auto",
                 avatars_root: Path | None = None, work_dir: Path | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from vcam_me import app

        self.cfg = cfg
        self.sources = list(sources) if sources else default_sources(cfg)
        self.list_cameras = list_cameras
        self._open_source = open_source or self._default_source
        self._open_microphone = open_microphone
        self._make_tracker = make_tracker or (lambda: app.build_tracker(cfg, "video"))
        self._personalise = personalise or app.personalise_avatar
        self.prompts, self.countdown_s, self.steps, self.device = tuple(prompts), countdown_s, steps, device
        self.avatars_root = Path(avatars_root) if avatars_root else app.own_avatars_dir()
        self.work_dir = Path(work_dir) if work_dir else app.user_data_dir() / "setup"
        self.camera: flow.CameraWorker | None = None
        self.capture_path: Path | None = None
        self.observations: list = []
        self.avatar_folder: Path | None = None
        self.setup_result = None  # what training made (not QDialog.result(), the dialog's code)
        self.saved = False
        self._made: list[Path] = []  # what the wizard wrote: removed unless saved
        self.setWindowTitle("vcam-me set-up: personalise your avatar")
        self.setOption(QWizard.WizardOption.NoBackButtonOnLastPage)
        self.pages = {"camera": CameraPage(self), "session": SessionPage(self), "training": TrainingPage(self),
                      "check": CheckPage(self), "consent": ConsentPage(self)}
        for page in self.pages.values():
            self.addPage(page)
        self.resize(720, 560)

    # -- camera and session -------------------------------------------------------------------
    def _default_source(self, spec: str):
        from vcam_me.capture import open_source

        if spec.startswith(CAMERA_SPEC):
            index = int(spec[len(CAMERA_SPEC):])
            return open_source(dataclasses.replace(self.cfg.capture, source="camera", camera_index=index))
        return open_source(dataclasses.replace(self.cfg.capture, source=spec))

    def start_camera(self, spec: str) -> None:
        self.stop_camera()
        self.camera = flow.CameraWorker(lambda: self._open_source(spec), self._make_tracker)
        self.camera.start()

    def stop_camera(self) -> None:
        if self.camera is not None:
            self.camera.stop()

    def begin_session(self) -> flow.ExpressionSession:
        if self.camera is None:
            raise RuntimeError("the camera page starts the camera first")
        self.abort_session()
        fps = float(self.cfg.capture.fps)
        session = flow.ExpressionSession(self.prompts, fps=fps, countdown_s=self.countdown_s)
        self.capture_path = free_folder(self.work_dir / f"capture-{time.strftime('%Y%m%d-%H%M%S')}.mp4")
        self._made.append(self.capture_path)
        self.camera.begin_session(session, flow.CaptureWriter(self.capture_path, fps))
        return session

    def abort_session(self) -> None:
        if self.camera is not None:
            self.camera.abort_session()

    # -- training, check, save ---------------------------------------------------------------
    def start_training(self) -> flow.TrainingJob:
        if self.avatar_folder is None:
            self.avatar_folder = free_folder(self.avatars_root / "me")
            self._made.append(self.avatar_folder)
        self.observations = list(self.camera.observations) if self.camera is not None else self.observations
        job = flow.TrainingJob(self._personalise, self.capture_path, self.avatar_folder, steps=self.steps,
                               device=self.device, subprocess=True)
        job.start()
        return job

    def avatar_made(self, result) -> None:
        self.setup_result = result

    def render_check(self) -> list:
        return flow.side_by_side(self.capture_path, self.observations, self.avatar_folder, self.cfg)

    def record_consent(self, name: str, days: int, **hooks):
        """The consent statement on the wizard's camera (and the default microphone), checked
        and signed for the new avatar; returns the record (a :class:`ConsentError` otherwise)."""
        from vcam_me import app
        from vcam_me.avatar import Avatar

        spec = self.pages["camera"].choice.current()
        record, _figures = app.capture_consent(Avatar.load(self.avatar_folder), subject_name=name, days=days,
                                               cfg=self.cfg, open_frames=lambda: self._open_source(spec),
                                               open_audio=self._open_microphone, **hooks)
        return record

    def save(self) -> None:
        """Keep the avatar; the raw capture is the user's face on video: not kept."""
        self.saved = True
        if self.capture_path is not None:
            flow.discard([self.capture_path])

    def discard_and_close(self) -> None:
        self.reject()

    def done(self, result: int) -> None:
        self.stop_camera()
        self.pages["consent"].cancel()
        made = [] if self.saved else list(self._made)
        training = self.pages["training"].job
        if training is not None and not training.state().finished:
            # the child stops at its next step; discard after it, so that it cannot write the
            # avatar folder back afterwards, and without holding the GUI meanwhile
            training.cancel()
            threading.Thread(target=lambda: (training.join(120.0), flow.discard(made)), name="vcam-wizard-discard",
                             daemon=True).start()
        else:
            flow.discard(made)
        super().done(result)
