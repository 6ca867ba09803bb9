"""Configuration as validated data: one frozen dataclass per stage, composed into :class:`AppConfig`.

``config/default.toml`` holds the defaults (one ``[section]`` per stage); the user's overrides
live in ``config.toml`` in the platform's config folder (``vcam-me doctor`` prints where).
Loading validates every key: an unknown key, a wrong type or a value outside its allowed set
is a :class:`~vcam_me.errors.ConfigError` that names the key and what is allowed.

Each stage is handed only its own section. Nothing here does I/O except :func:`load_config`.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from vcam_me.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = PROJECT_ROOT / "config" / "default.toml"


@dataclass(frozen=True)
class CaptureOptions:
    #: "camera" (a webcam by index), or a path to a video file or still image.
    source: str = "camera"
    #: Webcam index for source = "camera".
    camera_index: int = 0
    #: Size and rate asked of the webcam; what it actually gives is read back and logged.
    width: int = 1280
    height: int = 720
    fps: int = 30
    #: Video files: "realtime" paces frames at the file's rate; "fast" as fast as possible.
    pace: Literal["realtime", "fast"] = "realtime"
    #: Video files: start again at the end instead of stopping.
    loop: bool = False
    #: Seconds between attempts to reopen a camera that disappeared.
    reconnect_interval_s: float = 1.0


@dataclass(frozen=True)
class TrackingOptions:
    #: "live_stream" (asynchronous, drops frames when busy) or "video" (synchronous).
    mode: Literal["live_stream", "video"] = "live_stream"
    min_face_detection_confidence: float = 0.5
    min_face_presence_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    #: MediaPipe looks for up to this many faces and the tracker follows the one chosen at
    #: start (the largest, then the most central), never jumping to another person's face
    #: (rule in vcam_me/tracking/selector.py). 1 is cheaper but cannot tell faces apart
    #: when the chosen one leaves the frame.
    follow_one_of: int = 2
    #: How far (in face sizes) from where the chosen face was last seen a face may be and
    #: still be taken for it.
    follow_gate: float = 1.0
    #: After the chosen face has been out of sight this long (ms), choose again.
    reacquire_after_ms: int = 2000
    #: A face with less than this share of its landmarks inside the frame counts as lost:
    #: half out of the picture, MediaPipe guesses the rest and its head pose swings.
    min_face_in_frame: float = 0.8


@dataclass(frozen=True)
class ExpressionOptions:
    #: One-Euro filter: minimum cutoff (Hz). Lower = steadier when still, more lag.
    min_cutoff_hz: float = 1.5
    #: One-Euro filter: speed coefficient. Higher = less lag on fast motion.
    beta: float = 4.0
    #: One-Euro filter: cutoff of the derivative estimate (Hz).
    derivative_cutoff_hz: float = 1.0
    #: Same filter for head pose (degrees), tuned separately.
    pose_min_cutoff_hz: float = 1.0
    pose_beta: float = 0.3
    #: Neutral baseline: how fast it falls to a lower value (per camera frame, 0..1)…
    baseline_fall_rate: float = 0.3
    #: …and how slowly it creeps up (per camera frame): a slow running low percentile.
    baseline_rise_rate: float = 0.002
    #: Render-clock interpolation delay in ms; "auto" uses one camera period.
    interpolation_delay_ms: int | Literal["auto"] = "auto"
    #: Multiplies tracked AU intensities (1 = as tracked).
    gain: float = 1.0
    #: A tracked face whose newest sample is older than this (ms) counts as lost, so the
    #: avatar idles instead of holding a stale face when the camera stalls or freezes.
    stale_after_ms: int = 500
    #: The avatar's head turns at most this far (degrees, each axis), bending smoothly toward
    #: it: past about 30 degrees the portrait warp folds the head over the background.
    max_head_turn_deg: float = 30.0


@dataclass(frozen=True)
class MicroOptions:
    """Micro-expressions injected on top of the tracked face (config/micro_expressions.toml)."""

    #: "none", "auto" (fired at random at rate_per_min) or the path of a scripted sequence
    #: (a JSON file; format in vcam_me/expression/micro/script.py). "none" by default: the
    #: avatar shows only what the user's face does unless they ask for more.
    mode: str = "none"
    #: Automatic mode: mean number of events per minute (a Poisson process).
    rate_per_min: float = 4.0
    #: Peak of a micro-expression: a FACS letter or range (A = trace … E = maximum), each a
    #: fraction of the user's calibrated range of the AU ([intensity] in the library).
    intensity: str = "A-B"
    #: Peak of a held (macro) expression (press and hold a hotkey).
    held_intensity: str = "C"
    #: Seed of the random choices (same seed, same events), or "random" (the log records it).
    seed: int | Literal["random"] = "random"
    #: An extra library file with your own types ("": only the bundled library and
    #: micro_expressions.toml in your config folder).
    library: str = ""
    #: Automatic mode's temperament: type → weight factor (0 = never, 2 = twice as often; a type
    #: not named keeps its library weight). E.g. {suppressed_smile = 3, brow_lowerer = 0}.
    persona: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class AvatarOptions:
    #: Avatar folder or portrait photo; "" uses the bundled sample avatar.
    path: str = ""
    #: Displacement field is evaluated at 1/warp_downscale resolution, then upsampled.
    warp_downscale: int = 4
    #: How far (in face widths) hair and neck follow the head before the background is still.
    head_follow_falloff: float = 0.6
    #: "auto": the appearance network for an avatar that carries its own (personalised by
    #: ``vcam-me setup``), the mesh warp alone for a photo avatar (the shipped generic prior
    #: blurs faces it was not trained on: vcam_me/training/README.md); "network": the network
    #: always (the generic prior for photo avatars); "warp": the mesh warp alone, with a drawn
    #: mouth interior and lids (least CPU).
    appearance: Literal["auto", "network", "warp"] = "auto"
    #: Where the network runs: "auto" (CUDA when it really starts, else the CPU), "cpu", "gpu".
    appearance_device: Literal["auto", "cpu", "gpu"] = "auto"
    #: CPU threads for one network call (design.md §2: two cores for the whole app).
    appearance_threads: int = 1
    #: Live: at most one network call per this many ms (33 = the camera's 30 fps); the newest
    #: result is carried on the moving mesh in between. 60 (≤ 15 calls/s, at most 16.7 ms more
    #: stale than 40): with the shipped prior the residual on screen is then 1.37 grey levels
    #: from a fresh one on average (1.24 at 40 ms, 0.84 called every frame; liveportrait_d8),
    #: and the network path costs 0.18 instead of 0.24 core over the warp alone
    #: (benchmarks/README.md, "Live speed with the network", 24 Nov afternoon).
    appearance_interval_ms: int = 60
    #: The face mesh: "basis": the fitted AU basis alone; "network": the basis refined by the
    #: transfer network's geometry head (the avatar's own when ``vcam-me setup`` made one, else
    #: the shipped generic head; 0.06 ms a frame). Not the default: measured on 10 clips it moved
    #: fidelity little either way and cost micro-expressions their side (benchmarks/README.md,
    #: "The geometry head at run time").
    geometry: Literal["basis", "network"] = "basis"
    #: Who drives the avatar. "owner": the person it shows (expressions are drawn as measured
    #: on real faces: a face moved by its own person's motion reads back as that motion);
    #: "other": someone else (drawn with the AU basis's cross-identity gains and cross-talk
    #: mixing, which make up for MediaPipe reading another person's motion weakly on this
    #: face); "auto": "owner" for avatars personalised by ``vcam-me setup`` from their owner's
    #: video, "other" for photo avatars (benchmarks/README.md, "Driven by its own face"). An
    #: imported avatar that someone else personalised counts as theirs: driven by you, its
    #: expressions come out weaker than with "other" (they still follow you).
    driver: Literal["auto", "owner", "other"] = "auto"


@dataclass(frozen=True)
class LabelOptions:
    """The visible "AI-generated avatar" label. It can be moved or restyled, never turned off."""

    #: Where the main badge goes; "bottom-centre" stays inside every common crop.
    position: Literal["bottom-centre", "top-centre"] = "bottom-centre"
    #: Opacity of the dark backing behind the white text (0.6–0.9).
    backing_opacity: float = 0.65
    #: Seconds the large start banner stays up at start and after every reconnect (≥ 2).
    banner_seconds: float = 3.0


@dataclass(frozen=True)
class OutputOptions:
    #: Output frame rate: 60, or 30 for conferencing apps that misbehave above ~55 fps.
    fps: Literal[60, 30] = 60
    width: int = 1280
    height: int = 720
    #: Virtual-camera backend: "auto" picks the one for this OS.
    virtualcam_backend: str = "auto"
    #: Virtual-camera device (Linux: /dev/videoN); "" lets pyvirtualcam choose.
    virtualcam_device: str = ""
    #: Seconds between attempts to reopen a virtual camera that vanished or was busy
    #: (frames are dropped meanwhile; the stream, preview and recorder go on).
    virtualcam_retry_s: float = 2.0
    #: MP4 recorder: H.264 constant-quality setting (lower = better, bigger).
    record_crf: int = 20


@dataclass(frozen=True)
class ConsentOptions:
    """Checks on a recorded consent statement (``vcam-me consent record``)."""

    #: Largest median face-descriptor distance between the recording and the avatar that
    #: counts as the same person. dlib's network was trained to keep one person within 0.6,
    #: but on ../shared/data different people came as close as 0.50 while the same person
    #: stayed at or below 0.47 (benchmarks/results/face_match.json); a wrongly accepted face
    #: is worse than asking for a second take, so the limit is the stricter 0.5.
    face_match_max_distance: float = 0.5
    #: Frames sampled, evenly spread, from the recording for the face match.
    face_frames: int = 8
    #: Seconds of voice the recording must hold (the statement takes about 8 s to read).
    min_voice_seconds: float = 3.0
    #: Loudness (RMS over the voiced frames, dBFS) the voice must reach.
    min_voice_dbfs: float = -40.0
    #: Length of a live consent recording.
    record_seconds: float = 15.0


@dataclass(frozen=True)
class IdleOptions:
    """The idle animator: the avatar keeps living while the face is lost or tracking is paused."""

    #: Time (ms) to hand the face to idle animation and back to live tracking, each way.
    handover_ms: int = 250
    #: Breathing rate (breaths per minute; each breath varies around it by ±15 %).
    breaths_per_min: float = 15.0
    #: Breathing: head pitch amplitude (degrees) and jaw (AU26) amplitude.
    breath_pitch_deg: float = 0.5
    breath_jaw: float = 0.03
    #: Spontaneous blinks per minute (double blinks included); ~17 at rest.
    blinks_per_min: float = 17.0
    #: Fraction of blinks followed at once by a second one.
    double_blink_probability: float = 0.06
    #: Largest gaze offset of an idle glance (gaze units in [-1, 1]).
    gaze_range: float = 0.18
    #: Head sway amplitude (degrees, roughly the standard deviation of yaw).
    sway_deg: float = 1.2
    #: Micro-expressions the idle face shows by itself, per minute (0 = none)…
    micro_per_min: float = 1.0
    #: …chosen among these types of the micro-expression library ([] = none).
    micro_types: tuple[str, ...] = ("inner_brow", "brow_raise", "lip_suppression", "suppressed_smile")
    #: While the face is lost, the jaw follows the microphone's voice level.
    voice_jaw: bool = True
    #: Microphone: "" = the system's default input; or a device name or index.
    microphone: str = ""
    #: Voice level (dBFS) where the jaw starts to open, and where it is open to voice_jaw_max.
    voice_floor_dbfs: float = -50.0
    voice_full_dbfs: float = -20.0
    voice_jaw_max: float = 0.45

    def __post_init__(self) -> None:
        if self.voice_full_dbfs <= self.voice_floor_dbfs:
            raise ConfigError(f"idle.voice_full_dbfs = {self.voice_full_dbfs}: must be above "
                              f"idle.voice_floor_dbfs = {self.voice_floor_dbfs}")


#: Ctrl+Alt+digit → the micro-expression library's types (config/micro_expressions.toml).
DEFAULT_HOTKEY_BINDINGS = {
    "<ctrl>+<alt>+1": "suppressed_smile", "<ctrl>+<alt>+2": "brow_raise", "<ctrl>+<alt>+3": "inner_brow",
    "<ctrl>+<alt>+4": "brow_lowerer", "<ctrl>+<alt>+5": "contempt_dimpler", "<ctrl>+<alt>+6": "nose_upper_lip_disgust",
    "<ctrl>+<alt>+7": "lip_suppression", "<ctrl>+<alt>+8": "lid_tightener", "<ctrl>+<alt>+9": "brow_flash",
    "<ctrl>+<alt>+0": "lip_stretch",
}


@dataclass(frozen=True)
class HotkeyOptions:
    """Global hotkeys. Combos use pynput's syntax: "<ctrl>+<alt>+1", "<shift>+<f9>", "a"."""

    #: Listen for hotkeys during `vcam-me run` (needs a desktop session).
    enabled: bool = True
    #: A press released within this time (ms) is a tap; held longer, it holds the expression.
    tap_max_ms: int = 250
    #: Combo that pauses tracking (the avatar goes idle) and resumes it.
    pause: str = "<ctrl>+<alt>+p"
    #: Combo → expression type: a tap fires it as a micro-expression, holding holds it.
    bindings: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_HOTKEY_BINDINGS))


