"""Composition root: the one place that builds the stages and wires them together.

Every command of ``vcam-me`` ends here. Stage packages never import each other; this
module imports them all, builds them from the validated configuration (factories do the
I/O), and hands them to :mod:`vcam_me.pipeline`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import platform
import sys
import threading
import time
import traceback
from pathlib import Path

from vcam_me.clock import now_ms
from vcam_me.config import PROJECT_ROOT, AppConfig, load_config, user_config_path
from vcam_me.errors import AvatarError, ConfigError, ModelError, OutputError, TrackingError, VcamError

log = logging.getLogger("vcam_me")

BUNDLED_DRIVING = PROJECT_ROOT / "assets" / "driving" / "pyfeat_WolfgangLanger_Pexels.mp4"
BUNDLED_AVATAR = PROJECT_ROOT / "assets" / "avatars" / "sample"
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
#: Micro-expressions per minute in the demo, so that a few show in its 20 s clip.
DEMO_MICRO_RATE = 12.0
#: Real clips, 7 s or longer, the micro-expression proof injects into by default.
MICRO_EVAL_CLIPS = (
    "liveportrait_d6.mp4", "liveportrait_d14.mp4", "pyfeat_WolfgangLanger_Pexels.mp4", "liveportrait_d8.mp4",
    "liveportrait_d19.mp4", "liveportrait_src_s18.mp4", "liveportrait_d18.mp4",
)
#: Real clips the closed-loop evaluation drives by default (when ../shared is present).
EVAL_CLIPS = (
    "liveportrait_d0.mp4", "liveportrait_d5.mp4", "liveportrait_d6.mp4", "liveportrait_d7.mp4",
    "liveportrait_d8.mp4", "liveportrait_d14.mp4", "liveportrait_d18.mp4", "liveportrait_d19.mp4",
    "pyfeat_WolfgangLanger_Pexels.mp4", "pyfeat_single_face.mp4",
)


# --------------------------------------------------------------------------------------
# process set-up
# --------------------------------------------------------------------------------------
def _quiet_native_logs() -> None:
    # OpenCV's and MediaPipe's C++ cores print warnings straight to stderr; a user should
    # see our one-line messages instead. Must be set before either library is imported.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # OpenCV's FFmpeg reader prints FFmpeg's errors ("moov atom not found") for a damaged
    # video; -8 is FFmpeg's AV_LOG_QUIET. We say what was wrong in one line ourselves.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


def limit_opencv_threads() -> None:
    """Live streaming runs OpenCV on one thread per caller.

    The render loop and MediaPipe already keep both cores of a laptop busy; OpenCV's worker
    pool on top measured ~0.15–0.2 cores more for the same render time (bench, 2 cores), and
    the budget is one core, with a conferencing app beside us (design.md §2).
    """
    import cv2

    cv2.setNumThreads(1)


def user_data_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("vcam-me", appauthor=False))


def user_cache_dir() -> Path:
    """Where vcam-me keeps what it can always recompute (precomputed avatar warps)."""
    import platformdirs

    return Path(platformdirs.user_cache_dir("vcam-me", appauthor=False))


def _log_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_log_dir("vcam-me", appauthor=False)) / "vcam-me.log"


class Progress:
    """A one-line progress bar on stderr (plain lines when stderr is not a terminal)."""

    def __init__(self, label: str, total: int | None) -> None:
        self.label, self.total = label, total
        self.tty = sys.stderr.isatty()
        self._last = 0.0
        self._t0 = time.monotonic()
        self._first: int | None = None

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if now - self._last < (0.2 if self.tty else 5.0) and done != self.total:
            return
        self._last = now
        if self.total:
            frac = min(done / self.total, 1.0)
            bar = "#" * int(frac * 30)
            text = f"{self.label} [{bar:<30}] {done}/{self.total} ({frac:.0%}){self._left(done, now)}"
        else:
            text = f"{self.label}: {done}"
        sys.stderr.write(("\r" + text) if self.tty else (text + "\n"))
        sys.stderr.flush()

    def _left(self, done: int, now: float) -> str:
        """ ", 2m05s left" from the rate since the first update (a resumed job starts above 0)."""
        if self._first is None:
            self._first, self._t0 = done, now
            return ""
        rate = (done - self._first) / max(now - self._t0, 1e-6)
        if rate <= 0 or now - self._t0 < 2.0:
            return ""
        mins, secs = divmod(int((self.total - done) / rate), 60)
        return f", {mins}m{secs:02d}s left"

    def done(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


# --------------------------------------------------------------------------------------
# builders: the only code that knows how the stages fit together
# --------------------------------------------------------------------------------------
def build_tracker(cfg: AppConfig, mode: str, **kwargs):
    from vcam_me.models import verified_model_path
    from vcam_me.tracking import FaceTracker

    return FaceTracker.create(verified_model_path("face_landmarker"), cfg.tracking, mode=mode, **kwargs)


@contextlib.contextmanager
def live_tracker(cfg: AppConfig):
    """The tracker for a live pipeline in the configured mode, and a function that connects
    it to the pipeline (in ``live_stream`` mode MediaPipe calls the pipeline back)."""
    mode = cfg.tracking.mode
    target: list = []

    def deliver(obs) -> None:
        if target:
            target[0].on_observation(obs)

    def connect(pipeline):
        target.append(pipeline)
        return pipeline

    kwargs = {"on_result": deliver} if mode == "live_stream" else {}
    with build_tracker(cfg, mode, **kwargs) as tracker:
        yield tracker, connect


def _avatar_cache_dir() -> Path:
    return user_data_dir() / "avatars"


def own_avatars_dir() -> Path:
    """Where the user's own avatars live: the tray lists them, the setup wizard saves there."""
    return _avatar_cache_dir()


def resolve_avatar(spec: str | None, cfg: AppConfig):
    """An avatar folder, or a portrait photo (made into an avatar once, then cached)."""
    from vcam_me import avatar as avatar_stage

    spec = spec if spec else (cfg.avatar.path or str(BUNDLED_AVATAR))
    path = Path(spec).expanduser()
    if not path.exists():
        raise AvatarError(f"avatar not found: {path} (give an avatar folder or a portrait photo)")
    if path.is_dir():
        return avatar_stage.Avatar.load(path)
    from vcam_me.models import sha256_of

    digest = sha256_of(path)[:12]
    cached = _avatar_cache_dir() / f"{path.stem}-{digest}"
    if cached.is_dir():
        try:
            return avatar_stage.Avatar.load(cached)
        except AvatarError:
            log.warning("cached avatar %s is damaged; making it again", cached)
            cached = cached.with_name(cached.name + f"-{int(time.time())}")
    return create_avatar(path, cached, cfg)


def create_avatar(photo: Path, out_dir: Path, cfg: AppConfig):
    from vcam_me import avatar as avatar_stage

    image = avatar_stage.read_photo(photo)
    with build_tracker(cfg, "image", num_faces=4) as tracker:
        faces = tracker.detect_image(image)
    return avatar_stage.create_avatar(image, faces, out_dir, source_name=photo.name)


TRUSTED_KEYS_DIR = PROJECT_ROOT / "assets" / "consent" / "trusted"


def open_registry():
    """This user's consent registry, trusting also the key that signed the bundled sample."""
    from vcam_me.consent.registry import ConsentRegistry, default_consent_dir

    registry = ConsentRegistry.open(default_consent_dir(), extra_trusted_dirs=[TRUSTED_KEYS_DIR])
    _learn_bundled_records(registry)
    return registry


def _learn_bundled_records(registry) -> None:
    """The bundled sample's record is known everywhere, so its renders verify on any machine."""
    from vcam_me.consent.records import RecordError, record_from_json

    path = BUNDLED_AVATAR / "consent.json"
    try:
        registry.add(record_from_json(path.read_text(encoding="utf-8")))
    except (OSError, RecordError, VcamError) as err:
        log.warning("bundled consent record %s not usable: %s", path, err)


@dataclasses.dataclass
class Consent:
    """A verified consent for one avatar: the verdict, and what a guard needs to re-check it."""

    registry: object
    verdict: object
    avatar_hashes: dict
    record: object  # the record file in the avatar folder, or the consent ID

    def guard(self, use: str):
        from vcam_me.consent.guard import ConsentGuard

        return ConsentGuard.for_registry(self.registry, self.record, self.avatar_hashes, use=use)


def require_consent(avatar, use: str) -> Consent:
    """No consent, no avatar: a valid signed record for exactly these avatar files, or an error
    that says how to get one. ``use`` is "live_call", "render" or "evaluation"."""
    from vcam_me.consent.records import hash_avatar_folder, utc_now
    from vcam_me.consent.registry import consent_error

    folder = Path(avatar.folder)
    registry = open_registry()
    hashes = hash_avatar_folder(folder)
    record_file = folder / "consent.json"
    now = utc_now()
    if record_file.is_file():
        verdict = registry.check(record_file, hashes, now, use=use)
        record = record_file
        if verdict.ok and verdict.record is not None:
            registry.add(verdict.record)  # known here from now on, so it can be listed and revoked
    else:
        verdict = registry.check_avatar(hashes, now, use=use)
        record = verdict.consent_id
    if not verdict.ok:
        raise consent_error(verdict, folder)
    return Consent(registry, verdict, hashes, record)


def appearance_files(avatar):
    """The avatar's own (personalised) appearance network, else the shipped generic prior."""
    from vcam_me.avatar.appearance import AppearanceFiles
    from vcam_me.models import verified_model_path

    own = avatar.network_files()
    if own:
        return AppearanceFiles(own["fp32"], own.get("int8"))
    return AppearanceFiles(verified_model_path("transfer_appearance"), verified_model_path("transfer_appearance_int8"))


def geometry_refiner(avatar, cfg: AppConfig, *, own: Path | None = None):
    """What refines the AU basis: with ``[avatar] geometry = "network"`` the avatar's own
    geometry head when ``vcam-me setup`` made one (or ``own``, a head kept outside the avatar
    folder: the evaluation's personalised renderer), else the shipped generic head; ``None``
    (the basis alone) with "basis"."""
    if cfg.avatar.geometry == "basis":
        return None
    from vcam_me.avatar.geometry_refiner import GeometryRefiner
    from vcam_me.models import verified_model_path

    own = own or (avatar.network_files() or {}).get("geometry")
    return GeometryRefiner.load(own or verified_model_path("transfer_geometry_refinement"))


def build_renderer(avatar, size: tuple[int, int], cfg: AppConfig, *, live: bool = False, basis=None):
    """The avatar renderer the configuration asks for. ``live``: the appearance network runs
    on its own thread at the camera's rate; otherwise inline, every frame (deterministic).
    ``basis``: an :class:`~vcam_me.avatar.AUBasis` instead of the shipped one (evaluation of
    a recalibrated basis)."""
    warp = warp_renderer(avatar, size, cfg, basis=basis, cache_dir=user_cache_dir() / "warp",
                         refiner=geometry_refiner(avatar, cfg))
    mode = cfg.avatar.appearance
    if mode == "warp" or (mode == "auto" and not avatar.network_files()):
        return warp
    from vcam_me.avatar.appearance import AppearanceNet, NeuralAvatarRenderer

    net = AppearanceNet.load(appearance_files(avatar), device=cfg.avatar.appearance_device,
                             threads=cfg.avatar.appearance_threads)
    warp.draw_details = False
    return NeuralAvatarRenderer(warp, net, asynchronous=live, min_interval_ms=cfg.avatar.appearance_interval_ms)


def driven_by_owner(avatar, cfg: AppConfig) -> bool:
    """Whether ``avatar`` is drawn for its own person driving it (``[avatar] driver``; "auto":
    yes for an avatar personalised by ``vcam-me setup``, which carries its own network)."""
    if cfg.avatar.driver != "auto":
        return cfg.avatar.driver == "owner"
    return bool(avatar.network_files())


def warp_renderer(avatar, size: tuple[int, int], cfg: AppConfig, *, owner: bool | None = None, **kwargs):
    """The mesh-warp renderer for ``avatar`` at ``size``, its face framed clear of the label
    (``kwargs`` go to :meth:`~vcam_me.avatar.AvatarRenderer.create`). ``owner``: whether the
    avatar's own person drives it (default: :func:`driven_by_owner`); then the AU basis is
    drawn as measured, without the gains that make another person's motion read back."""
    from vcam_me.avatar import AUBasis, AvatarRenderer

    if owner is None:
        owner = driven_by_owner(avatar, cfg)
    if owner:
        kwargs["basis"] = (kwargs.get("basis") or AUBasis.load()).as_measured()
    return AvatarRenderer.create(avatar, size, cfg.avatar, keep_clear_row=label_top_row(size, cfg), **kwargs)


@functools.lru_cache(maxsize=8)
def _badge_top(size: tuple[int, int], options) -> int:
    from vcam_me.consent.label import render_label_sprites

    return int(render_label_sprites(size, options).badge.rect[1])


def label_top_row(size: tuple[int, int], cfg: AppConfig) -> int | None:
    """The top row of the label's badge when it sits under the face (the renderer frames the
    face above it: on frames narrower than 16:9 the badge climbs to the chin); None when the
    badge is at the top."""
    if cfg.label.position != "bottom-centre":
        return None
    return _badge_top(tuple(int(v) for v in size), cfg.label)


def build_stamper(cfg: AppConfig, size: tuple[int, int], consent: Consent):
    """The disclosure on every frame: the visible label with the consent code, and the
    invisible mark carrying the consent ID of the record that allows this avatar."""
    from vcam_me.consent import LabelStamper
    from vcam_me.consent.disclosure import Disclosure

    verdict = consent.verdict
    label = LabelStamper.create(size, cfg.label, consent_code=verdict.code, display_name=verdict.subject_name)
    return Disclosure.create(label, verdict.consent_id, size)


def provenance_dir() -> Path:
    """Where this user's C2PA signing identity lives (made on first use, owner-only)."""
    return user_data_dir() / "provenance"


