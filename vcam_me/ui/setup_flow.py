"""The personalisation wizard's logic, without Qt: face quality, the prompted expression
session, its recording, training off the GUI thread and the "you / your avatar" check.

The Qt wizard (:mod:`vcam_me.ui.qt_wizard`) only shows what these objects publish. Every
slow part runs on a plain thread and keeps its newest state under a lock; the GUI polls it
with a timer (latest wins, nothing queues behind a busy GUI), and stops it with an Event.

The session is clocked by camera frames, not by wall time: a prompt lasts ``seconds`` ×
the camera's nominal rate in frames, so a video file read as fast as possible stands in
for a webcam exactly (tests) and a slow machine never cuts a prompt short.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from vcam_me.types import AU_INDEX, FaceObservation, Frame

# -- face quality ---------------------------------------------------------------------------
#: Mean grey level of the face box that the tracker and the training see well (0–255):
#: darker hides lids and teeth, brighter blows out the skin.
LIGHTING_RANGE = (60.0, 200.0)
#: Face box height as a fraction of the frame height: smaller loses detail, larger crops
#: the face when the head turns.
SIZE_RANGE = (0.25, 0.8)
#: Degrees of yaw and pitch from looking straight at the camera that still count as frontal.
FRONTAL_DEG = 15.0


@dataclass(frozen=True)
class FaceQuality:
    """How good a camera frame is for the setup session.

    Attributes:
        face: whether a face was tracked (the other figures are 0 when not).
        lighting: mean grey level (0–255) of the face box.
        size: face box height / frame height.
        yaw_deg, pitch_deg: head turn and nod, degrees (0: facing the camera).
    """

    face: bool
    lighting: float = 0.0
    size: float = 0.0
    yaw_deg: float = 0.0
    pitch_deg: float = 0.0

    @property
    def lighting_ok(self) -> bool:
        return self.face and LIGHTING_RANGE[0] <= self.lighting <= LIGHTING_RANGE[1]

    @property
    def size_ok(self) -> bool:
        return self.face and SIZE_RANGE[0] <= self.size <= SIZE_RANGE[1]

    @property
    def frontal_ok(self) -> bool:
        return self.face and abs(self.yaw_deg) <= FRONTAL_DEG and abs(self.pitch_deg) <= FRONTAL_DEG

    @property
    def ok(self) -> bool:
        return self.lighting_ok and self.size_ok and self.frontal_ok

    def hints(self) -> list[str]:
        """What the user should change, in their words (empty when all is well)."""
        if not self.face:
            return ["No face found: sit in front of the camera."]
        out = []
        if self.lighting < LIGHTING_RANGE[0]:
            out.append("Too dark: turn on a light in front of you.")
        elif self.lighting > LIGHTING_RANGE[1]:
            out.append("Too bright: move away from the window or lamp.")
        if self.size < SIZE_RANGE[0]:
            out.append("Come closer to the camera.")
        elif self.size > SIZE_RANGE[1]:
            out.append("Move back a little.")
        if not self.frontal_ok:
            out.append("Look straight at the camera.")
        return out


def face_box(landmarks: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` pixel box around normalised ``(N, 3)`` landmarks, clipped to the frame."""
    xs = np.clip(landmarks[:, 0] * width, 0, width)
    ys = np.clip(landmarks[:, 1] * height, 0, height)
    return int(xs.min()), int(ys.min()), int(np.ceil(xs.max())), int(np.ceil(ys.max()))


def face_quality(image: np.ndarray, observation: FaceObservation) -> FaceQuality:
    """The quality of ``image`` (``(H, W, 3) uint8 RGB``) for its tracked ``observation``."""
    if not observation.has_face:
        return FaceQuality(face=False)
    from vcam_me.geometry import pose_from_transform

    height, width = image.shape[:2]
    x0, y0, x1, y1 = face_box(observation.landmarks, width, height)
    crop = image[y0:y1, x0:x1].astype(np.float32)
    # ITU-R BT.601 luma, as OpenCV's RGB→grey
    lighting = float((crop @ np.array([0.299, 0.587, 0.114], np.float32)).mean()) if crop.size else 0.0
    yaw = pitch = 0.0
    if observation.transform is not None:
        yaw, pitch, _ = (float(a) for a in pose_from_transform(observation.transform))
    return FaceQuality(True, lighting, (y1 - y0) / max(1, height), yaw, pitch)