@dataclass(frozen=True)
class AppConfig:
    capture: CaptureOptions = field(default_factory=CaptureOptions)
    tracking: TrackingOptions = field(default_factory=TrackingOptions)
    expression: ExpressionOptions = field(default_factory=ExpressionOptions)
    micro: MicroOptions = field(default_factory=MicroOptions)
    avatar: AvatarOptions = field(default_factory=AvatarOptions)
    label: LabelOptions = field(default_factory=LabelOptions)
    output: OutputOptions = field(default_factory=OutputOptions)
    idle: IdleOptions = field(default_factory=IdleOptions)
    hotkeys: HotkeyOptions = field(default_factory=HotkeyOptions)
    consent: ConsentOptions = field(default_factory=ConsentOptions)


# Extra range rules, checked after types: key → (predicate, description of what is allowed).
_RANGES: dict[str, tuple[typing.Callable[[Any], bool], str]] = {
    "capture.camera_index": (lambda v: v >= 0, "an integer ≥ 0"),
    "capture.width": (lambda v: 16 <= v <= 7680, "16..7680"),
    "capture.height": (lambda v: 16 <= v <= 4320, "16..4320"),
    "capture.fps": (lambda v: 1 <= v <= 240, "1..240"),
    "capture.reconnect_interval_s": (lambda v: 0.05 <= v <= 60, "0.05..60"),
    "tracking.min_face_detection_confidence": (lambda v: 0 <= v <= 1, "0..1"),
    "tracking.min_face_presence_confidence": (lambda v: 0 <= v <= 1, "0..1"),
    "tracking.min_tracking_confidence": (lambda v: 0 <= v <= 1, "0..1"),
    "tracking.follow_one_of": (lambda v: 1 <= v <= 4, "1..4"),
    "tracking.follow_gate": (lambda v: 0.1 <= v <= 5, "0.1..5 (face sizes)"),
    "tracking.reacquire_after_ms": (lambda v: 0 <= v <= 60000, "0..60000"),
    "tracking.min_face_in_frame": (lambda v: 0 <= v <= 1, "0..1"),
    "expression.min_cutoff_hz": (lambda v: 0 < v <= 30, "0 < value ≤ 30"),
    "expression.beta": (lambda v: 0 <= v <= 100, "0..100"),
    "expression.derivative_cutoff_hz": (lambda v: 0 < v <= 30, "0 < value ≤ 30"),
    "expression.pose_min_cutoff_hz": (lambda v: 0 < v <= 30, "0 < value ≤ 30"),
    "expression.pose_beta": (lambda v: 0 <= v <= 100, "0..100"),
    "expression.baseline_fall_rate": (lambda v: 0 < v <= 1, "0 < value ≤ 1"),
    "expression.baseline_rise_rate": (lambda v: 0 <= v <= 1, "0..1"),
    "expression.interpolation_delay_ms": (lambda v: v == "auto" or 0 <= v <= 200, '"auto" or 0..200'),
    "expression.stale_after_ms": (lambda v: 100 <= v <= 10000, "100..10000"),
    "expression.max_head_turn_deg": (lambda v: 5 <= v <= 90, "5..90"),
    "expression.gain": (lambda v: 0 <= v <= 3, "0..3"),
    "micro.mode": (lambda v: v in ("none", "auto") or v.lower().endswith(".json"), '"none", "auto" or the path of a .json script'),
    "micro.rate_per_min": (lambda v: 0 <= v <= 60, "0..60"),
    "micro.intensity": (lambda v: _facs_range(v), 'a FACS letter A..E or a range like "A-B"'),
    "micro.held_intensity": (lambda v: _facs_range(v), 'a FACS letter A..E or a range like "B-C"'),
    "micro.seed": (lambda v: v == "random" or v >= 0, '"random" or an integer ≥ 0'),
    "micro.persona": (lambda v: all(0 <= w <= 10 for w in v.values()), "a weight factor 0..10 for each type"),
    "avatar.warp_downscale": (lambda v: v in (1, 2, 4, 8), "1, 2, 4 or 8"),
    "avatar.head_follow_falloff": (lambda v: 0.05 <= v <= 3, "0.05..3"),
    "avatar.appearance_threads": (lambda v: 1 <= v <= 16, "1..16"),
    "avatar.appearance_interval_ms": (lambda v: 0 <= v <= 1000, "0..1000"),
    "label.backing_opacity": (lambda v: 0.6 <= v <= 0.95, "0.6..0.95 (the label must stay legible)"),
    "label.banner_seconds": (lambda v: 2 <= v <= 30, "2..30 (the law asks for at least 2 s)"),
    "output.width": (lambda v: 160 <= v <= 3840 and v % 2 == 0, "an even number 160..3840"),
    "output.height": (lambda v: 120 <= v <= 2160 and v % 2 == 0, "an even number 120..2160"),
    "output.record_crf": (lambda v: 0 <= v <= 51, "0..51"),
    "output.virtualcam_retry_s": (lambda v: 0.1 <= v <= 60, "0.1..60 seconds"),
    "consent.face_match_max_distance": (lambda v: 0.3 <= v <= 0.7, "0.3..0.7"),
    "consent.face_frames": (lambda v: 3 <= v <= 60, "3..60"),
    "consent.min_voice_seconds": (lambda v: 1 <= v <= 60, "1..60"),
    "consent.min_voice_dbfs": (lambda v: -60 <= v <= -10, "-60..-10"),
    "consent.record_seconds": (lambda v: 5 <= v <= 120, "5..120"),
    "idle.handover_ms": (lambda v: 50 <= v <= 300, "50..300 (a hand-over takes at most 300 ms)"),
    "idle.breaths_per_min": (lambda v: 6 <= v <= 30, "6..30"),
    "idle.breath_pitch_deg": (lambda v: 0 <= v <= 3, "0..3"),
    "idle.breath_jaw": (lambda v: 0 <= v <= 0.2, "0..0.2"),
    "idle.blinks_per_min": (lambda v: 0 <= v <= 60, "0..60"),
    "idle.double_blink_probability": (lambda v: 0 <= v <= 0.5, "0..0.5"),
    "idle.gaze_range": (lambda v: 0 <= v <= 0.5, "0..0.5"),
    "idle.sway_deg": (lambda v: 0 <= v <= 5, "0..5"),
    "idle.micro_per_min": (lambda v: 0 <= v <= 20, "0..20"),
    "idle.voice_floor_dbfs": (lambda v: -100 <= v <= -1, "-100..-1"),
    "idle.voice_full_dbfs": (lambda v: -99 <= v <= 0, "-99..0"),
    "idle.voice_jaw_max": (lambda v: 0 <= v <= 1, "0..1"),
    "hotkeys.tap_max_ms": (lambda v: 80 <= v <= 1000, "80..1000"),
}