class RecordingSigner:
    """The recorder's finishing step: sign the complete MP4 with C2PA Content Credentials
    naming the consent record whose ID the frames carry. ``record`` may be set after the
    recorder was opened (a live run opens its outputs before it checks consent)."""

    def __init__(self, out: Path, record=None) -> None:
        self.title = Path(out).name
        self.record = record

    def __call__(self, finished: Path, signed: Path) -> None:
        from vcam_me.consent.provenance import sign_recording_with_consent

        sign_recording_with_consent(finished, signed, self.record, provenance_dir(), self.title)


def _report_signing(sink) -> None:
    """One line when a recording was cut short (what was written is kept, unsigned) or could
    not be signed (it is kept, unsigned)."""
    if getattr(sink, "cut_short_message", None):
        print(f"vcam-me: warning: {sink.cut_short_message}", file=sys.stderr)
    elif getattr(sink, "finish_error", None):
        print(f"vcam-me: warning: {sink.path} is not C2PA-signed ({sink.finish_error}); "
              f"the recording is kept without Content Credentials", file=sys.stderr)


def build_expression(cfg: AppConfig, *, offline: bool, observations: list | None = None, micro: str | None = None,
                     idle=None):
    """The expression stage: the tracked face, an optional idle layer and micro-expressions
    (``micro``: "none", "auto" or a script file; default ``[micro] mode``).

    Offline, the recording calibrates itself: its own neutral baseline and pose, fixed for the
    whole clip, and interpolation on its own timeline. Live, the engine is there even with
    ``micro = "none"``, so hotkeys can trigger expressions.
    """
    from vcam_me.expression import ExpressionMapper
    from vcam_me.expression.composer import ExpressionComposer

    mapper = offline_mapper(cfg, observations or []) if offline else ExpressionMapper(cfg.expression)
    mode = micro_mode(cfg, micro)
    engine, triggers = (None, []) if offline and mode == "none" else build_micro(cfg, mode)
    return ExpressionComposer(mapper, engine, triggers, idle)


def offline_mapper(cfg: AppConfig, observations: list):
    """Tracked expression of a recording calibrated on itself: its own neutral baseline and
    pose, fixed for the whole clip, and interpolation on its own timeline (no delay)."""
    from vcam_me.expression import Calibration, ExpressionMapper

    options = dataclasses.replace(cfg.expression, interpolation_delay_ms=0)
    calibration = Calibration.from_observations(observations)
    return ExpressionMapper(options, calibration, adapt_baseline=calibration is None)


def micro_mode(cfg: AppConfig, micro: str | None) -> str:
    """``--micro`` (or ``[micro] mode``): "none", "auto" or a script path; a clear error otherwise."""
    from vcam_me.errors import MicroExpressionError

    mode = cfg.micro.mode if micro is None else micro
    if mode in ("none", "auto"):
        return mode
    if not str(mode).lower().endswith(".json"):
        raise MicroExpressionError(f"--micro {mode}: expected auto, none or a scripted sequence FILE.json")
    return str(Path(mode).expanduser())


def micro_library_paths(cfg: AppConfig) -> list[Path]:
    """The bundled library, then the user's own types: micro_expressions.toml beside config.toml,
    then ``[micro] library``."""
    from vcam_me.expression.micro import DEFAULT_LIBRARY_PATH

    paths = [DEFAULT_LIBRARY_PATH]
    user = user_config_path().parent / "micro_expressions.toml"
    if user.is_file():
        paths.append(user)
    if cfg.micro.library:
        paths.append(Path(cfg.micro.library).expanduser())
    return paths


def build_micro(cfg: AppConfig, mode: str):
    """The micro-expression engine and its trigger for ``mode`` (none: no trigger; auto: the
    Poisson trigger; a path: the script). The engine's seed is ``[micro] seed`` (random when
    "random"; either way recorded in the event log); auto mode draws from seed + 1."""
    from vcam_me.expression.micro import (
        AutoTrigger,
        MicroEngine,
        MicroLibrary,
        ScriptedTrigger,
        load_script,
    )

    library = MicroLibrary.load(*micro_library_paths(cfg))
    seed = None if cfg.micro.seed == "random" else int(cfg.micro.seed)
    engine = MicroEngine(library, cfg.micro, seed=seed)
    if mode == "none":
        return engine, []
    if mode == "auto":
        return engine, [AutoTrigger(engine, cfg.micro.rate_per_min, cfg.micro.persona, seed=engine.seed + 1)]
    return engine, [ScriptedTrigger(engine, load_script(mode, library))]


def build_idle(cfg: AppConfig, seed: int | None = None):
    """The idle animator: the avatar's life while the face is lost or tracking is paused.
    :func:`connect_idle` gives it the micro-expression engine, :func:`live_controls` the
    microphone. ``seed``: ``None`` draws one (live); a render passes one, so it can be repeated."""
    from vcam_me.expression.idle import IdleAnimator

    return IdleAnimator(cfg.idle, seed)


def connect_idle(cfg: AppConfig, expression) -> None:
    """Let the idle face fire its micro-expressions (``[idle] micro_types``) through the
    expression stage's engine, when it has both; an unknown type is a configuration error."""
    from vcam_me.errors import ConfigError

    idle, engine = expression.idle, expression.engine
    if idle is None or engine is None:
        return
    unknown = [n for n in cfg.idle.micro_types if n not in engine.library]
    if unknown:
        raise ConfigError(f"idle.micro_types: {unknown[0]!r} is not a micro-expression type "
                          f"(known: {', '.join(sorted(engine.library.names))})")
    idle.engine = engine


def open_microphone(cfg: AppConfig):
    """The microphone for the idle jaw, or ``None`` (with one line saying why) when there is none."""
    from vcam_me.capture.microphone import Microphone

    device = cfg.idle.microphone.strip()
    try:
        # The device's own rate: a level meter needs no particular one, and every device has it.
        return Microphone.open(int(device) if device.isdigit() else (device or None), sample_rate=None)
    except VcamError as err:
        print(f"vcam-me: {err}; the avatar's jaw will not follow your voice while your face is away", file=sys.stderr)
        return None


@contextlib.contextmanager
def live_controls(cfg: AppConfig, expression, *, hotkeys: bool = True):
    """Wire the live controls around the expression stage (an ExpressionComposer built with
    :func:`build_idle`'s animator): the microphone drives the idle jaw and the automatic mode's
    speech rule, the idle face fires its micro-expressions through the engine, and global
    hotkeys trigger expressions and pause tracking. Yields the idle animator, whose
    ``pause()`` / ``resume()`` / ``toggle_pause()`` are the pause-to-idle control (tray).
    Hotkeys need a desktop session; without one, or with ``hotkeys=False``, one line says so."""
    idle, engine = expression.idle, expression.engine
    connect_idle(cfg, expression)
    with contextlib.ExitStack() as stack:
        microphone = open_microphone(cfg) if idle is not None and cfg.idle.voice_jaw else None
        if microphone is not None:
            stack.enter_context(microphone)
            idle.voice_level = microphone.level
            floor, full = cfg.idle.voice_floor_dbfs, cfg.idle.voice_full_dbfs
            expression.speech_level = lambda: min(max((microphone.level() - floor) / (full - floor), 0.0), 1.0)
        if hotkeys and cfg.hotkeys.enabled and engine is not None:
            from vcam_me.ui.hotkeys import HotkeyListener, HotkeysUnavailableError

            try:
                stack.enter_context(HotkeyListener.start(cfg.hotkeys, expression, known_types=engine.library.names,
                                                         on_pause=None if idle is None else idle.toggle_pause))
                print(f"vcam-me: hotkeys on ({cfg.hotkeys.pause} pauses tracking; [hotkeys] in the config)", file=sys.stderr)
            except HotkeysUnavailableError as err:
                print(f"vcam-me: hotkeys off: {err}", file=sys.stderr)
        yield idle


def events_path(out: Path | None, events_out: str | None, mode: str, force: bool) -> Path | None:
    """Where the event log goes: ``--events-out``, else beside the video when expressions are
    injected (OUT.events.json). Checked before any work, like the video itself."""
    if events_out:
        return _check_new_output(Path(events_out), force)
    if mode == "none" or out is None:
        return None
    return _check_new_output(out.with_suffix(".events.json"), force)


def _check_new_output(path: Path, force: bool) -> Path:
    """Refuse to clobber the user's files or to start work that cannot be written."""
    from vcam_me.output import check_writable

    path = Path(path).expanduser()
    if path.is_file() and not force:
        raise OutputError(f"output file exists: {path} (choose another name, or pass --force to replace it)")
    return check_writable(path, overwrite=force)


def _free_name(path: Path) -> Path:
    if not path.exists():
        return path
    for i in range(1, 10_000):
        candidate = path.with_name(f"{path.stem}-{i}{path.suffix}")
        if not candidate.exists():
            return candidate
    raise OutputError(f"no free file name next to {path}")


def _open_driving(path: Path, pace: str = "fast", loop: bool = False):
    from vcam_me.capture import VideoFileSource

    return VideoFileSource.open(path, pace=pace, loop=loop)


# --------------------------------------------------------------------------------------
# commands
# --------------------------------------------------------------------------------------
def render_video(avatar_spec: str | None, driving: Path, out: Path, fps: int, size: tuple[int, int], cfg: AppConfig,
                 *, force: bool = False, micro: str | None = None, events_out: str | None = None) -> dict:
    """Offline render: frame i of ``out`` shows the avatar at t = i / fps on the driving video's timeline.

    With micro-expressions (``micro``, default ``[micro] mode``) the event log is written to
    ``events_out`` (default OUT.events.json). Its times are the output video's: output frame i
    is drawn for t = i × 1000 / fps ms, the same instant of the driving video's timeline (both
    start at 0), so an event logged at ``apex_ms`` peaks in the frame shown at that time.
    """
    from vcam_me.output import RecorderSink
    from vcam_me.pipeline import render_offline

    out = _check_new_output(out, force)
    mode = micro_mode(cfg, micro)
    log_path = events_path(out, events_out, mode, force)
    if mode != "none":
        build_micro(cfg, mode)  # a bad library or script fails now, before any tracking
    with _open_driving(Path(driving)) as source:  # cheap checks first: a bad video fails before models load
        avatar = resolve_avatar(avatar_spec, cfg)
        consent = require_consent(avatar, "render")
        observations = track_recording(source, cfg, label=f"tracking {Path(driving).name}")
    renderer = build_renderer(avatar, size, cfg)
    stamper = build_stamper(cfg, size, consent)
    expression = build_expression(cfg, offline=True, observations=observations, micro=mode)
    # Where the driving video loses the face, the avatar idles (no microphone offline), seeded
    # from the engine's seed, which the event log records, so a render can be repeated.
    expression.idle = build_idle(cfg, seed=0 if expression.engine is None else expression.engine.seed + 2)
    connect_idle(cfg, expression)
    duration_ms = observations[-1].timestamp_ms if observations else 0
    progress = Progress(f"rendering {out.name}", int(duration_ms * fps / 1000) + 1)
    signer = RecordingSigner(out, consent.verdict.record)
    with RecorderSink.open(out, size, fps, cfg.output, overwrite=force, finish=signer) as sink, \
            consent.guard("render") as guard:
        guard.start(now_ms())
        written = render_offline(observations, expression, renderer, stamper, sink, fps, progress=progress, guard=guard)
    progress.done()
    _report_signing(sink)
    faces = sum(o.has_face for o in observations)
    info = {"out": str(out), "consent": consent.verdict.code, "frames": written, "driving_frames": len(observations),
            "driving_frames_with_face": faces, "c2pa_signed": written > 0 and sink.finish_error is None}
    if log_path is not None:
        expression.write_events(log_path, force=force, mode=mode, fps=fps, video=str(out), driving=str(driving))
        info.update(events=len(expression.events), events_out=str(log_path))
    return info


def track_recording(source, cfg: AppConfig, label: str = "tracking") -> list:
    """Every frame of an opened video file, tracked, stamped with its time in the file."""
    from vcam_me.pipeline import on_timeline, track_all

    progress = Progress(label, source.frame_count)
    with build_tracker(cfg, "video") as tracker:
        observations = track_all(on_timeline(source.iter_timed()), tracker, progress=progress)
    progress.done()
    return observations


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def cmd_demo(args, cfg: AppConfig) -> int:
    out = Path(args.out) if getattr(args, "out", None) else _free_name(Path.cwd() / "vcam-me-demo.mp4")
    while not getattr(args, "out", None) and out.with_suffix(".events.json").exists():  # its log's name must be free too
        out = _free_name(out.with_name(out.stem + "-1.mp4"))
    size = (cfg.output.width, cfg.output.height)
    print(f"vcam-me: rendering the bundled clip ({BUNDLED_DRIVING.name}) onto the bundled avatar …", file=sys.stderr)
    # The demo shows the micro-expressions (auto mode unless the config names another), at
    # a rate that puts a few into the 20 s clip (the everyday default is a calm 4 a minute).
    micro = "auto" if cfg.micro.mode == "none" else cfg.micro.mode
    if micro == "auto":
        cfg = dataclasses.replace(cfg, micro=dataclasses.replace(cfg.micro, rate_per_min=max(cfg.micro.rate_per_min, DEMO_MICRO_RATE)))
    info = render_video(str(BUNDLED_AVATAR), BUNDLED_DRIVING, out, cfg.output.fps, size, cfg, micro=micro)
    print(f"vcam-me: wrote {info['frames']} frames ({size[0]}x{size[1]}, {cfg.output.fps} fps) to {info['out']}"
          + (" (C2PA-signed)" if info.get("c2pa_signed") else ""))
    print(f"vcam-me: {_count(info['events'], 'micro-expression')} injected, logged in {info['events_out']}")
    print("vcam-me: to go live with your webcam: vcam-me run   (vcam-me doctor checks your machine)")
    return 0


def cmd_render(args, cfg: AppConfig) -> int:
    size = args.size or (cfg.output.width, cfg.output.height)
    info = render_video(args.avatar, Path(args.driving), Path(args.out), args.fps, size, cfg, force=args.force,
                        micro=args.micro, events_out=args.events_out)
    print(f"vcam-me: wrote {info['frames']} frames to {info['out']} "
          f"(driving video: {info['driving_frames']} frames, a face in {info['driving_frames_with_face']})"
          + ("; C2PA-signed" if info.get("c2pa_signed") else ""))
    if "events_out" in info:
        print(f"vcam-me: {_count(info['events'], 'micro-expression')} injected, logged in {info['events_out']}")
    return 0