# -- prompts --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Prompt:
    """One instruction of the expression session.

    Attributes:
        key: a stable name (also the illustration's).
        title: what the user is asked, short.
        aus: AU channels that must move above the neutral for the prompt to count; empty
            for the neutral itself.
        yaw_deg: for head turns: how far (degrees) the head must turn instead.
        quantile: which quantile of the prompt's frames is compared with the neutral
            (1.0 for a blink, which lasts a few frames only).
        seconds: how long it is held (recorded).
    """

    key: str
    title: str
    aus: tuple[str, ...] = ()
    yaw_deg: float = 0.0
    quantile: float = 0.8
    seconds: float = 3.0


#: design.md §4: neutral, then the prompted actions and head turns.
PROMPTS: tuple[Prompt, ...] = (
    Prompt("neutral", "Relax your face and look at the camera", seconds=4.0),
    Prompt("brows_up", "Raise your eyebrows", ("AU1", "AU2_L", "AU2_R")),
    Prompt("frown", "Frown: pull your brows together", ("AU4_L", "AU4_R")),
    Prompt("wide_eyes", "Open your eyes wide", ("AU5_L", "AU5_R")),
    Prompt("squint", "Squint", ("AU7_L", "AU7_R", "AU6_L", "AU6_R")),
    Prompt("nose_wrinkle", "Wrinkle your nose", ("AU9_L", "AU9_R")),
    Prompt("smile", "Smile broadly", ("AU12_L", "AU12_R")),
    Prompt("jaw_open", "Open your mouth wide", ("AU26", "AU27")),
    Prompt("blink", "Blink a few times", ("AU43_L", "AU43_R"), quantile=1.0),
    Prompt("pucker", "Pucker your lips (a kiss)", ("AU18", "AU22")),
    Prompt("turn_left", "Turn your head slowly to your left", yaw_deg=12.0),
    Prompt("turn_right", "Turn your head slowly to your right", yaw_deg=12.0),
)
#: An AU counts as moved when it rises this much (intensity in [0, 1]) above the neutral.
MOVED_BY = 0.15
#: A prompt whose AUs did not move is asked again at most this many times.
MAX_RETRIES = 2


@dataclass
class PromptResult:
    prompt: Prompt
    attempt: int  # 0 = first try
    moved: bool
    rise: float  # how far the prompted AUs (or the yaw, degrees) rose above the neutral
    face_frames: int


def prompt_rise(prompt: Prompt, aus: np.ndarray, yaws: np.ndarray, neutral_au: np.ndarray | None,
                neutral_yaw: float) -> float:
    """How far the prompted channels rose above the neutral over a prompt's frames.

    ``aus``: ``(T, len(AU_CHANNELS))`` AU intensities of the frames with a face; ``yaws``:
    ``(T,)`` degrees. For head turns, the largest turn away from the neutral's yaw (either
    way: a mirrored camera swaps left and right).
    """
    if len(aus) == 0 or not (prompt.aus or prompt.yaw_deg):
        return 0.0
    if prompt.yaw_deg:
        return float(np.max(np.abs(yaws - neutral_yaw)))
    base = neutral_au if neutral_au is not None else np.zeros(aus.shape[1], np.float32)
    idx = [AU_INDEX[name] for name in prompt.aus]
    peaks = np.quantile(aus[:, idx], prompt.quantile, axis=0)
    return float(np.max(peaks - base[idx]))


def prompt_moved(prompt: Prompt, rise: float) -> bool:
    if not prompt.aus and not prompt.yaw_deg:
        return True  # the neutral: nothing must move
    return rise >= (prompt.yaw_deg if prompt.yaw_deg else MOVED_BY)