def _facs_range(value: str) -> bool:
    m = re.fullmatch(r"([A-E])(?:-([A-E]))?", value.strip())
    return bool(m) and (m.group(2) is None or m.group(1) <= m.group(2))


# Keys that someone may try to set to hide the disclosure; refused with a reason.
_FORBIDDEN = {
    "label.enabled", "label.visible", "label.show", "label.disable", "label.hidden",
    "watermark.enabled", "watermark.disable", "consent.enabled", "consent.disable",
}


def _describe(tp: Any) -> str:
    plural = {str: "strings", int: "integers", float: "numbers", bool: "true/false values"}
    if get_origin(tp) is tuple:
        return f"a list of {plural.get(get_args(tp)[0], 'values')}"
    if get_origin(tp) is dict:
        return f"a table whose values are {plural.get(get_args(tp)[1], 'values')}"
    if get_origin(tp) is Literal:
        return " or ".join(repr(a) if isinstance(a, str) else str(a) for a in get_args(tp))
    if get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType")):
        return " or ".join(_describe(a) for a in get_args(tp))
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def _check_type(value: Any, tp: Any) -> bool:
    origin = get_origin(tp)
    if origin is tuple:  # tuple[T, ...], written as a TOML array
        return isinstance(value, (list, tuple)) and all(_check_type(v, get_args(tp)[0]) for v in value)
    if origin is dict:  # dict[K, V], written as a TOML table
        key, item = get_args(tp)
        return isinstance(value, dict) and all(_check_type(k, key) and _check_type(v, item) for k, v in value.items())
    if origin is Literal:
        return any(value == a and type(value) is type(a) for a in get_args(tp))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType")):
        return any(_check_type(value, a) for a in get_args(tp))
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: an error message stays one readable line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 12]}… ({len(text)} chars)"