def cmd_avatar(args, cfg: AppConfig) -> int:
    if args.avatar_command == "create":
        photo = Path(args.photo).expanduser()
        if not photo.is_file():
            raise AvatarError(f"photo not found: {photo}")
        name = args.name or photo.stem
        out = Path(args.out).expanduser() if args.out else _avatar_cache_dir() / name
        avatar = create_avatar(photo, out, cfg)
        print(f"vcam-me: avatar '{name}' created in {avatar.folder}")
        print(f"vcam-me: before it can be used it needs a consent record: the person shown records it with "
              f"vcam-me consent record --avatar {avatar.folder} --name NAME; or, if you hold the rights to the photo: "
              f"vcam-me consent attest --avatar {avatar.folder} --licence TEXT")
        return 0
    if args.avatar_command == "list":
        root = _avatar_cache_dir()
        from vcam_me.storage import is_temporary

        folders = sorted(p for p in root.glob("*") if (p / "avatar.json").is_file() and not is_temporary(p)) if root.is_dir() else []
        print(f"bundled: {BUNDLED_AVATAR}")
        for folder in folders:
            print(f"{folder.name}: {folder}")
        if not folders:
            print(f"(no avatars of yours yet in {root}; make one with: vcam-me avatar create --photo FILE)")
        return 0
    if args.avatar_command == "export":
        out = export_avatar(args.name, Path(args.out).expanduser())
        print(f"vcam-me: avatar '{args.name}' written to {out}")
        return 0
    if args.avatar_command == "import":
        archive = Path(args.archive).expanduser()
        avatar = import_avatar(archive, args.name)
        print(f"vcam-me: avatar '{avatar.folder.name}' imported into {avatar.folder}")
        if (avatar.folder / "consent.json").is_file():
            # said now, not at the first call: a record signed on another machine is only
            # trusted here once its issuer's public key is (consent/trusted/)
            from vcam_me.consent.records import hash_avatar_folder, utc_now

            verdict = open_registry().check(avatar.folder / "consent.json", hash_avatar_folder(avatar.folder), utc_now())
            print(f"vcam-me: its consent record {verdict.code or ''}: {verdict.status}"
                  + ("" if verdict.ok else f" ({verdict.reason})"))
        else:
            print(f"vcam-me: it carries no consent record; before it can be used: vcam-me consent record --avatar "
                  f"{avatar.folder} --name NAME, or vcam-me consent attest --avatar {avatar.folder} --licence TEXT")
        if driven_by_owner(avatar, cfg):
            print("vcam-me: it was personalised from its owner's video, so it is drawn for its owner driving it; "
                  "if someone else drives it, set [avatar] driver = \"other\" for stronger expressions")
        return 0
    print("vcam-me: error: say what to do with avatars: vcam-me avatar create --photo FILE | list | export NAME OUT.zip "
          "| import ARCHIVE.zip", file=sys.stderr)
    return 2