class ExpressionSession:
    """The prompts, in order, each held for its frames, re-asked when it did not move.

    Feed it one tracked frame at a time (:meth:`feed`); it says whether that frame belongs
    to the recording. A prompt starts with a countdown (frames not recorded) so the user can
    read it; then it records ``seconds`` of frames and checks them.
    """

    def __init__(self, prompts: Sequence[Prompt] = PROMPTS, *, fps: float = 30.0, countdown_s: float = 3.0,
                 max_retries: int = MAX_RETRIES) -> None:
        if not prompts:
            raise ValueError("the session needs at least one prompt")
        self.prompts = tuple(prompts)
        self.fps = float(fps)
        self.countdown_frames = round(countdown_s * fps)
        self.max_retries = max_retries
        self.results: list[PromptResult] = []
        self.index = 0
        self.attempt = 0
        self.phase = "countdown"  # → "recording" → (next prompt) … → "done"
        self._frames_in_phase = 0
        self._aus: list[np.ndarray] = []
        self._yaws: list[float] = []
        self._seen = 0
        self.neutral_au: np.ndarray | None = None
        self.neutral_yaw = 0.0

    @property
    def done(self) -> bool:
        return self.phase == "done"

    @property
    def prompt(self) -> Prompt | None:
        return None if self.done else self.prompts[self.index]

    def _phase_frames(self) -> int:
        if self.phase == "countdown":
            return self.countdown_frames
        return max(1, round(self.prompt.seconds * self.fps))

    def seconds_left(self) -> float:
        """Seconds left in the current countdown or recording."""
        if self.done:
            return 0.0
        return max(0, self._phase_frames() - self._frames_in_phase) / self.fps

    def feed(self, au: np.ndarray | None, yaw_deg: float = 0.0) -> bool:
        """One frame's AUs (``None`` when no face) → True when the frame is to be recorded."""
        if self.done:
            return False
        if self.phase == "countdown" and self._frames_in_phase >= self.countdown_frames:
            self.phase, self._frames_in_phase = "recording", 0
        record = self.phase == "recording"
        self._frames_in_phase += 1
        if record:
            self._seen += 1
            if au is not None:
                self._aus.append(np.asarray(au, np.float32))
                self._yaws.append(float(yaw_deg))
            if self._frames_in_phase >= self._phase_frames():
                self._finish_prompt()
        return record

    def _finish_prompt(self) -> None:
        prompt = self.prompts[self.index]
        aus = np.stack(self._aus) if self._aus else np.zeros((0, len(AU_INDEX)), np.float32)
        yaws = np.asarray(self._yaws, np.float32)
        enough_face = len(aus) >= 0.5 * self._seen
        rise = prompt_rise(prompt, aus, yaws, self.neutral_au, self.neutral_yaw)
        moved = enough_face and prompt_moved(prompt, rise)
        self.results.append(PromptResult(prompt, self.attempt, moved, rise, len(aus)))
        if moved and not prompt.aus and not prompt.yaw_deg:
            self.neutral_au = np.median(aus, axis=0)
            self.neutral_yaw = float(np.median(yaws))
        self._aus, self._yaws, self._seen = [], [], 0
        self.phase, self._frames_in_phase = "countdown", 0
        if not moved and self.attempt < self.max_retries:
            self.attempt += 1  # ask the same prompt again
            return
        self.attempt = 0
        self.index += 1
        if self.index >= len(self.prompts):
            self.phase = "done"

    def missed(self) -> list[Prompt]:
        """Prompts that never moved, even after the re-asks."""
        last = {r.prompt.key: r for r in self.results}
        return [r.prompt for r in last.values() if not r.moved]


# -- recording ------------------------------------------------------------------------------
class CaptureWriter:
    """Frames into an H.264 MP4 (PyAV), numbered at the camera's nominal rate. Never
    writes over an existing file. A context manager; ``close()`` is idempotent."""

    def __init__(self, path: Path, fps: float = 30.0) -> None:
        import av

        from vcam_me.errors import SetupError

        self.path = Path(path)
        if self.path.exists():
            raise SetupError(f"{self.path} already exists (nothing was changed)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._container = av.open(str(self.path), mode="w", format="mp4")
        self._rate = Fraction(round(fps), 1)
        self._stream = None
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        import av

        if self._stream is None:
            height, width = image.shape[:2]
            self._stream = self._container.add_stream("libx264", rate=self._rate)
            self._stream.width, self._stream.height = width - width % 2, height - height % 2
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"preset": "veryfast", "crf": "18"}
        rgb = np.ascontiguousarray(image[: self._stream.height, : self._stream.width])
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts = self.frames
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._container is None:
            return
        if self._stream is not None:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        self._container.close()
        self._container = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# -- the camera thread: preview, quality, and the session ------------------------------------
@dataclass
class CameraSnapshot:
    """What the camera thread last saw (read by the GUI)."""

    image: np.ndarray | None = None
    quality: FaceQuality = field(default_factory=lambda: FaceQuality(False))
    au: np.ndarray | None = None
    frames: int = 0
    error: str | None = None
    finished: bool = False  # the source ended (a video file without loop)