def _build_section(section: str, cls: type, values: dict[str, Any], base: Any) -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    changes = {}
    for key, value in values.items():
        dotted = f"{section}.{key}"
        if dotted in _FORBIDDEN:
            raise ConfigError(f"{dotted}: the AI label and consent mark cannot be switched off (remove this key)")
        if key not in known:
            raise ConfigError(f"{dotted}: unknown key (allowed in [{section}]: {', '.join(sorted(known))})")
        tp = hints[key]
        if not _check_type(value, tp):
            raise ConfigError(f"{dotted} = {_shown(value)}: expected {_describe(tp)}")
        if tp is float and isinstance(value, int):
            value = float(value)
        if get_origin(tp) is tuple:
            value = tuple(value)
        if dotted in _RANGES and not (value == "auto" and "auto" in _RANGES[dotted][1]):
            ok, allowed = _RANGES[dotted]
            if not ok(value):
                raise ConfigError(f"{dotted} = {_shown(value)}: allowed {allowed}")
        changes[key] = value
    return dataclasses.replace(base, **changes)


def config_from_dict(data: dict[str, Any], base: AppConfig | None = None) -> AppConfig:
    """Validate a parsed TOML document (sections → keys) on top of ``base``."""
    base = base or AppConfig()
    sections = {f.name: f for f in fields(AppConfig)}
    changes = {}
    for section, values in data.items():
        if section not in sections:
            if any(k.startswith(f"{section}.") for k in _FORBIDDEN):
                raise ConfigError(f"[{section}]: the AI label and consent mark cannot be switched off (remove this section)")
            raise ConfigError(f"[{section}]: unknown section (allowed: {', '.join(sections)})")
        if not isinstance(values, dict):
            raise ConfigError(f"{section}: expected a [{section}] table")
        cls = typing.get_type_hints(AppConfig)[section]
        changes[section] = _build_section(section, cls, values, getattr(base, section))
    return dataclasses.replace(base, **changes)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from None
    except ValueError as err:  # tomllib lets int()'s own errors through (e.g. a 5000-digit number)
        raise ConfigError(f"config file {path} is not valid TOML: {str(err).splitlines()[0][:200]}") from None
    except RecursionError:
        raise ConfigError(f"config file {path} is not valid TOML: arrays or tables nested too deeply") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {path} cannot be read: {err}") from None


def user_config_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("vcam-me", appauthor=False)) / "config.toml"


def load_config(path: Path | None = None, *, use_user_config: bool = True) -> AppConfig:
    """Defaults from ``config/default.toml``, then the user's file, then ``path`` if given."""
    cfg = config_from_dict(_read_toml(DEFAULT_CONFIG_PATH)) if DEFAULT_CONFIG_PATH.is_file() else AppConfig()
    if use_user_config:
        user = user_config_path()
        if user.is_file():
            cfg = config_from_dict(_read_toml(user), cfg)
    if path is not None:
        cfg = config_from_dict(_read_toml(Path(path)), cfg)
    return cfg