def avatar_folder_named(name: str) -> Path:
    """An avatar folder given by its path, or by its name among the user's own avatars."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    own = _avatar_cache_dir() / name
    if own.is_dir():
        return own
    raise AvatarError(f"no avatar folder {path} and no avatar of yours named {name!r} (see: vcam-me avatar list)")


def export_avatar(name: str, out: Path) -> Path:
    """Write an avatar (folder path or own avatar's name) as a zip archive; never overwrites ``out``."""
    from vcam_me.avatar.archive import export_avatar_archive

    return export_avatar_archive(avatar_folder_named(name), out)


def _check_carried_consent(folder: Path) -> None:
    """A consent record that comes with an imported avatar must at least be a well-formed
    record; whether it is valid here (trusted issuer, dates, hashes) is checked at each use."""
    from vcam_me.consent.records import RecordError, record_from_json
    from vcam_me.errors import ConsentError

    path = folder / "consent.json"
    if not path.is_file():
        return
    try:
        record_from_json(path.read_bytes())
    except RecordError as err:
        raise ConsentError(f"the archive's consent.json is not a valid consent record: {err}") from None


def import_avatar(archive: Path, name: str | None = None):
    """Unpack an avatar archive among the user's own avatars (as ``name``, default the
    archive's file name); refuses anything unsafe and never replaces an existing avatar."""
    from vcam_me.avatar.archive import avatar_name_from, import_avatar_archive

    return import_avatar_archive(archive, _avatar_cache_dir(), name or avatar_name_from(archive.stem),
                                 check_folder=_check_carried_consent)


# --------------------------------------------------------------------------------------
# personalisation: the owner's setup capture → an avatar with its own network
# --------------------------------------------------------------------------------------
def _how_to_get_torch() -> str:
    """Where PyTorch comes from: pip for a Python install; the installed (frozen) app leaves it
    out (about 750 MB, installers/vcam_me.spec), so it points to a Python install instead."""
    if getattr(sys, "frozen", False):
        return ("this installed build leaves PyTorch out (about 750 MB); personalise with vcam-me installed from "
                "Python (pip install 'vcam-me[train]', see the README), then import the avatar here")
    return "pip install 'vcam-me[train]'"


def personalise_avatar(capture: Path, out: Path, *, steps: int = 500, device: str = "auto", progress=None,
                       cancel=None):
    """Check a setup capture, fine-tune the shipped prior on it and write the avatar folder
    (the function behind ``vcam-me setup`` and the wizard). ``progress(stage, done, total)``;
    ``cancel``: a ``threading.Event`` (the work so far is kept; the next call resumes).
    Needs PyTorch (the ``train`` extra); a clear :class:`SetupError` without it."""
    from vcam_me.errors import SetupError

    try:
        from vcam_me.training.personalise import personalise
    except ImportError as err:
        raise SetupError(f"personalisation needs PyTorch ({err.name} is not installed): {_how_to_get_torch()}") from None
    from vcam_me.models import verified_model_path

    kwargs = {} if progress is None else {"progress": progress}
    return personalise(capture, out, prior=verified_model_path("transfer_prior"), steps=steps, device=device,
                       cancel=cancel, **kwargs)


def cmd_setup(args, cfg: AppConfig) -> int:
    import threading

    from vcam_me.errors import SetupError

    capture = Path(args.from_video).expanduser()
    if not capture.is_file():
        raise SetupError(f"capture not found: {capture}")
    out = Path(args.out).expanduser() if args.out else _free_name(_avatar_cache_dir() / capture.stem)
    bars: dict[str, Progress] = {}
    labels = {"checking": "checking the capture", "tracking": "tracking your face",
              "preparing": "preparing the training frames", "training": "fine-tuning", "saving": "saving"}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in bars:
            for bar in bars.values():
                bar.done()
            bars.clear()
            bars[stage] = Progress(labels.get(stage, stage), total)
        bars[stage](done)

    cancel = threading.Event()
    try:
        result = personalise_avatar(capture, out, steps=args.steps, device=args.device, progress=progress, cancel=cancel)
    except KeyboardInterrupt:
        # Ctrl-C lands here between steps on the main thread; the last checkpoint (every 50
        # steps) is kept, so running the same command again resumes from it.
        for bar in bars.values():
            bar.done()
        print("vcam-me: set-up interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    for bar in bars.values():
        bar.done()
    checks = result.checks
    print(f"vcam-me: personalised avatar written to {result.avatar_folder} in {result.seconds:.0f} s on {result.device} "
          f"({checks['face_frames']} face frames, {len(checks['moving_aus'])} facial actions moved; face L1 "
          f"{result.face_l1['warp_only']:.2f} warp only → {result.face_l1['after']:.2f} with the network)")
    print(f"vcam-me: before it can be used it needs a consent record: vcam-me consent record --avatar {result.avatar_folder} --name NAME")
    return 0


# --------------------------------------------------------------------------------------
# recorded consent: the person depicted reads a statement on camera and microphone
# --------------------------------------------------------------------------------------
def _refuse_if_consented(folder: Path, registry, now) -> None:
    """An avatar holds one record in force at a time: refuse while its record is valid."""
    from vcam_me.consent.records import hash_avatar_folder
    from vcam_me.errors import ConsentError

    target = folder / "consent.json"
    if target.exists():
        current = registry.check(target, hash_avatar_folder(folder), now)
        if current.ok:
            raise ConsentError(f"{target} already holds valid consent record {current.code}; "
                               f"revoke it first (vcam-me consent revoke {current.code} --reason …)")


def _put_avatar_record(folder: Path, record, registry, now) -> None:
    """Write ``record`` as the avatar's ``consent.json``; an older record there is kept
    beside it under a new name, never deleted."""
    from vcam_me.consent.records import hash_avatar_folder
    from vcam_me.storage import atomic_write_bytes, atomic_write_text

    target = folder / "consent.json"
    if target.exists():
        current = registry.check(target, hash_avatar_folder(folder), now)
        kept = _free_name(folder / f"consent-{current.code or 'old'}-{current.status}.json")
        # copy, then replace: a crash in between leaves the old record in place as well as kept
        atomic_write_bytes(kept, target.read_bytes(), exclusive=True)
        print(f"vcam-me: previous record ({current.status}) kept as {kept.name}", file=sys.stderr)
    atomic_write_text(target, record.to_json())


def build_face_describer():
    """The face-identity network (dlib's ResNet; hash-checked model file)."""
    from vcam_me.models import verified_model_path
    from vcam_me.tracking.identity import FaceDescriber

    return FaceDescriber.create(verified_model_path("face_recognition"))


def sample_recording_frames(recording: Path, count: int) -> list:
    """``count`` frames spread evenly over a recording (the middle of each equal slice)."""
    import numpy as np

    with _open_driving(recording) as source:
        duration_ms = 1000.0 * (source.duration_s or 0.0)
        if duration_ms <= 0:  # length unknown: decode all, then pick
            images = [frame.image for frame in source]
            return [images[i] for i in np.linspace(0, len(images) - 1, count).round().astype(int)] if images else []
        targets = [(k + 0.5) * duration_ms / count for k in range(count)]
        picked: list = []
        for frame, pts_ms in source.iter_timed():
            if pts_ms >= targets[len(picked)]:
                picked.append(frame.image)
                if len(picked) == count:
                    break
    return picked


def face_match_of(recording: Path, avatar, cfg: AppConfig):
    """Compare the face in ``recording`` with the avatar's reference face (identity descriptors
    on frames spread over the recording); :class:`~vcam_me.consent.evidence.FaceMatch` or a
    one-line refusal."""
    from vcam_me.consent.evidence import check_face_match
    from vcam_me.tracking.identity import descriptor_distance

    describer = build_face_describer()
    reference = describer.describe(avatar.image, avatar.landmarks)
    frames = sample_recording_frames(recording, cfg.consent.face_frames)
    distances, several = [], 0
    with build_tracker(cfg, "image", num_faces=2) as tracker:
        for image in frames:
            faces = tracker.detect_image(image)
            if len(faces) == 1:
                distances.append(descriptor_distance(reference, describer.describe(image, faces[0].landmarks)))
            elif len(faces) > 1:
                several += 1
    return check_face_match(distances, frames_sampled=len(frames), limit=cfg.consent.face_match_max_distance,
                            several_faces=several)


def check_consent_recording(recording: Path, avatar, cfg: AppConfig, *, name: str | None = None) -> tuple:
    """All checks on a consent recording, cheap ones first: ``(SpeechMeasure, FaceMatch)``.
    ``name``: how messages call the recording (default: its file name)."""
    from vcam_me.consent.evidence import check_speech, measure_speech, read_audio

    audio = read_audio(recording, name=name)
    speech = check_speech(measure_speech(audio), min_voice_seconds=cfg.consent.min_voice_seconds,
                          min_voice_dbfs=cfg.consent.min_voice_dbfs)
    return speech, face_match_of(recording, avatar, cfg)


def _expiry(now, days: int):
    """The expiry a record issued ``now`` for ``days`` gets (the date the statement names)."""
    import datetime

    return now.replace(microsecond=0) + datetime.timedelta(days=days)


def _refuse_reuse(registry, *, challenge: str | None = None, evidence_sha256: str | None = None) -> None:
    """A challenge code and a recording back one record only: a replayed clip is refused."""
    from vcam_me.consent.evidence import EvidenceError
    from vcam_me.consent.records import KIND_RECORDED, RecordError

    for consent_id in registry.ids():
        try:
            record = registry.get(consent_id)
        except RecordError:
            continue
        if record is None or record.kind != KIND_RECORDED:
            continue
        if challenge is not None and record.challenge == challenge:
            raise EvidenceError(f"challenge {challenge} was already used by consent record {record.code}: "
                                "each recording needs a fresh code (--statement-only makes one)")
        if evidence_sha256 is not None and record.evidence_sha256 == evidence_sha256:
            raise EvidenceError(f"this recording already backs consent record {record.code}; record the statement again")


def issue_recorded_consent(recording: Path, avatar, *, subject_name: str, challenge: str, days: int, cfg: AppConfig,
                           registry=None, now=None, recording_name: str | None = None):
    """Check a consent recording and, if it passes, sign and store a ``recorded`` record.

    The recording is first copied into the user's consent folder (0600, named by its
    SHA-256) and the checks run on that copy, so the signed hash is of exactly what was
    checked. A refused recording's copy is removed again. Returns ``(record, figures)``.
    """
    import getpass

    from vcam_me.consent.evidence import (
        EvidenceError,
        consent_statement,
        figures_of,
        parse_challenge,
        store_evidence,
        write_checks,
    )
    from vcam_me.consent.records import hash_avatar_folder, utc_now

    registry = registry or open_registry()
    now = now or utc_now()
    folder = Path(avatar.folder)
    challenge = parse_challenge(challenge)
    statement = consent_statement(subject_name, _expiry(now, days), challenge)
    _refuse_if_consented(folder, registry, now)
    _refuse_reuse(registry, challenge=challenge)
    hashes = hash_avatar_folder(folder)
    stored = store_evidence(Path(recording).expanduser(), registry.folder)
    try:
        _refuse_reuse(registry, evidence_sha256=stored.sha256)
        speech, face = check_consent_recording(stored.path, avatar, cfg, name=recording_name or Path(recording).name)
    except (EvidenceError, VcamError):
        if stored.created:
            stored.path.unlink(missing_ok=True)  # our copy of a refused recording
        raise
    record = registry.issue_recorded(
        hashes, now=now, subject_name=subject_name, statement=statement, challenge=challenge,
        evidence_sha256=stored.sha256, operator=getpass.getuser(), valid_days=days,
    )
    _put_avatar_record(folder, record, registry, now)
    figures = figures_of(speech, face, stored)
    write_checks(registry.folder, record.code, figures)
    return record, figures


def capture_consent(avatar, *, subject_name: str, days: int, cfg: AppConfig, seconds: float | None = None,
                    open_frames=None, open_audio=None, on_statement=None, on_progress=None, cancel=None,
                    registry=None, now=None):
    """Record the consent statement live (camera + microphone), check it, sign the record.

    This is what the setup wizard calls: ``on_statement(text)`` receives the sentence to show
    (with its fresh challenge code) before recording starts, ``on_progress(elapsed_s,
    total_s)`` follows the recording, and setting the ``cancel`` event stops it.
    ``open_frames()`` → a live frame source (default: the configured camera) and
    ``open_audio(on_block)`` → a running microphone that calls ``on_block`` with float32
    blocks (default: the system's default input) are the seams tests replace.
    Returns ``(record, figures)`` like :func:`issue_recorded_consent`.
    """
    import secrets

    from vcam_me.consent.capture import AudioBlocks, record_statement
    from vcam_me.consent.evidence import consent_statement, evidence_dir, new_challenge
    from vcam_me.consent.records import utc_now

    registry = registry or open_registry()
    now = now or utc_now()
    _refuse_if_consented(Path(avatar.folder), registry, now)
    challenge = new_challenge()
    statement = consent_statement(subject_name, _expiry(now, days), challenge)
    seconds = seconds or cfg.consent.record_seconds
    if open_frames is None:
        from vcam_me.capture import open_source

        def open_frames():
            return open_source(dataclasses.replace(cfg.capture, source="camera"))
    if open_audio is None:
        from vcam_me.capture.microphone import Microphone

        def open_audio(on_block):
            return Microphone.open(sample_rate=48_000, on_block=on_block)
    blocks = AudioBlocks(48_000)
    take = evidence_dir(registry.folder) / f".take-{secrets.token_hex(6)}.mp4"
    with open_frames() as frames, open_audio(blocks.add) as microphone:  # fail before the statement is shown
        blocks.sample_rate = getattr(microphone, "sample_rate", blocks.sample_rate)
        if on_statement is not None:
            on_statement(statement)
        record_statement(frames, blocks, take, seconds, on_progress=on_progress, cancel=cancel)
    try:
        return issue_recorded_consent(take, avatar, subject_name=subject_name, challenge=challenge, days=days,
                                      cfg=cfg, registry=registry, now=now, recording_name="of the statement just made")
    finally:
        take.unlink(missing_ok=True)  # kept (under its hash) only if it passed


def _cmd_consent_record(args, cfg: AppConfig, registry, now) -> int:
    from vcam_me.consent.evidence import (
        consent_statement,
        new_challenge,
        parse_challenge,
    )
    from vcam_me.errors import ConsentError

    if not 1 <= args.days <= 3650:
        raise ConsentError(f"--days {args.days}: allowed 1..3650")
    name = " ".join(args.name.split())
    if not name:
        raise ConsentError("--name must name the person who gives consent")
    if args.statement_only:
        challenge = new_challenge()
        print(consent_statement(name, _expiry(now, args.days), challenge))
        print(f"vcam-me: have {name} read this aloud on camera, then: vcam-me consent record --avatar {args.avatar} "
              f"--name {json.dumps(name)} --days {args.days} --recording FILE --challenge {challenge}", file=sys.stderr)
        return 0
    avatar = resolve_avatar(args.avatar, cfg)
    if args.recording:
        if not args.challenge:
            raise ConsentError("--recording needs --challenge CODE: the code read aloud in it "
                               "(get a statement with a fresh code: --statement-only)")
        challenge = parse_challenge(args.challenge)
        recording = Path(args.recording).expanduser()
        if not recording.is_file():
            raise ConsentError(f"consent recording not found: {recording}")
        _open_driving(recording).close()  # a clear one-line error for a file that is not a video
        print(f"vcam-me: checking {recording.name}: the statement the record will carry is:\n  "
              f"{consent_statement(name, _expiry(now, args.days), challenge)}", file=sys.stderr)
        record, figures = issue_recorded_consent(recording, avatar, subject_name=name, challenge=challenge,
                                                 days=args.days, cfg=cfg, registry=registry, now=now)
    else:
        if args.challenge:
            raise ConsentError("--challenge goes with --recording; a live recording gets a fresh code")
        progress = Progress("recording", None)

        def show(statement: str) -> None:
            print(f"\nRead this aloud, looking at the camera:\n\n    {statement}\n", file=sys.stderr)
            for left in (3, 2, 1):  # a moment to read it through before the recording starts
                print(f"recording starts in {left} …", file=sys.stderr)
                time.sleep(1.0)

        def tick(elapsed: float, total: float) -> None:
            progress.total = int(total)
            progress(int(elapsed))

        record, figures = capture_consent(avatar, subject_name=name, days=args.days, cfg=cfg, seconds=args.seconds,
                                          on_statement=show, on_progress=tick, registry=registry, now=now)
        progress.done()
    speech, face = figures["speech"], figures["face_match"]
    print(f"vcam-me: recorded consent {record.code} for {avatar.folder} (valid until {record.expires_at:%Y-%m-%d}): "
          f"face distance {face['median_distance']:.2f} (limit {face['limit']:.2f}), "
          f"{speech['voiced_s']:.1f} s of voice at {speech['voice_dbfs']:.0f} dBFS; "
          f"evidence kept as {figures['evidence_file']}")
    return 0


def _print_recorded_checks(registry, record) -> None:
    """``consent show``: what was measured on a recorded consent's evidence."""
    from vcam_me.consent.evidence import read_checks
    from vcam_me.consent.records import KIND_RECORDED

    if record.kind != KIND_RECORDED:
        return
    figures = read_checks(registry.folder, record.code)
    if figures is None:
        print(f"{'checks:':<16}(no measured figures kept on this machine)")
        return
    face, speech = figures["face_match"], figures["speech"]
    print(f"{'face match:':<16}median distance {face['median_distance']} (limit {face['limit']}, "
          f"{len(face['distances'])} of {face['frames_sampled']} frames)")
    print(f"{'speech:':<16}{speech['voiced_s']} s of voice in {speech['duration_s']} s, {speech['voice_dbfs']} dBFS "
          f"(noise floor {speech['noise_floor_dbfs']} dBFS)")
    print(f"{'evidence file:':<16}{registry.folder / 'evidence' / figures['evidence_file']}")


def cmd_consent(args, cfg: AppConfig) -> int:
    import getpass

    from vcam_me.consent.records import RecordError, hash_avatar_folder, utc_now
    from vcam_me.errors import ConsentError

    registry = open_registry()
    now = utc_now()
    try:
        if args.consent_command == "attest":
            if not 1 <= args.days <= 3650:
                raise ConsentError(f"--days {args.days}: allowed 1..3650")
            avatar = resolve_avatar(args.avatar, cfg)
            folder = Path(avatar.folder)
            _refuse_if_consented(folder, registry, now)
            record = registry.issue_attested(
                hash_avatar_folder(folder), licence=args.licence, operator=getpass.getuser(),
                subject_name=args.name or folder.name, now=now, valid_days=args.days,
            )
            _put_avatar_record(folder, record, registry, now)
            print(f"vcam-me: attested licence {record.code} for {folder} (valid until {record.expires_at:%Y-%m-%d}); "
                  f"the label will show it and every frame will carry it")
            return 0
        if args.consent_command == "record":
            return _cmd_consent_record(args, cfg, registry, now)
        if args.consent_command == "revoke":
            revocation = registry.revoke(args.id, args.reason, now)
            print(f"vcam-me: revoked {revocation.code}; running sessions using it stop within seconds")
            return 0
        if args.consent_command == "list":
            verdicts = registry.list(now)
            for v in verdicts:
                expiry = f"{v.record.expires_at:%Y-%m-%d}" if v.record is not None else "-"
                print(f"{v.code}  {v.status:<12} {v.kind or '-':<16} until {expiry}  {v.subject_name or ''}")
            if not verdicts:
                print(f"(no consent records yet in {registry.folder})")
            return 0
        if args.consent_command == "show":
            verdict = registry.check(args.id, None, now)
            record = verdict.record
            print(f"consent ID: {verdict.code or args.id}\nstatus:     {verdict.status} ({verdict.reason})")
            if record is not None:
                for key, value in sorted(json.loads(record.to_json()).items()):
                    if key != "sig":
                        print(f"{key + ':':<16}{value}")
                _print_recorded_checks(registry, record)
            return 0 if verdict.ok else 1
    except (RecordError, ValueError) as err:
        raise ConsentError(str(err).splitlines()[0]) from None
    print("vcam-me: error: say what to do: vcam-me consent record | attest | revoke | list | show", file=sys.stderr)
    return 2


def cmd_verify(args, cfg: AppConfig) -> int:
    """Read the consent ID out of a recording; say whether its record is valid, expired,
    revoked or unknown, where the mark was found, and how sure the reading is."""
    from vcam_me.consent.disclosure import PUBLIC_MARK_KEY
    from vcam_me.consent.mark_decoder import decode_video
    from vcam_me.consent.records import format_consent_code, utc_now

    path = Path(args.file).expanduser()
    source = _open_driving(path)  # a clear one-line error for a missing or broken file
    source.close()
    found = decode_video(path, PUBLIC_MARK_KEY, max_seconds=args.seconds)
    report = {
        "file": str(path),
        "mark_found": found.found,
        "consent_id": format_consent_code(found.consent_id) if found.found else None,
        "mark_present": bool(found.found or found.max_z >= found.threshold),
        "pilot_z": round(float(found.z), 2),
        "threshold_z": round(float(found.threshold), 2),
        "found_after_s": None if found.first_time_s is None else round(float(found.first_time_s), 2),
        "frames_read": found.frames_seen,
        "scale": None if found.scale is None else round(float(found.scale), 3),
        "mirrored": found.mirrored,
    }
    if found.found:
        verdict = open_registry().check(found.consent_id, None, utc_now())
        report.update(record_status=verdict.status, record_reason=verdict.reason, kind=verdict.kind,
                      subject=verdict.subject_name, attester=verdict.attester, licence=verdict.licence)
    report["c2pa"] = _read_c2pa(path, report["consent_id"])
    c2pa_ok = not report["c2pa"]["present"] or (report["c2pa"]["signature_valid"]
                                                and report["c2pa"]["agrees_with_mark"] is not False)
    if args.json:
        print(json.dumps(report, indent=2))
    elif found.found:
        print(f"consent ID {report['consent_id']} found after {report['found_after_s']} s "
              f"(pilot z {report['pilot_z']} ≥ {report['threshold_z']}; scale {report['scale']}, mirrored {report['mirrored']})")
        print(f"record: {report['record_status']} — {report['record_reason']}")
        if report.get("kind"):
            print(f"kind: {report['kind']}; subject: {report['subject']}; attester: {report['attester']}"
                  + (f"; licence: {report['licence']}" if report.get("licence") else ""))
    elif found.max_z >= found.threshold:
        print(f"a vcam-me consent mark is present (pilot z {found.max_z:.1f} ≥ {found.threshold:.1f}) but its ID "
              f"could not be read from {found.frames_seen} frames: the copy is too degraded; try a longer "
              f"stretch (--seconds) or a better copy")
    else:
        print(f"no vcam-me consent mark found in the first {found.frames_seen} frames "
              f"(best pilot z {found.max_z:.1f} < {found.threshold:.1f})")
    if not args.json:
        print(_describe_c2pa(report["c2pa"]))
    return 0 if found.found and report.get("record_status") == "valid" and c2pa_ok else 1


def _read_c2pa(path: Path, mark_code: str | None) -> dict:
    """The file's C2PA manifest (validated, this user's local CA as a trust anchor), and
    whether the consent ID in it is the one the mark carries (``None``: one of them is absent)."""
    from vcam_me.consent.provenance import load_trust_anchor, read_provenance

    info = read_provenance(path, load_trust_anchor(provenance_dir())).as_dict()
    code = info.get("consent_id")
    info["agrees_with_mark"] = None if not (code and mark_code) else code == mark_code
    return info


def _describe_c2pa(info: dict) -> str:
    if not info["present"]:
        return "C2PA: no Content Credentials in this file" + (f" ({info['error']})" if info.get("error") else "")
    if info["signature_valid"]:
        who = "signed on this machine" if info["signed_by_this_machine"] else \
            f"signer {info['signer']} not in a trust list known here"
        state = f"signature valid ({who})"
    else:
        state = "INVALID: " + "; ".join(f for f in info["failures"] if not f.startswith("signingCredential.untrusted"))
    agree = {True: "agrees with the mark", False: "DIFFERS from the mark's ID",
             None: "not compared (no mark read)"}[info["agrees_with_mark"]]
    source = (info.get("digital_source_type") or "?").rsplit("/", 1)[-1]
    return (f"C2PA: manifest present, {state}; consent ID {info['consent_id']} ({agree}); "
            f"kind {info['kind']}; source type {source}")


def _qt_preview_opener():
    """Where OpenCV has no HighGUI (the installed app's headless build), the preview window is
    drawn with Qt when PySide6 is there; ``None`` leaves PreviewSink to say what is missing."""
    import importlib.util

    if importlib.util.find_spec("PySide6") is None:
        return None

    def open_qt(window_name: str):
        from vcam_me.ui.qt_preview_sink import QtPreviewSink

        return QtPreviewSink.open(window_name)

    return open_qt


def cmd_run(args, cfg: AppConfig) -> int:
    from vcam_me.capture import open_source
    from vcam_me.output import PreviewSink, RecorderSink, RetryingVirtualCamera

    capture = cfg.capture
    if args.video:
        capture = dataclasses.replace(capture, source=args.video, pace="fast" if args.fast else "realtime", loop=args.loop)
    elif args.image:
        capture = dataclasses.replace(capture, source=args.image)
    elif args.camera is not None:
        capture = dataclasses.replace(capture, source="camera", camera_index=args.camera)
    fps = args.fps or cfg.output.fps
    size = args.size or (cfg.output.width, cfg.output.height)
    record = _check_new_output(Path(args.record), args.force) if args.record else None
    mode = micro_mode(cfg, args.micro)
    log_path = events_path(record, args.events_out, mode, args.force)
    signer = RecordingSigner(record) if record is not None else None
    limit_opencv_threads()
    sinks = []
    # Cheap, likely failures first (camera, file, driver), before any model is loaded.
    with open_source(capture) as source:
        try:
            if args.virtualcam or not (args.preview or args.record):
                # No driver at all fails here with what to install; a busy or vanished device
                # is retried while the stream (preview, recording) goes on, and said on stderr.
                sinks.append(RetryingVirtualCamera.open(
                    size, fps, cfg.output, on_status=lambda _ok, message: print(f"vcam-me: {message}", file=sys.stderr)))
            if args.preview:
                sinks.append(PreviewSink.open("vcam-me preview", fallback=_qt_preview_opener()))
            if record is not None:
                # Live: the encoder gets one thread and never blocks the render loop.
                # A full disk stops the recording (said at once, what was written is kept) but
                # not the stream: the virtual camera and preview go on.
                sinks.append(RecorderSink.open(record, size, fps, cfg.output, overwrite=args.force,
                                               preset="ultrafast", threads=1, block=False, finish=signer,
                                               on_cut_short=lambda message: print(f"vcam-me: warning: {message}",
                                                                                  file=sys.stderr)))
            avatar = resolve_avatar(args.avatar, cfg)
            consent = require_consent(avatar, "live_call")
            if signer is not None:
                signer.record = consent.verdict.record
            renderer = build_renderer(avatar, size, cfg, live=True)
            stamper = build_stamper(cfg, size, consent)
            expression = build_expression(cfg, offline=False, micro=mode, idle=build_idle(cfg))
            with live_controls(cfg, expression, hotkeys=not args.no_hotkeys), consent.guard("live_call") as guard:
                try:
                    return _stream(source, sinks, renderer, stamper, expression, fps, size, cfg, args.duration, record, guard)
                finally:
                    if log_path is not None:  # also when the run stops on an error: what was shown is logged
                        expression.write_events(log_path, force=args.force, mode=mode, fps=fps,
                                                video=None if record is None else str(record))
                        print(f"vcam-me: {len(expression.events)} micro-expressions logged in {log_path}", file=sys.stderr)
        finally:
            for s in sinks:
                s.close()
                _report_signing(s)


def _stream(source, sinks, renderer, stamper, expression, fps, size, cfg, duration, record, guard) -> int:
    from vcam_me.output import FanOutSink
    from vcam_me.pipeline import LivePipeline

    with live_tracker(cfg) as (tracker, connect), FanOutSink(sinks) as sink:
        described = ", ".join(type(s).__name__ for s in sinks)
        print(f"vcam-me: streaming {size[0]}x{size[1]} at {fps} fps to {described}; Ctrl+C stops", file=sys.stderr)
        guard.start(now_ms())
        pipeline = connect(LivePipeline(source, tracker, expression, renderer, stamper, sink, fps, guard=guard))
        try:
            with signals_end_stream(pipeline):
                stats = pipeline.run(duration_s=duration)
        except KeyboardInterrupt:  # a second signal, or one before the loop began
            stats = pipeline.stats
    summary = stats.summary(fps)
    print(f"vcam-me: {summary['output_frames']} frames in {summary['wall_s']} s "
          f"({summary['sustained_fps']} fps), latency p50 {summary['latency_ms_p50']} ms")
    if record is not None and not any(getattr(s, "stopped_early", False) for s in sinks):
        print(f"vcam-me: recording saved to {record}")
    return 0


# --------------------------------------------------------------------------------------
# the desktop app's live session: a stream that is started, steered and stopped from a
# tray menu instead of a terminal (vcam_me/ui/ holds the menu; this is what it drives)
# --------------------------------------------------------------------------------------
#: Micro-expression modes of a live session: none at all, only from hotkeys, or automatic.
MICRO_MODES = ("off", "hotkeys", "auto")
#: Tell the user this many days before their avatar's consent record expires.
CONSENT_WARNING_DAYS = 7


def avatar_choices() -> list[tuple[str, Path]]:
    """The avatars a user can switch between: the bundled sample, then their own (by name)."""
    from vcam_me.storage import is_temporary, remove_stale_temporaries

    root = _avatar_cache_dir()
    remove_stale_temporaries(root)  # what a killed import or set-up left more than an hour ago
    own = sorted(p for p in root.glob("*") if (p / "avatar.json").is_file() and not is_temporary(p)) if root.is_dir() else []
    return [("sample", BUNDLED_AVATAR)] + [(p.name, p) for p in own]


class MirroredRenderer:
    """The avatar flipped left to right (before the label, so the label stays readable)."""

    def __init__(self, renderer) -> None:
        self.renderer = renderer

    def render(self, state):
        import numpy as np

        # a contiguous copy: the label and the mark are drawn in place by OpenCV
        return np.ascontiguousarray(self.renderer.render(state)[:, ::-1])


@dataclasses.dataclass
class AvatarParts:
    """What showing one avatar live takes: its renderer, the label and mark of its consent,
    and the started guard that keeps re-checking that consent."""

    name: str
    renderer: object
    stamper: object
    guard: object
    expires_at: object  # datetime of the consent record's expiry, or None

    def close(self) -> None:
        self.guard.close()
        close = getattr(self.renderer, "close", None)  # the appearance network's thread, if any
        if close is not None:
            close()


def build_avatar_parts(spec: str | Path | None, size: tuple[int, int], cfg: AppConfig) -> AvatarParts:
    """Load an avatar and check its consent exactly as ``vcam-me run`` does; slow (model
    set-up), so call it off the render thread. Raises a one-line VcamError when refused."""
    avatar = resolve_avatar(None if spec is None else str(spec), cfg)
    consent = require_consent(avatar, "live_call")
    renderer = build_renderer(avatar, size, cfg, live=True)
    stamper = build_stamper(cfg, size, consent)
    guard = consent.guard("live_call")
    guard.start(now_ms())
    record = consent.verdict.record
    return AvatarParts(Path(avatar.folder).name, renderer, stamper, guard, getattr(record, "expires_at", None))


class _HotkeyGate:
    """Passes hotkey presses to the expression stage only while hotkeys are wanted; a release
    always passes, so an expression held when they are switched off still ends."""

    def __init__(self, target) -> None:
        self.target = target
        self.enabled = True

    def trigger(self, *args, **kwargs):
        return self.target.trigger(*args, **kwargs) if self.enabled else None

    def hold(self, *args, **kwargs):
        return self.target.hold(*args, **kwargs) if self.enabled else None

    def release(self, *args, **kwargs):
        return self.target.release(*args, **kwargs)


class LiveSession:
    """A live stream on its own thread, steered while it runs: switch avatar, micro-expression
    mode and rate, pause to idle, mirror. Every call returns at once; the slow parts (opening
    the camera and outputs, loading models, checking consent) run on worker threads.

    ``listener`` hears what happens, from those threads: ``frame(frame, state, stats)`` for
    every output frame, ``status(name)`` with "starting", "streaming", "stopped" or "error"
    (and "output_lost" / "output_back" while the virtual camera is gone and retried),
    ``notice(title, text)`` for something the user must act on, ``error(text)`` (one line).
    ``sinks``: outputs to use as they are (tests; never closed here); default: the virtual
    camera (a :class:`~vcam_me.output.RetryingVirtualCamera`), opened here and closed when
    the session ends. ``open_source(capture_options)``
    opens the input (default :func:`vcam_me.capture.open_source`).
    """

    def __init__(self, cfg: AppConfig, listener, *, avatar: str | Path | None = None, fps: int | None = None,
                 sinks: list | None = None, micro: str = "off", micro_rate: float | None = None,
                 hotkeys: bool = True, microphone: bool = True, open_source=None) -> None:
        if micro not in MICRO_MODES:
            raise ValueError(f"micro mode {micro!r}: expected one of {MICRO_MODES}")
        self.cfg = cfg
        self.listener = listener
        self.avatar = avatar
        self.fps = int(fps or cfg.output.fps)
        self.size = (cfg.output.width, cfg.output.height)
        self.micro = micro
        self.micro_rate = float(cfg.micro.rate_per_min if micro_rate is None else micro_rate)
        self.mirror = False
        self.paused = False
        self._given_sinks = sinks
        self._hotkeys_wanted = hotkeys
        self._microphone = microphone
        self._open_source = open_source
        self.pipeline = None
        self.expression = None
        self._parts: AvatarParts | None = None
        self._gate: _HotkeyGate | None = None
        self._thread = None
        self._stopping = False
        self._lock = threading.Lock()
        #: Set once the other avatars of the menu have been prepared (see _prepare_other_avatars).
        self.avatars_prepared = threading.Event()

    # -- life cycle ----------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="vcam-session", daemon=True)
        self._thread.start()

    def stop(self, wait_s: float | None = 5.0) -> None:
        self._stopping = True
        if self.pipeline is not None:
            self.pipeline.stop()
        if wait_s is not None and self._thread is not None:
            self._thread.join(wait_s)

    def _run(self) -> None:
        from vcam_me.capture import open_source
        from vcam_me.output import FanOutSink, RetryingVirtualCamera
        from vcam_me.pipeline import LivePipeline

        self.listener.status("starting")
        opened: list = []
        try:
            limit_opencv_threads()
            with contextlib.ExitStack() as stack:
                # The desktop app starts even while the camera is busy or unplugged: the avatar
                # idles and the camera is picked up when it comes (see _frame_hook's notices).
                opener = self._open_source or functools.partial(open_source, wait_for_camera=True)
                source = stack.enter_context(opener(self.cfg.capture))
                if self._given_sinks is None:
                    # A busy or vanished device is retried while the stream goes on; only a
                    # missing driver (a set-up problem) stops the session here.
                    opened.append(RetryingVirtualCamera.open(self.size, self.fps, self.cfg.output,
                                                             on_status=self._virtual_camera_changed))
                sinks = list(self._given_sinks or []) + opened
                parts = self._parts = build_avatar_parts(self.avatar, self.size, self.cfg)
                self._warn_if_expiring(parts)
                cfg = self.cfg if self._microphone else dataclasses.replace(
                    self.cfg, idle=dataclasses.replace(self.cfg.idle, voice_jaw=False))
                expression = self.expression = build_expression(cfg, offline=False, micro="none", idle=build_idle(cfg))
                stack.enter_context(live_controls(cfg, expression, hotkeys=False))
                self._gate = _HotkeyGate(expression)
                self._start_hotkeys(stack, expression)
                self._apply_micro()
                if self.paused and expression.idle is not None:
                    expression.idle.pause()
                tracker, connect = stack.enter_context(live_tracker(cfg))
                renderer = MirroredRenderer(parts.renderer) if self.mirror else parts.renderer
                pipeline = connect(LivePipeline(source, tracker, expression, renderer, parts.stamper,
                                                FanOutSink(sinks), self.fps, guard=parts.guard,
                                                on_frame=self._frame_hook(source)))
                with self._lock:
                    self.pipeline = pipeline
                if self._stopping:
                    return
                self.listener.status("streaming")
                threading.Thread(target=self._prepare_other_avatars, args=(parts.name,), name="vcam-prepare",
                                 daemon=True).start()
                pipeline.run()
        except VcamError as err:
            self._fail(str(err))
        except Exception as err:  # a thread boundary: the user gets one line, the log the rest
            log.exception("live session failed")
            self._fail(f"internal error: {type(err).__name__}: {err}")
        else:
            self.listener.status("stopped")
        finally:
            for sink in opened:
                sink.close()
            with self._lock:
                parts, self._parts = self._parts, None
            if parts is not None:
                parts.close()

    def _virtual_camera_changed(self, available: bool, message: str) -> None:
        """The virtual camera went away or came back (render or retry thread): tell the user
        once, and put the tray in (or out of) its "virtual camera lost" state."""
        if available:
            self.listener.notice("Virtual camera back", "The call gets the avatar again.")
            self.listener.status("output_back")
        else:
            self.listener.notice("Virtual camera lost", f"{message[:1].upper()}{message[1:]}. The call sees no "
                                 "picture meanwhile; the preview and any recording go on.")
            self.listener.status("output_lost")

    def _prepare_other_avatars(self, current: str) -> None:
        """Precompute the warp of every other avatar in the menu (into the user's cache), at a
        low priority, so that switching to one later takes a fraction of a second."""
        from vcam_me import avatar as avatar_stage

        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)  # this thread only (Linux)
        except (AttributeError, OSError):
            pass
        try:
            for name, folder in avatar_choices():
                if self._stopping:
                    return
                if name == current:
                    continue
                try:
                    warp_renderer(avatar_stage.Avatar.load(folder), self.size, self.cfg, cache_dir=user_cache_dir() / "warp")
                except Exception as err:  # an avatar that cannot be prepared now says why when chosen
                    log.info("could not prepare avatar %s: %s", name, err)
        finally:
            self.avatars_prepared.set()

    def _fail(self, text: str) -> None:
        if "virtual camera" in text.lower() or "v4l2loopback" in text.lower():
            self.listener.notice("Virtual camera missing", text)
        self.listener.error(text)
        self.listener.status("error")

    #: What the user is told when the camera's condition changes: (attribute, value) →
    #: (title, text). Checked on every output frame, announced once per change.
    CAMERA_NOTICES = {
        ("connected", False): ("Camera lost", "The camera stopped delivering frames; the avatar idles while "
                               "vcam-me tries to reopen it."),
        ("connected", True): ("Camera back", "The camera is delivering frames again."),
        ("frozen", True): ("Camera frozen", "The camera keeps sending the same picture; the avatar idles until "
                           "it moves again (vcam-me reopens the camera once after a few seconds)."),
        ("frozen", False): ("Camera moving again", "The camera's picture moves again."),
        ("dark", True): ("Camera shows black", "The camera's picture is black: is the lens covered or a privacy "
                         "shutter closed? The avatar idles meanwhile."),
        ("dark", False): ("Camera picture back", "The camera shows a picture again."),
    }

    def _frame_hook(self, source):
        seen = {"connected": True, "frozen": False, "dark": False}
        waiting = getattr(source, "waiting_reason", "")
        if waiting:  # started without its camera: say why once, and "Camera back" when it comes
            seen["connected"] = False
            self.listener.notice("Waiting for the camera", f"{waiting}. The avatar idles until the camera "
                                 "can be opened; close the other app using it, or plug it in.")

        def on_frame(frame, state) -> None:
            for name, before in seen.items():
                now = bool(getattr(source, name, before))
                if now != before:
                    seen[name] = now
                    self.listener.notice(*self.CAMERA_NOTICES[name, now])
            self.listener.frame(frame, state, self.pipeline.stats if self.pipeline is not None else None)

        return on_frame

    def _warn_if_expiring(self, parts: AvatarParts) -> None:
        from vcam_me.consent.records import utc_now

        if parts.expires_at is None:
            return
        days = (parts.expires_at - utc_now()).total_seconds() / 86400.0
        if days <= CONSENT_WARNING_DAYS:
            self.listener.notice("Consent expiring", f"The consent record of avatar '{parts.name}' expires in "
                                 f"{max(days, 0):.0f} days; the person shown must record it again to keep using it.")

    def _start_hotkeys(self, stack, expression) -> None:
        if not (self._hotkeys_wanted and self.cfg.hotkeys.enabled and expression.engine is not None):
            return
        from vcam_me.ui.hotkeys import HotkeyListener, HotkeysUnavailableError

        idle = expression.idle
        try:
            stack.enter_context(HotkeyListener.start(self.cfg.hotkeys, self._gate, known_types=expression.engine.library.names,
                                                     on_pause=None if idle is None else self.toggle_pause))
        except HotkeysUnavailableError as err:
            log.warning("hotkeys off: %s", err)

    # -- steering (any thread) -------------------------------------------------------------
    def switch_avatar(self, spec: str | Path):
        """Build ``spec``'s renderer and consent off the render thread, then show it from the
        next frame on; the stream and its outputs stay open. Returns a Future (of the avatar's
        name); a refusal (no consent, unreadable avatar) goes to ``listener.error`` and the
        current avatar stays."""
        import concurrent.futures

        future: concurrent.futures.Future = concurrent.futures.Future()

        def work() -> None:
            try:
                parts = build_avatar_parts(spec, self.size, self.cfg)
            except VcamError as err:
                self.listener.error(str(err))
                future.set_exception(err)
                return
            except Exception as err:  # thread boundary, reported in one line
                log.exception("avatar switch failed")
                self.listener.error(f"internal error: {type(err).__name__}: {err}")
                future.set_exception(err)
                return
            with self._lock:
                pipeline, old = self.pipeline, self._parts
                if pipeline is None or not self.running:
                    parts.close()
                    future.set_exception(RuntimeError("the stream is not running"))
                    return
                self.avatar, self._parts = spec, parts
                pipeline.set_renderer(MirroredRenderer(parts.renderer) if self.mirror else parts.renderer,
                                      parts.stamper, parts.guard)
            self._warn_if_expiring(parts)
            if old is not None:
                old.close()
            future.set_result(parts.name)

        threading.Thread(target=work, name="vcam-avatar-switch", daemon=True).start()
        return future

    def set_mirror(self, on: bool) -> None:
        self.mirror = bool(on)
        with self._lock:
            if self.pipeline is not None and self._parts is not None:
                base = self._parts.renderer
                self.pipeline.set_renderer(MirroredRenderer(base) if self.mirror else base)

    def set_micro_mode(self, mode: str) -> None:
        if mode not in MICRO_MODES:
            raise ValueError(f"micro mode {mode!r}: expected one of {MICRO_MODES}")
        self.micro = mode
        self._apply_micro()

    def set_micro_rate(self, per_min: float) -> None:
        self.micro_rate = float(per_min)
        self._apply_micro()

    def _apply_micro(self) -> None:
        from vcam_me.expression.micro import AutoTrigger

        expression = self.expression
        if expression is None or expression.engine is None:
            return
        if self._gate is not None:
            self._gate.enabled = self.micro != "off"
        engine = expression.engine
        # A new list, assigned at once: the render thread iterates either the old or the new one.
        auto = self.micro == "auto"
        expression.triggers = [AutoTrigger(engine, self.micro_rate, self.cfg.micro.persona, seed=engine.seed + 1)] if auto else []

    def set_paused(self, paused: bool) -> None:
        """Pause tracking: the avatar idles (breathes, blinks, glances) until resumed."""
        self.paused = bool(paused)
        idle = self.expression.idle if self.expression is not None else None
        if idle is not None:
            idle.pause() if self.paused else idle.resume()

    def toggle_pause(self) -> bool:
        self.set_paused(not self.paused)
        return self.paused


def cmd_doctor(args, cfg: AppConfig) -> int:
    """What is missing on this machine, and how to fix it. Exit 1 if something essential is."""
    rows: list[tuple[str, bool, str]] = []
    essential_ok = True

    def check(name: str, ok: bool, detail: str, essential: bool = False) -> None:
        nonlocal essential_ok
        rows.append((name, ok, detail))
        if essential and not ok:
            essential_ok = False

    check("python", sys.version_info >= (3, 11), f"{platform.python_version()} on {platform.system()} {platform.machine()}", True)
    try:
        from vcam_me.models import verified_model_path

        check("face model", True, str(verified_model_path("face_landmarker")), True)
    except VcamError as err:
        check("face model", False, str(err), True)
    try:
        import mediapipe

        check("mediapipe", True, mediapipe.__version__, True)
    except Exception as err:  # noqa: BLE001 - any import failure is the finding
        check("mediapipe", False, f"cannot import ({err}); reinstall: pip install mediapipe==1.2.2", True)
    try:
        import av

        ok = "libx264" in av.codecs_available
        check("video encoder", ok, f"PyAV {av.__version__}, H.264 {'available' if ok else 'missing: pip install --force-reinstall av'}", True)
    except Exception as err:  # noqa: BLE001
        check("video encoder", False, f"PyAV cannot import ({err}): pip install av", True)
    try:
        from vcam_me.capture import find_cameras

        cams = find_cameras()
        check("camera", bool(cams), f"found at index {', '.join(map(str, cams))}" if cams else
              "no camera found: plug one in, allow camera access for this terminal/app (macOS: System Settings → "
              "Privacy & Security → Camera), or drive with --video FILE")
    except Exception as err:  # noqa: BLE001
        check("camera", False, f"probe failed: {err}")
    try:
        from vcam_me.output import virtual_camera_status

        ok, message = virtual_camera_status(cfg.output)
        check("virtual camera", ok, message)
    except Exception as err:  # noqa: BLE001
        check("virtual camera", False, f"probe failed: {err}")
    try:
        import onnxruntime as ort

        providers = ort.get_available_providers()
        gpu = [p for p in providers if p not in ("CPUExecutionProvider", "AzureExecutionProvider")]
        # The installed (frozen) app cannot pip install: its GPU variant is a separate build.
        gpu_way = ("install the GPU build of vcam-me (vcam-me-gpu) and CUDA" if getattr(sys, "frozen", False)
                   else "pip uninstall -y onnxruntime, then pip install 'onnxruntime-gpu[cuda,cudnn]>=1.21'")
        check("GPU", bool(gpu), f"onnxruntime providers: {', '.join(providers)}" + ("" if gpu else
              f" (CPU only: fine; for NVIDIA GPUs: {gpu_way})"))
    except ImportError:
        check("GPU", False, "not used: onnxruntime is not installed (CPU path needs none; for NVIDIA GPUs: pip install 'onnxruntime-gpu[cuda,cudnn]>=1.21')")
    try:
        # Open the shipped network the way the renderer does and read back what really runs it:
        # onnxruntime-gpu falls back to the CPU silently when CUDA cannot start.
        from vcam_me.avatar.appearance import AppearanceFiles, AppearanceNet

        net = AppearanceNet.load(AppearanceFiles(verified_model_path("transfer_appearance"),
                                                 verified_model_path("transfer_appearance_int8")), device="auto")
        check("appearance network", True, f"runs on {net.provider}")
        import onnxruntime as ort

        if "CUDAExecutionProvider" in ort.get_available_providers():
            from vcam_me.avatar.appearance import cuda_report

            check("CUDA", net.provider == "CUDAExecutionProvider", cuda_report(ort))
    except VcamError as err:
        check("appearance network", False, f"{err} (personalised avatars need it; photo avatars use the mesh warp)")
    try:
        from importlib.metadata import version

        import c2pa

        check("C2PA signing", True, f"c2pa-python {version('c2pa-python')} (c2pa-rs {c2pa.sdk_version()}): "
              f"recordings get Content Credentials")
    except Exception as err:  # noqa: BLE001 - any import failure is the finding
        check("C2PA signing", False, f"unavailable ({err}): recordings are written unsigned; pip install c2pa-python==0.38.1")
    display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or platform.system() in ("Windows", "Darwin")
    check("preview window", display, "a display is available" if display else "no display (DISPLAY unset): --preview will not work here; use --record")
    check("hotkeys", display, "global hotkeys can listen here" if display else
          "no display: run works without global hotkeys (they need a desktop session)")
    try:
        from vcam_me.capture.microphone import find_input

        device = cfg.idle.microphone.strip()
        name = find_input(int(device) if device.isdigit() else (device or None))
        check("microphone", True, name)
    except VcamError as err:
        check("microphone", False, f"{err} (live consent recording and the idle jaw use it)")
    cfg_path = user_config_path()
    check("config", True, f"{cfg_path} ({'present' if cfg_path.is_file() else 'not created; defaults in use'})")
    check("data folder", True, str(user_data_dir()))
    width = max(len(r[0]) for r in rows)
    for name, ok, detail in rows:
        print(f"{'ok ' if ok else '-- '} {name:<{width}}  {detail}")
    return 0 if essential_ok else 1


def cmd_bench(args, cfg: AppConfig) -> int:
    from vcam_me.bench import run_bench, write_results

    if args.soak:
        from vcam_me.soak import run_soak

        def progress(row: dict) -> None:
            print(f"vcam-me: {row['t_s']:7.1f} s  rss {row['rss_mb']} MB  threads {row['os_threads']}  "
                  f"files {row['open_files']}  {row['fps']} fps  latency p50 {row['latency_ms_p50']} ms", file=sys.stderr)

        result = run_soak(args, cfg, progress=progress)
        write_results(result, args.out)
        return 0 if all(result["verdict"]["targets"].values()) else 1
    write_results(run_bench(args, cfg), args.out)
    return 0


def _eval_basis(args):
    """The AU basis of ``--basis`` (a recalibrated copy to compare with the shipped one), or
    None for the shipped, hash-checked basis."""
    path = getattr(args, "basis", None)
    if not path:
        return None
    from vcam_me.avatar import AUBasis

    if not Path(path).is_file():
        raise ModelError(f"--basis {path}: no such file")
    return AUBasis.load(path)


def _basis_label(args) -> str:
    """What the results say was drawn with: the ``--basis`` file, or the shipped basis."""
    path = getattr(args, "basis", None)
    return str(Path(path).resolve()) if path else "shipped (models/au_basis.npz)"


def _eval_inputs(args, cfg: AppConfig, default_clips: tuple[str, ...]):
    """(clips, size, avatar, consent) of an eval command: ``--driving`` or the default real
    clips of ../shared (the bundled clip when it is absent), every clip opened once so a bad
    path fails before any work, and the avatar with its consent."""
    if args.driving:
        clips = [Path(p) for p in args.driving]
    else:
        clips = [SHARED_DATA / "driving" / name for name in default_clips if (SHARED_DATA / "driving" / name).is_file()]
        if not clips:
            clips = [BUNDLED_DRIVING]
    for clip in clips:
        _open_driving(clip).close()
    avatar = resolve_avatar(args.avatar, cfg)
    return clips, tuple(args.size), avatar, require_consent(avatar, "evaluation")


def cmd_eval(args, cfg: AppConfig) -> int:
    """Closed-loop fidelity on real clips: render, re-track, compare (metrics.md)."""
    import datetime

    from vcam_me.bench import machine_info, write_results

    if getattr(args, "basis", None) and getattr(args, "what", "fidelity") in ("renderers", "identity"):
        raise ConfigError(f"--basis applies to eval fidelity and eval micro, not eval {args.what}")
    if getattr(args, "what", "fidelity") == "micro":
        return cmd_eval_micro(args, cfg)
    if getattr(args, "what", "fidelity") == "renderers":
        return cmd_eval_renderers(args, cfg)
    if getattr(args, "what", "fidelity") == "identity":
        return cmd_eval_identity(args, cfg)
    from vcam_me.evaluation.closed_loop import Stages, run_clips

    clips, size, avatar, consent = _eval_inputs(args, cfg, EVAL_CLIPS)
    basis = _eval_basis(args)

    def make_stages(clip: Path) -> Stages:
        return Stages(
            source=_open_driving(clip),
            driver_tracker=build_tracker(cfg, "video"),
            output_tracker=build_tracker(cfg, "video"),
            make_expression=lambda observations: build_expression(cfg, offline=True, observations=observations),
            renderer=build_renderer(avatar, size, cfg, basis=basis),
            stamper=build_stamper(cfg, size, consent),
        )

    result = run_clips(clips, make_stages, fps=60)
    result.update(
        command="vcam-me " + " ".join(sys.argv[1:]),
        date=datetime.datetime.now().isoformat(timespec="seconds"),
        machine=machine_info(),
        avatar=str(getattr(avatar, "folder", args.avatar)),
        basis=_basis_label(args),
        size=list(size),
    )
    write_results(result, args.out)
    return 0 if result.get("all_targets_met") else 1


#: Clips of the three-renderer evaluation (self-reenactment needs ≥ ~100 frames to split).
RENDERER_EVAL_CLIPS = (
    "liveportrait_d5.mp4", "liveportrait_d6.mp4", "liveportrait_d7.mp4", "liveportrait_d8.mp4",
    "liveportrait_d14.mp4", "liveportrait_d18.mp4", "liveportrait_d19.mp4", "liveportrait_src_s18.mp4",
    "liveportrait_src_s32.mp4", "pyfeat_WolfgangLanger_Pexels.mp4",
)
#: Clips whose frames may appear in the committed picture sheet (../shared/data/MANIFEST.md).
SHEET_CLIPS = ("pyfeat_WolfgangLanger_Pexels.mp4",)
#: The renderers the picture sheet shows, after the reference and the real frame.
SHEET_RENDERERS = ("warp_only", "generic", "personalised")


def _track_clip_for_renderers(clip: Path, cfg: AppConfig, first_held_back: int, keep: set[int], describe=None):
    """Track every frame of ``clip``; keep the aligned crops of the held-back frames and the
    full frames at the indices in ``keep``; with ``describe(image, landmarks)``, also the face
    descriptors of the real held-back frames the renders are described at (every
    ``IDENTITY_EVERY``-th). Returns (observations, HeldBack, kept frames, real descriptors)."""
    from vcam_me.avatar import mesh
    from vcam_me.evaluation.renderers import IDENTITY_EVERY, HeldBack, aligned_crop
    from vcam_me.types import Frame

    source = _open_driving(clip)
    tracker = build_tracker(cfg, "video")
    held, kept, observations, described = HeldBack(), {}, [], {}
    try:
        for frame, pts in source.iter_timed():
            obs = tracker.track(Frame(frame.image, int(pts) + 1, frame.index))
            observations.append(obs)
            k = len(observations) - 1
            if k in keep:
                kept[k] = frame.image
            if k >= first_held_back and obs.has_face:
                got = aligned_crop(frame.image, mesh.landmarks_to_pixels(obs.landmarks, obs.image_size))
                if got is not None:
                    held.crops[k], held.landmarks[k] = got
                if describe is not None and (k - first_held_back) % IDENTITY_EVERY == 0:
                    described[k] = describe(frame.image, obs.landmarks)
    finally:
        tracker.close()
        source.close()
    return observations, held, kept, described


def _avatar_from_frame(image, cfg: AppConfig):
    """An unsaved avatar made from one video frame (the self-reenactment reference)."""
    from vcam_me import avatar as avatar_stage

    with build_tracker(cfg, "image", num_faces=2) as still:
        faces = still.detect_image(image)
    return avatar_stage.create_avatar(image, faces, None, min_face_px=64, source_name="evaluation reference frame")


def _neural(avatar, size, cfg: AppConfig, files, refiner=None, owner: bool | None = None):
    from vcam_me.avatar.appearance import AppearanceNet, NeuralAvatarRenderer

    warp = warp_renderer(avatar, size, cfg, refiner=refiner, owner=owner)
    warp.draw_details = False
    net = AppearanceNet.load(files, device=cfg.avatar.appearance_device, threads=cfg.avatar.appearance_threads)
    return NeuralAvatarRenderer(warp, net, asynchronous=False)


def cmd_eval_renderers(args, cfg: AppConfig) -> int:
    """Warp only vs generic prior vs personalised, self-reenacted on real clips (issue 5)."""
    import datetime
    import tempfile

    from vcam_me.avatar import mesh as mesh_mod
    from vcam_me.avatar.appearance import AppearanceFiles
    from vcam_me.bench import machine_info, write_results
    from vcam_me.errors import SetupError
    from vcam_me.evaluation.renderers import aligned_crop, posed_mesh, score_renderer
    from vcam_me.models import verified_model_path

    try:
        from vcam_me.training.personalise import BASIS_WARPED, personalise_clip_part
    except ImportError as err:
        raise SetupError(f"the personalised renderer needs PyTorch ({err.name} is missing): {_how_to_get_torch()}") from None
    if args.driving:
        clips = [Path(p) for p in args.driving]
    else:
        clips = [SHARED_DATA / "driving" / n for n in RENDERER_EVAL_CLIPS if (SHARED_DATA / "driving" / n).is_file()] or [BUNDLED_DRIVING]
    for clip in clips:
        _open_driving(clip).close()
    size = tuple(args.size)
    generic = AppearanceFiles(verified_model_path("transfer_appearance"), verified_model_path("transfer_appearance_int8"))
    describer = build_face_describer()
    work = Path(tempfile.mkdtemp(prefix="vcam-eval-renderers-"))
    rows: dict = {}
    sheet_rows: list = []
    for clip in clips:
        print(f"{clip.name}: personalising on the first {args.split:.0%} ({args.steps} steps)", file=sys.stderr)
        bar = Progress("  fine-tuning", args.steps)
        part = personalise_clip_part(clip, work / clip.stem, prior=verified_model_path("transfer_prior"),
                                     split=args.split, steps=args.steps, threads=2, progress=lambda _s, d, _t: bar(d))
        bar.done()
        cut = part["first_held_back_frame"]
        # a few held-back frames of a clip that may be shown go into the picture sheet
        show = {cut + 12, cut + 40, cut + 80} if clip.name in SHEET_CLIPS else set()
        observations, held, kept, real = _track_clip_for_renderers(clip, cfg, cut, show | {part["reference_frame"]},
                                                                   describe=describer.describe)
        avatar = _avatar_from_frame(kept[part["reference_frame"]], cfg)
        ref_obs = observations[part["reference_frame"]]
        ref_px = mesh_mod.landmarks_to_pixels(ref_obs.landmarks, ref_obs.image_size)
        references = {"avatar": describer.describe(kept[part["reference_frame"]], ref_obs.landmarks)}
        # The avatar is a photo of the clip's person: warp only and generic draw it as the app
        # draws a photo avatar (for anyone to drive), the personalised one as it draws an avatar
        # that vcam-me setup made from its owner's video (for its owner: [avatar] driver);
        # "warp_for_owner" is the warp drawn that way too, to tell that part of the gain apart.
        renderers = {
            "warp_only": warp_renderer(avatar, size, cfg),
            # with [avatar] geometry = "network", each network renderer with its own geometry
            # head (the generic one, the fine-tuned one); the warp keeps the basis alone
            "generic": _neural(avatar, size, cfg, generic, geometry_refiner(avatar, cfg)),
            "personalised": _neural(avatar, size, cfg, AppearanceFiles(part["fp32"], part["int8"]),
                                    geometry_refiner(avatar, cfg, own=part["geometry"]), owner=True),
            "warp_for_owner": warp_renderer(avatar, size, cfg, owner=True),
        }
        row = {"first_held_back_frame": cut, "reference_frame": part["reference_frame"],
               "held_back_face_l1_crops": part["held_back_face_l1"],
               # what the person's own held-back frames score against their reference frame:
               # the identity distance a perfect self-reenactment would have
               "real_frames": _identity_row(real.values(), references["avatar"])}
        print(f"  real frames   identity {row['real_frames'].get('identity_to_avatar_mean')}", file=sys.stderr)
        shots: dict = {k: {} for k in show}
        for name, renderer in renderers.items():
            expression = build_expression(cfg, offline=True, observations=observations[:cut])
            for obs in observations[:cut]:
                expression.update(obs)

            def grab(k, image, name=name, renderer=renderer):
                if k in shots:
                    got = aligned_crop(image, posed_mesh(renderer), 256)
                    shots[k][name] = None if got is None else got[0]

            with build_tracker(cfg, "video") as out_tracker:
                row[name] = score_renderer(observations, cut, held, renderer, expression, out_tracker,
                                           describe=describer.describe, references=references, on_frame=grab)
            r = row[name]
            print(f"  {name:<13} face PSNR {r.get('face_psnr')} SSIM {r.get('face_ssim')}  mouth {r.get('mouth_psnr')}/"
                  f"{r.get('mouth_ssim')}  eyes {r.get('eyes_psnr')}/{r.get('eyes_ssim')}  AED ratio {r.get('aed_ratio')}  "
                  f"APD ratio {r.get('apd_ratio')}  identity {r.get('identity_to_avatar_mean')}", file=sys.stderr)
        rows[clip.name] = row
        for k in sorted(shots):
            if k in kept and observations[k].has_face:
                real_px = mesh_mod.landmarks_to_pixels(observations[k].landmarks, observations[k].image_size)
                sheet_rows.append([aligned_crop(kept[part["reference_frame"]], ref_px, 256)[0],
                                   aligned_crop(kept[k], real_px, 256)[0]] +
                                  [shots[k].get(n) for n in SHEET_RENDERERS])
    result = {"clips": rows, "summary": _renderer_summary(rows), "split": args.split, "steps": args.steps,
              "personalised_on": "true and basis-drawn meshes" if BASIS_WARPED else "true meshes",
              "command": "vcam-me " + " ".join(sys.argv[1:]),
              "date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine_info(), "size": list(size)}
    write_results(result, args.out)
    if args.sheet and sheet_rows:
        _write_sheet(Path(args.sheet), sheet_rows, ["reference", "real frame", "warp only", "generic", "personalised"])
        print(f"vcam-me: picture sheet written to {args.sheet}", file=sys.stderr)
    return 0


#: Portraits (../shared/data/avatars) and clips of other people for the cross-identity check.
IDENTITY_EVAL_PORTRAITS = ("mediapipe_sergey.png", "mpsamples_business-person.png", "pyfeat_single_face.jpg",
                           "liveportrait_s12.jpg", "tpsmm_source.png", "sadtalker_happy.png")
IDENTITY_EVAL_CLIPS = ("liveportrait_d6.mp4", "liveportrait_d8.mp4", "liveportrait_d19.mp4")


def cmd_eval_identity(args, cfg: AppConfig) -> int:
    """Cross-identity: avatars driven by other people keep the avatar's identity (issue 5).

    Each avatar (the bundled sample and portraits of ../shared) is driven by each clip's first
    ``--frames`` frames through the warp-only and the network renderer; dlib's descriptor of the
    rendered face is compared with the avatar's and with the driver's (the mean over the
    clip's frames). Renders stay in memory; nothing is written but the results.
    """
    import dataclasses
    import datetime

    import numpy as np

    from vcam_me import avatar as avatar_stage
    from vcam_me.bench import machine_info, write_results
    from vcam_me.evaluation.renderers import HeldBack, score_renderer
    from vcam_me.types import Frame

    clips = [Path(p) for p in args.driving] if args.driving else [
        SHARED_DATA / "driving" / n for n in IDENTITY_EVAL_CLIPS if (SHARED_DATA / "driving" / n).is_file()] or [BUNDLED_DRIVING]
    portraits = [SHARED_DATA / "avatars" / n for n in IDENTITY_EVAL_PORTRAITS if (SHARED_DATA / "avatars" / n).is_file()]
    size = tuple(args.size)
    describer = build_face_describer()
    net_cfg = dataclasses.replace(cfg, avatar=dataclasses.replace(cfg.avatar, appearance="network"))
    drivers = {}
    for clip in clips:
        source = _open_driving(clip)
        descriptors, observations = [], []
        with build_tracker(cfg, "video") as tracker:
            for frame, pts in source.iter_timed():
                if len(observations) >= args.frames:
                    break
                obs = tracker.track(Frame(frame.image, int(pts) + 1, frame.index))
                observations.append(obs)
                if obs.has_face and len(observations) % 10 == 1:
                    descriptors.append(describer.describe(frame.image, obs.landmarks))
        source.close()
        if not descriptors:
            raise TrackingError(f"{clip.name}: no face in its first {args.frames} frames")
        drivers[clip] = (observations, np.mean(descriptors, axis=0))
    if args.avatar:  # just this one
        avatars = [(Path(args.avatar).name, resolve_avatar(args.avatar, cfg))]
    else:
        avatars = [("sample", avatar_stage.Avatar.load(BUNDLED_AVATAR))]
        avatars += [(p.name, _avatar_from_frame(avatar_stage.read_photo(p), cfg)) for p in portraits]
    rows: dict = {}
    for name, avatar in avatars:
        with build_tracker(cfg, "image") as still:
            face = still.track_still(Frame(avatar.image, 0, 0))
        reference = describer.describe(avatar.image, face.landmarks)
        rows[name] = {}
        for clip, (observations, driver) in drivers.items():
            rows[name][clip.name] = {}
            for kind in ("warp_only", "network"):
                renderer = warp_renderer(avatar, size, cfg) if kind == "warp_only" else build_renderer(avatar, size, net_cfg)
                expression = build_expression(cfg, offline=True, observations=observations)
                with build_tracker(cfg, "video") as out_tracker:
                    r = score_renderer(observations, 0, HeldBack(), renderer, expression, out_tracker,
                                       describe=describer.describe, references={"avatar": reference, "driver": driver})
                rows[name][clip.name][kind] = {
                    "to_avatar": r.get("identity_to_avatar_mean"), "to_driver": r.get("identity_to_driver_mean"),
                    "keeps_identity": (r.get("identity_to_avatar_mean") is not None and r.get("identity_to_driver_mean") is not None
                                       and r["identity_to_avatar_mean"] < r["identity_to_driver_mean"])}
            net = rows[name][clip.name]["network"]
            print(f"{name:<32} driven by {clip.name:<34} to avatar {net['to_avatar']}  to driver {net['to_driver']}  "
                  f"{'keeps identity' if net['keeps_identity'] else 'LOSES IDENTITY'}", file=sys.stderr)
    every = all(c[k]["keeps_identity"] for a in rows.values() for c in a.values() for k in c)
    result = {"avatars": rows, "all_keep_identity": every, "frames_per_clip": args.frames,
              "command": "vcam-me " + " ".join(sys.argv[1:]),
              "date": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine_info(), "size": list(size)}
    write_results(result, args.out)
    return 0 if every else 1


def _identity_row(descriptors, reference) -> dict:
    """Mean and largest descriptor distance of ``descriptors`` to ``reference``."""
    import numpy as np

    from vcam_me.evaluation.renderers import identity_fields

    d = [float(np.linalg.norm(np.asarray(x) - reference)) for x in descriptors]
    return identity_fields(d, "avatar") | {"frames": len(d)}


def _renderer_summary(rows: dict) -> dict:
    import numpy as np

    keys = ("face_psnr", "face_ssim", "mouth_psnr", "mouth_ssim", "eyes_psnr", "eyes_ssim", "aed_ratio", "apd_ratio",
            "min_pearson_r", "identity_to_avatar_mean", "identity_to_avatar_max")
    out = {}
    for name in (*SHEET_RENDERERS, "warp_for_owner", "real_frames"):
        out[name] = {}
        for key in keys:
            values = [r[name].get(key) for r in rows.values() if r.get(name, {}).get(key) is not None]
            if values:
                out[name][key + ("" if key.endswith("_max") else "_mean")] = round(
                    float(np.max(values) if key.endswith("_max") else np.mean(values)), 4)
    return out


def _write_sheet(path: Path, rows: list, titles: list[str]) -> None:
    """A grid of 256² crops with column titles (JPEG/PNG by the file's suffix)."""
    import cv2
    import numpy as np

    tile, head = 256, 28
    grid = np.full((head + tile * len(rows), tile * len(titles), 3), 255, np.uint8)
    for j, title in enumerate(titles):
        cv2.putText(grid, title, (j * tile + 8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            if img is not None:
                grid[head + i * tile: head + (i + 1) * tile, j * tile:(j + 1) * tile] = img
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90]):
        raise OutputError(f"cannot write the picture sheet {path}")


def track_frames_one_by_one(source, cfg: AppConfig) -> list:
    """Every frame of an opened video tracked on its own (IMAGE mode, no temporal smoothing),
    stamped with its time in the file: how the micro-expression proof re-tracks renders."""
    from vcam_me.pipeline import on_timeline

    with build_tracker(cfg, "image") as tracker:
        return [tracker.track_still(frame) for frame in on_timeline(source.iter_timed())]


def still_driver(observations: list, seconds: float, fps: float = 30.0) -> list:
    """A still, neutral driver: the clip's most neutral tracked frame (least total AU),
    repeated at ``fps`` for ``seconds``."""
    import numpy as np

    from vcam_me.expression import blendshapes_to_au
    from vcam_me.types import FaceObservation

    faces = [o for o in observations if o.has_face and o.blendshapes is not None]
    if not faces:
        raise TrackingError("no face in the clip chosen for the still driver")
    rest = min(faces, key=lambda o: float(np.sum(blendshapes_to_au(o.blendshapes[None])[0])))
    return [FaceObservation(round(i * 1000.0 / fps), rest.image_size, rest.landmarks, rest.blendshapes, rest.transform)
            for i in range(int(seconds * fps))]


def micro_renderer(cfg: AppConfig, avatar, consent, size: tuple[int, int], driver: list, fps: int = 60, *,
                   basis=None):
    """``render(script)`` for :mod:`vcam_me.evaluation.micro_loop`: the avatar driven by
    ``driver`` exactly as ``vcam-me render`` draws it, with ``script`` (JSON entries, or None
    for nothing injected) played by a fresh engine, every output frame re-tracked."""
    from vcam_me.evaluation.closed_loop import RetrackSink
    from vcam_me.expression.composer import ExpressionComposer
    from vcam_me.expression.micro import (
        MicroEngine,
        MicroLibrary,
        ScriptedTrigger,
        parse_script,
    )
    from vcam_me.pipeline import render_offline

    library = MicroLibrary.load(*micro_library_paths(cfg))
    renderer = build_renderer(avatar, size, cfg, basis=basis)
    stamper = build_stamper(cfg, size, consent)
    seed = 0 if cfg.micro.seed == "random" else int(cfg.micro.seed)

    def render(script):
        mapper = offline_mapper(cfg, driver)
        engine = MicroEngine(library, cfg.micro, seed=seed)
        triggers = [ScriptedTrigger(engine, parse_script(script, library))] if script else []
        expression = ExpressionComposer(mapper, engine, triggers)
        with build_tracker(cfg, "image") as tracker:  # frame by frame: no smoothing lag in the measurement
            sink = RetrackSink(tracker)
            render_offline(driver, expression, renderer, stamper, sink, fps)
        expression.finish()
        origin = expression.origin_ms or 0.0
        return sink.observations, [e.to_json(origin) for e in expression.events]

    return render, library


def cmd_eval_micro(args, cfg: AppConfig) -> int:
    """Inject every micro-expression type into real clips and a still neutral driver,
    re-track the renders, spot the events and score them (metrics.md)."""
    import datetime

    from vcam_me.bench import machine_info, write_results
    from vcam_me.evaluation import micro_loop as L

    clips, size, avatar, consent = _eval_inputs(args, cfg, MICRO_EVAL_CLIPS)
    basis = _eval_basis(args)
    results, drivers, natural = [], {}, {}
    for clip in clips:
        with _open_driving(clip) as source:
            drivers[clip.name] = track_recording(source, cfg, label=f"tracking {clip.name}")
        with _open_driving(clip) as source:  # the natural rate is measured as the renders are: frame by frame
            natural[clip.name] = track_frames_one_by_one(source, cfg)
    still_seconds = float(args.still_seconds)
    if still_seconds > 0:
        drivers["still neutral face"] = still_driver(drivers[clips[0].name], still_seconds)
    types = None
    for k, (name, driver) in enumerate(drivers.items()):
        render, library = micro_renderer(cfg, avatar, consent, size, driver, basis=basis)
        types = types or [t for t in library.names if t not in L.NOT_SPOTTED_TYPES]
        duration = driver[-1].timestamp_ms if driver else 0
        script = L.plan_script(types, duration, seed=args.seed + k)
        print(f"vcam-me: {name}: {len(script)} events over {duration / 1000:.1f} s (control render, then injected)", file=sys.stderr)
        result = L.evaluate_driver(name, driver, render, script, natural=natural.get(name))
        s = result.score
        print(f"vcam-me: {name}: F1 {s.f1}  AU+side {s.au_side_accuracy}  apex error {s.apex_error_ms_median} ms  "
              f"false/min above natural {result.false_events_per_min:.2f}", file=sys.stderr)
        results.append(result)
    summary = L.pooled(results)
    sensitivity = None
    if args.peaks and "still neutral face" in drivers:
        # long enough for every type three times, 1.2 s apart (micro_loop.sensitivity)
        render, _ = micro_renderer(cfg, avatar, consent, size, still_driver(drivers[clips[0].name], 3 * 1.2 * len(types) + 2),
                                   basis=basis)
        table = L.sensitivity(render, types, args.peaks, seed=args.seed)
        sensitivity = {t: {"spotted_with_right_au_and_side": row, "needed_peak": L.needed_peak(row)} for t, row in table.items()}
    result = {
        "command": "vcam-me " + " ".join(sys.argv[1:]),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "avatar": str(getattr(avatar, "folder", args.avatar)),
        "basis": _basis_label(args),
        "size": list(size),
        "intensity": cfg.micro.intensity,
        "spotter": vars(L.DEFAULT_SPOTTER),
        "summary": summary,
        "drivers": [r.to_json() for r in results],
        "sensitivity_on_still_driver": sensitivity,
        "all_targets_met": all(summary["targets"].values()),
    }
    write_results(result, args.out)
    return 0 if result["all_targets_met"] else 1


def desktop_available() -> bool:
    """Whether ``vcam-me`` alone can open the tray app here: Qt (the ``[ui]`` extra) is
    installed and there is a display to show it on."""
    import importlib.util

    try:
        if importlib.util.find_spec("PySide6") is None:
            return False
    except (ImportError, ValueError):  # a broken or blocked install counts as none
        return False
    return platform.system() in ("Windows", "Darwin") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def cmd_default(args, cfg: AppConfig) -> int:
    """``vcam-me`` with no command: the tray app on a desktop, the usual help elsewhere."""
    if desktop_available():
        from vcam_me.ui.qt_app import run_desktop

        return run_desktop(cfg, notice=getattr(args, "config_notice", None))
    from vcam_me.cli import build_parser

    build_parser().print_help()
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        print("vcam-me: the tray app needs Qt: pip install 'vcam-me[ui]'", file=sys.stderr)
    return 0


def cmd_desktop_entry(args, cfg: AppConfig) -> int:
    """From the AppImage: write (or remove) the applications-menu entry that starts it."""
    from vcam_me.ui import desktop_entry

    if args.remove:
        removed = desktop_entry.remove()
        print("vcam-me: removed " + ", ".join(map(str, removed)) if removed else "vcam-me: no menu entry to remove")
        return 0
    image, appdir = desktop_entry.running_appimage()
    entry, icon = desktop_entry.install(image, appdir)
    print(f"vcam-me: menu entry {entry} (icon {icon}) starts {image}; if you move that file, run this again")
    return 0


COMMANDS = {
    None: cmd_default, "demo": cmd_demo, "run": cmd_run, "render": cmd_render, "avatar": cmd_avatar, "consent": cmd_consent, "verify": cmd_verify,
    "doctor": cmd_doctor, "bench": cmd_bench, "eval": cmd_eval, "setup": cmd_setup,
    "desktop-entry": cmd_desktop_entry,
}


def load_config_for(args) -> tuple[AppConfig, str | None]:
    """The configuration for this command, and a notice when the user's settings were set aside.

    A settings file that cannot be read is a one-line error at a terminal (the user fixes
    it). The tray app has no terminal: it starts with the default settings instead and says
    so (on stderr and in a tray notice), never silently."""
    path = Path(args.config) if args.config else None
    try:
        return load_config(path), None
    except ConfigError as err:
        if args.command is not None or not desktop_available():
            raise
        try:
            cfg = load_config(path, use_user_config=False)
        except ConfigError:
            raise err from None
        notice = f"{err}; started with the default settings"
        print(f"vcam-me: {notice}", file=sys.stderr)
        return cfg, notice


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (a logout, a shutdown, ``kill``, a closed terminal): stop the way Ctrl+C
    stops, so that a recording in progress is closed into a playable file instead of being cut
    off, and the camera and virtual camera are released."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


#: A stop asked for by a signal that is still going after this many seconds writes every
#: thread's stack to the log file: a rare hang on the way out (one seen in a CI run, never
#: reproduced) then shows where it waits.
STOP_WATCHDOG_S = 15.0
_stop_watch_file = None


def watch_the_stop(after_s: float = STOP_WATCHDOG_S) -> None:
    """Arm the stop watchdog (:data:`STOP_WATCHDOG_S`); the process ending first disarms it."""
    import faulthandler

    global _stop_watch_file
    try:
        path = _log_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        if _stop_watch_file is None:
            _stop_watch_file = open(path, "a", encoding="utf-8")  # kept open: faulthandler writes to its descriptor
        faulthandler.dump_traceback_later(after_s, file=_stop_watch_file)
    except (OSError, ValueError):  # no writable log folder: stop without the watchdog
        pass


#: The stream that a stop signal ends at its next frame (see :func:`signals_end_stream`).
_stream_to_end = None


@contextlib.contextmanager
def signals_end_stream(pipeline):
    """While the block runs, Ctrl+C, SIGTERM and SIGHUP ask ``pipeline`` to end after the frame
    it is on (:meth:`~vcam_me.pipeline.LivePipeline.request_stop`) instead of raising in the
    middle of whatever the main thread was doing. An exception raised there can land between
    taking a lock and the ``try`` that releases it (CPython's ``with`` is not signal-safe), and a
    stage's lock left held would make a tracker thread, and then the tracker's close, wait for
    ever. A second signal while that stop is pending raises as before."""
    global _stream_to_end
    _stream_to_end = pipeline
    try:
        yield pipeline
    finally:
        _stream_to_end = None


def _end_stream_on_signal() -> bool:
    """From a signal handler: ask the running stream to end; False when there is none, or
    when it was already asked (the caller then raises)."""
    pipeline = _stream_to_end
    if pipeline is None or pipeline.stop_requested:
        return False
    pipeline.request_stop()
    return True


def stop_on_termination_signals():
    """Turn SIGTERM and SIGHUP into :class:`Terminated` on the main thread (the default would
    end the process at once), or, while a stream runs, into a request that it end at its next
    frame; Ctrl+C does the same for a stream and otherwise raises ``KeyboardInterrupt`` as
    usual. The tray app replaces these with a quit of its event loop. Returns a function that
    puts the previous handlers back."""
    import signal

    def stop(signum, _frame):
        watch_the_stop()
        if _end_stream_on_signal():
            return
        raise Terminated(signum)

    def interrupt(signum, frame):
        if _end_stream_on_signal():
            return
        signal.default_int_handler(signum, frame)

    previous = {}
    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where Ctrl+C was set to be ignored
            previous[signal.SIGINT] = signal.signal(signal.SIGINT, interrupt)
    except ValueError:  # not the main thread
        pass
    for name in ("SIGTERM", "SIGHUP"):
        number = getattr(signal, name, None)
        if number is None:  # Windows has no SIGHUP
            continue
        try:
            previous[number] = signal.signal(number, stop)
        except ValueError:  # not the main thread (main() called by a test from a worker thread)
            break

    def restore() -> None:
        for number, handler in previous.items():
            signal.signal(number, handler)

    return restore


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vcam-me`` command. Returns the process exit code."""
    _quiet_native_logs()
    restore_signals = stop_on_termination_signals()
    try:
        return _main(argv)
    finally:
        restore_signals()  # main() may be called in-process (tests, scripts)


def _main(argv: list[str] | None) -> int:
    from vcam_me.cli import build_parser

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg, args.config_notice = load_config_for(args)
        return COMMANDS[args.command](args, cfg)
    except VcamError as err:
        print(f"vcam-me: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt as err:
        if isinstance(err, Terminated):
            import signal

            print(f"vcam-me: stopped ({signal.Signals(err.signum).name})", file=sys.stderr)
            return 128 + err.signum
        print("vcam-me: stopped", file=sys.stderr)
        return 130
    except Exception as err:  # a bug: one line for the user, the traceback to the log file
        where = ""
        try:
            path = _log_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} vcam-me {' '.join(sys.argv[1:])}\n")
                traceback.print_exc(file=handle)
            where = f" (details in {path})"
        except OSError:
            pass
        print(f"vcam-me: internal error: {type(err).__name__}: {err}{where}", file=sys.stderr)
        return 1