class CameraWorker:
    """Reads the source, tracks every frame it takes, measures the quality and, once a
    session is started, feeds it and records the frames it asks for.

    ``open_source()`` → a live source (``wait_newer``, ``finished``, ``close``);
    ``make_tracker()`` → a ``video``-mode tracker (``track(frame)``, ``close``).
    """

    def __init__(self, open_source: Callable[[], object], make_tracker: Callable[[], object]) -> None:
        self._open_source = open_source
        self._make_tracker = make_tracker
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._snapshot = CameraSnapshot()
        self._session: ExpressionSession | None = None
        self._writer: CaptureWriter | None = None
        self._session_done = threading.Event()
        # held while a frame is fed and written, so an abort never closes the writer mid-frame
        self._session_lock = threading.Lock()
        self.observations: list[FaceObservation] = []  # of the recorded frames, on the recording's timeline
        self._thread = threading.Thread(target=self._run, name="vcam-wizard-camera", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def snapshot(self) -> CameraSnapshot:
        with self._lock:
            return replace(self._snapshot)

    def begin_session(self, session: ExpressionSession, writer: CaptureWriter) -> None:
        with self._session_lock:
            self._session, self._writer = session, writer
            self._session_done.clear()
            self.observations = []

    def session_done(self) -> bool:
        return self._session_done.is_set()

    def abort_session(self) -> None:
        with self._session_lock:
            writer, self._session, self._writer = self._writer, None, None
            if writer is not None:
                writer.close()

    def stop(self, wait_s: float = 0.0) -> None:
        """Stop; the thread closes the tracker and the source itself, so the GUI need not
        wait (``wait_s`` > 0 waits for that)."""
        self._stop.set()
        self.abort_session()
        if wait_s > 0 and self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(wait_s)

    def _run(self) -> None:
        from vcam_me.expression import blendshapes_to_au

        source = tracker = None
        try:
            source = self._open_source()
            tracker = self._make_tracker()
            last = -1
            while not self._stop.is_set():
                frame: Frame | None = source.wait_newer(last, timeout_s=0.5)
                if frame is None:
                    if source.finished:
                        with self._lock:
                            self._snapshot.finished = True
                        return
                    continue
                last = frame.index
                obs = tracker.track(frame)
                quality = face_quality(frame.image, obs)
                au = blendshapes_to_au(obs.blendshapes) if obs.has_face else None
                self._feed_session(frame, obs, au, quality)
                with self._lock:
                    self._snapshot = CameraSnapshot(frame.image, quality, au, self._snapshot.frames + 1)
        except Exception as err:  # noqa: BLE001 - thread boundary: the GUI shows it in one line
            from vcam_me.capture.base import first_line

            with self._lock:
                self._snapshot.error = first_line(err)
        finally:
            for part in (tracker, source):
                if part is not None:
                    part.close()

    def _feed_session(self, frame: Frame, obs: FaceObservation, au, quality: FaceQuality) -> None:
        with self._session_lock:
            session, writer = self._session, self._writer
            if session is None or writer is None:
                return
            if session.feed(au, quality.yaw_deg):
                ts = round(writer.frames * 1000.0 / session.fps)
                writer.write(frame.image)
                self.observations.append(replace(obs, timestamp_ms=ts))
            if session.done:
                writer.close()
                self._session = self._writer = None
                self._session_done.set()


# -- training -------------------------------------------------------------------------------
@dataclass
class TrainingState:
    stage: str = "starting"
    done: int = 0
    total: int = 0
    seconds_left: float | None = None
    result: object | None = None  # SetupResult when finished
    error: str | None = None
    cancelled: bool = False

    @property
    def finished(self) -> bool:
        return self.result is not None or self.error is not None or self.cancelled


class TrainingJob:
    """``personalise(capture, out, progress=…, cancel=…, **kwargs)`` off the GUI thread; the
    GUI polls :meth:`state` and calls :meth:`cancel` (the work so far is kept: a new job on
    the same capture resumes).

    With ``subprocess=True`` (the wizard's default) it runs in a child process: importing
    PyTorch, fine-tuning and the ONNX export hold Python's GIL for stretches of 100 ms and
    more, which would freeze a GUI in the same process. ``personalise`` must then be a
    module-level function (it is pickled); progress comes back through a queue and cancel
    is a process-shared Event. A thread in this process relays both.
    """

    def __init__(self, personalise: Callable[..., object], capture: Path, out: Path, *, subprocess: bool = False,
                 **kwargs) -> None:
        self._personalise = personalise
        self.capture, self.out, self._kwargs = Path(capture), Path(out), kwargs
        self._subprocess = subprocess
        if subprocess:
            import multiprocessing

            self._mp = multiprocessing.get_context("spawn")
            self._cancel = self._mp.Event()
        else:
            self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._state = TrainingState()
        self._stage_started = time.monotonic()
        self._first_done = 0
        self._thread = threading.Thread(target=self._relay if subprocess else self._run, name="vcam-wizard-training",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self._cancel.set()

    def join(self, timeout_s: float | None = None) -> None:
        self._thread.join(timeout_s)

    def state(self) -> TrainingState:
        with self._lock:
            return replace(self._state)

    def _progress(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        with self._lock:
            if stage != self._state.stage:
                self._stage_started, self._first_done = now, done
            left = None
            if done > self._first_done and total > done:
                left = (now - self._stage_started) / (done - self._first_done) * (total - done)
            self._state = TrainingState(stage, done, total, left)

    def _finish(self, result=None, error: str | None = None) -> None:
        with self._lock:
            if error is None:
                self._state.result = result
            elif self._cancel.is_set():
                self._state.cancelled = True
            else:
                self._state.error = error

    def _run(self) -> None:
        try:
            result = self._personalise(self.capture, self.out, progress=self._progress, cancel=self._cancel,
                                       **self._kwargs)
        except Exception as err:  # noqa: BLE001 - thread boundary: shown to the user, not lost
            self._finish(error=one_line(err))
            return
        self._finish(result)

    def _relay(self) -> None:
        import queue

        messages = self._mp.Queue()
        child = self._mp.Process(target=_train_in_child, name="vcam-setup-training", daemon=True,
                                 args=(self._personalise, self.capture, self.out, self._kwargs, messages, self._cancel))
        child.start()
        try:
            while True:
                try:
                    kind, *payload = messages.get(timeout=0.2)
                except queue.Empty:
                    if not child.is_alive():
                        self._finish(error=f"the training process stopped unexpectedly (exit code {child.exitcode})")
                        return
                    continue
                if kind == "progress":
                    self._progress(*payload)
                elif kind == "result":
                    self._finish(payload[0])
                    return
                else:
                    self._finish(error=payload[0])
                    return
        finally:
            child.join(10.0)


def one_line(err: BaseException) -> str:
    from vcam_me.errors import VcamError

    text = str(err) if isinstance(err, VcamError) else f"{type(err).__name__}: {err}"
    return text.splitlines()[0] if text else type(err).__name__


def _train_in_child(personalise, capture: Path, out: Path, kwargs: dict, messages, cancel) -> None:
    """The training child process: progress and the outcome go back through ``messages``."""
    import os

    if hasattr(os, "nice"):
        # below the GUI and the call: on a 2-core laptop, training at normal priority takes
        # whole scheduler slices from both and the wizard stutters
        os.nice(10)

    def progress(stage: str, done: int, total: int) -> None:
        messages.put(("progress", stage, done, total))

    try:
        result = personalise(capture, out, progress=progress, cancel=cancel, **kwargs)
    except BaseException as err:  # noqa: BLE001 - process boundary: the parent shows it
        messages.put(("error", one_line(err)))
        return
    messages.put(("result", result))


# -- the check and the end -----------------------------------------------------------------
def side_by_side(capture: Path, observations: Sequence[FaceObservation], avatar_folder: Path, cfg,
                 count: int = 3, height: int = 240) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` frames of the recorded ``capture`` and the new avatar rendered (through
    :func:`vcam_me.app.build_renderer`) with the expression tracked in each; pairs of
    ``(H, W, 3) uint8 RGB`` at ``height`` pixels. The frames with the most expression are
    picked, so the check shows more than a neutral face."""
    import av
    import cv2

    from vcam_me.app import build_expression, build_renderer
    from vcam_me.avatar import Avatar

    faced = [i for i, o in enumerate(observations) if o.has_face]
    if not faced:
        return []
    from vcam_me.expression import blendshapes_to_au

    strength = np.array([blendshapes_to_au(observations[i].blendshapes).sum() for i in faced])
    picks = sorted(faced[k] for k in np.argsort(-strength)[:count])
    images: dict[int, np.ndarray] = {}
    with av.open(str(capture)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in picks:
                images[i] = frame.to_ndarray(format="rgb24")
            if i >= picks[-1]:
                break
    first = next(iter(images.values()))
    width = round(first.shape[1] * height / first.shape[0]) // 2 * 2
    avatar = Avatar.load(avatar_folder)
    expression = build_expression(cfg, offline=True, observations=list(observations), micro="none")
    renderer = build_renderer(avatar, (width, height), cfg)
    pairs = []
    try:
        fed = 0
        for i in picks:
            while fed <= min(i + 1, len(observations) - 1):
                expression.update(observations[fed])
                fed += 1
            state = expression.state_at(observations[i].timestamp_ms)
            you = cv2.resize(images[i], (width, height), interpolation=cv2.INTER_AREA)
            pairs.append((you, np.asarray(renderer.render(state))))
    finally:
        close = getattr(renderer, "close", None)
        if close is not None:
            close()
    return pairs


def discard(paths: Sequence[Path]) -> None:
    """Remove what the wizard made (its capture, its avatar folder), nothing else."""
    for path in paths:
        path = Path(path)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink()
