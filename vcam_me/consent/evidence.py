"""Recorded consent: the statement a person reads, and the checks on the recording of it.

The depicted person reads, on camera and microphone, a sentence naming them, the scope and
the expiry, plus a one-time challenge code (``consent-watermark.md`` §4: the pattern HeyGen
and D-ID use). What this module checks, each with a one-line refusal that gives the figure:

* **the face**: the face in the recording must be the avatar's face. The identity
  descriptors are computed elsewhere (the tracking stage; :mod:`vcam_me.app` wires them);
  :func:`check_face_match` decides from the distances it is given;
* **the voice**: the audio track must hold speech, loud enough and long enough
  (:func:`measure_speech`: an energy detector over 30 ms frames, relative to the clip's own
  noise floor and above an absolute level);
* **the evidence**: the recording is copied into the user's consent folder (0600 in a 0700
  folder, never over an existing file) and its SHA-256 goes into the signed record.

Limits, stated plainly: nothing here recognises *what* was said (the challenge is not
transcribed), checks liveness, or tells a screen replay from a camera. An energy detector
accepts any sound with speech-like loudness; the record says what was measured so a
reviewer can watch the stored recording.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from vcam_me.consent.butterworth import butter_bandpass, sosfilt
from vcam_me.consent.keys import ensure_private_dir, write_private_file
from vcam_me.errors import ConsentError

EVIDENCE_DIR = "evidence"
#: Sample rate the speech measure works at (speech energy lies below 4 kHz).
SPEECH_RATE = 16_000
FRAME_S = 0.030
#: Voice band used for the energy: mains hum and hiss outside it do not count as speech.
VOICE_BAND_HZ = (100.0, 3800.0)
#: A frame is voiced when it is this much above the clip's noise floor ...
VOICE_ABOVE_FLOOR_DB = 12.0
#: ... and above this absolute level (so a silent clip's dither is not "speech"). Kept low:
#: a quiet voice is still found, and then refused as too quiet, which says what to fix.
VOICE_MIN_FRAME_DBFS = -70.0
_SILENCE_DBFS = -120.0

#: Short, common English words that sound unlike each other when read aloud, for challenge
#: codes. 64 words and 4 digits: 64 × 10 000 = 640 000 codes (about 19 bits) per challenge.
CHALLENGE_WORDS = (
    "AMBER", "ANCHOR", "APPLE", "BADGER", "BASKET", "BEACON", "BISCUIT", "BLOSSOM",
    "BRIDGE", "CAMEL", "CANDLE", "CANYON", "CARPET", "CASTLE", "CEDAR", "CHERRY",
    "CIRCUS", "CLOVER", "COBALT", "COMET", "COPPER", "CRYSTAL", "DOLPHIN", "DRAGON",
    "EAGLE", "EMBER", "FALCON", "FEATHER", "FOREST", "GARDEN", "GINGER", "GLACIER",
    "HARBOR", "HAZEL", "ISLAND", "JACKET", "JUNGLE", "KETTLE", "LANTERN", "LEMON",
    "MAGNET", "MAPLE", "MEADOW", "MIRROR", "MONKEY", "NUTMEG", "OCEAN", "ORCHID",
    "PANDA", "PEPPER", "PILLOW", "PLANET", "PUMPKIN", "RABBIT", "RIVER", "ROCKET",
    "SADDLE", "SILVER", "SPIDER", "TIGER", "TOMATO", "TUNNEL", "VELVET", "WALNUT",
)


class EvidenceError(ConsentError):
    """The consent recording does not pass a check (one line with the measured figure)."""


# --------------------------------------------------------------------------- the statement


def new_challenge() -> str:
    """A fresh one-time challenge code that is easy to read aloud: ``RIVER-4821``."""
    return f"{secrets.choice(CHALLENGE_WORDS)}-{secrets.randbelow(10_000):04d}"


def consent_statement(subject_name: str, expires_at: datetime, challenge: str) -> str:
    """The sentence the person reads aloud: who they are, what they allow, until when, and
    the challenge code. One line; this exact text goes into the signed record."""
    name = " ".join(subject_name.split())
    if not name:
        raise EvidenceError("the statement needs the name of the person who gives consent")
    if expires_at.tzinfo is None:
        raise ValueError("expires_at must be timezone-aware")
    return (
        f"I, {name}, agree that vcam-me may show an AI-generated avatar of my face in live video "
        f"calls and rendered videos, always labelled as AI-generated, until {expires_at:%d %B %Y}. "
        f"My one-time code is {challenge}."
    )


_CHALLENGE_RE = re.compile(r"([A-Za-z]+)[\s_-]*(\d{4})")


def parse_challenge(text: str) -> str:
    """A typed challenge code in its canonical form (``river 4821`` → ``RIVER-4821``);
    :class:`EvidenceError` when it is not a code :func:`new_challenge` could have made."""
    match = _CHALLENGE_RE.fullmatch(text.strip())
    if match is None or match.group(1).upper() not in CHALLENGE_WORDS:
        raise EvidenceError(f"challenge {text!r} is not a vcam-me challenge code like RIVER-4821 "
                            "(vcam-me consent record --avatar A --name NAME --statement-only makes one)")
    return f"{match.group(1).upper()}-{match.group(2)}"


# --------------------------------------------------------------------------- the voice


@dataclass(frozen=True)
class SpeechMeasure:
    """What the energy detector found in a recording's audio track.

    Attributes:
        duration_s: length of the audio analysed.
        voiced_s: seconds of frames judged to be voice.
        voice_dbfs: RMS level of the voiced frames (dBFS, voice band), ``-120`` if none.
        noise_floor_dbfs: the clip's background level (10th percentile of frame levels).
    """

    duration_s: float
    voiced_s: float
    voice_dbfs: float
    noise_floor_dbfs: float


def _db(power: np.ndarray) -> np.ndarray:
    return 10.0 * np.log10(np.maximum(power, 10 ** (_SILENCE_DBFS / 10)))


def measure_speech(samples: np.ndarray, sample_rate: int = SPEECH_RATE) -> SpeechMeasure:
    """Measure the voice in ``samples``: ``(N,) float32`` mono in [-1, 1] at ``sample_rate``.

    The signal is band-limited to :data:`VOICE_BAND_HZ`, cut into 30 ms frames, and a frame
    counts as voice when its level is :data:`VOICE_ABOVE_FLOOR_DB` above the clip's noise
    floor and above :data:`VOICE_MIN_FRAME_DBFS`. Pure: no I/O.
    """
    audio = np.asarray(samples, np.float64).reshape(-1)
    if sample_rate < 8000:
        raise ValueError(f"sample_rate must be at least 8000 Hz, got {sample_rate}")
    frame = round(FRAME_S * sample_rate)
    count = audio.size // frame
    duration_s = audio.size / sample_rate
    if count == 0:
        return SpeechMeasure(round(duration_s, 3), 0.0, _SILENCE_DBFS, _SILENCE_DBFS)
    high = min(VOICE_BAND_HZ[1], 0.45 * sample_rate)
    sos = butter_bandpass(4, VOICE_BAND_HZ[0], high, sample_rate)
    band = sosfilt(sos, audio)[: count * frame].reshape(count, frame)
    power = np.mean(band**2, axis=1)
    level = _db(power)
    floor = float(np.percentile(level, 10))
    voiced = (level >= floor + VOICE_ABOVE_FLOOR_DB) & (level >= VOICE_MIN_FRAME_DBFS)
    voice_dbfs = float(_db(np.mean(power[voiced]))) if voiced.any() else _SILENCE_DBFS
    return SpeechMeasure(
        duration_s=round(duration_s, 3),
        voiced_s=round(float(voiced.sum()) * frame / sample_rate, 3),
        voice_dbfs=round(voice_dbfs, 1),
        noise_floor_dbfs=round(floor, 1),
    )


def read_audio(path: Path, sample_rate: int = SPEECH_RATE, *, name: str | None = None) -> np.ndarray:
    """The audio track of a recording as ``(N,) float32`` mono at ``sample_rate``.

    Raises :class:`EvidenceError` when the file has no audio track or cannot be decoded;
    ``name`` is how the message calls the file (default: its name).
    """
    import av

    path = Path(path)
    name = name or path.name
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as err:
        raise EvidenceError(f"the recording {name} cannot be read: {err}") from None
    with container:
        if not container.streams.audio:
            raise EvidenceError(f"the recording {name} has no audio track: the statement must be spoken aloud")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks = []
        try:
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as err:
            raise EvidenceError(f"the audio of {name} cannot be decoded: {err}") from None
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def check_speech(measure: SpeechMeasure, *, min_voice_seconds: float, min_voice_dbfs: float) -> SpeechMeasure:
    """``measure`` if the recording holds enough speech; :class:`EvidenceError` saying what is missing."""
    if measure.voiced_s < min_voice_seconds:
        raise EvidenceError(
            f"no speech found: {measure.voiced_s:.1f} s of voice in {measure.duration_s:.1f} s of audio, "
            f"at least {min_voice_seconds:g} s needed (read the whole statement aloud, close to the microphone)"
        )
    if measure.voice_dbfs < min_voice_dbfs:
        raise EvidenceError(
            f"the voice is too quiet: {measure.voice_dbfs:.1f} dBFS, at least {min_voice_dbfs:g} dBFS needed "
            f"(speak up or move closer to the microphone)"
        )
    return measure


# --------------------------------------------------------------------------- the face


@dataclass(frozen=True)
class FaceMatch:
    """Face-descriptor distances between frames of the recording and the avatar's reference.

    Attributes:
        distances: one per sampled frame that showed exactly one face.
        frames_sampled: frames looked at.
        median_distance: the decision figure (``None`` when no frame showed a face).
        limit: the largest median distance accepted.
    """

    distances: tuple[float, ...]
    frames_sampled: int
    median_distance: float | None
    limit: float


def check_face_match(distances: Sequence[float], *, frames_sampled: int, limit: float,
                     several_faces: int = 0) -> FaceMatch:
    """Decide whether the recording shows the avatar's face.

    Args:
        distances: descriptor distance to the avatar for each sampled frame with one face.
        frames_sampled: how many frames were looked at.
        limit: largest accepted median distance (``consent.face_match_max_distance``).
        several_faces: sampled frames that showed more than one face (refused: whose consent?).
    """
    values = tuple(round(float(d), 4) for d in distances)
    if several_faces > frames_sampled // 2:
        raise EvidenceError(f"more than one face in {several_faces} of {frames_sampled} sampled frames: "
                            "record the statement alone in front of the camera")
    needed = max(2, (frames_sampled + 1) // 2)
    if len(values) < needed:
        raise EvidenceError(f"a face was found in only {len(values)} of {frames_sampled} sampled frames of the "
                            f"recording, at least {needed} needed (face the camera, in good light)")
    median = round(float(np.median(values)), 4)
    if median > limit:
        raise EvidenceError(f"the face in the recording does not match the avatar (distance {median:.2f}, "
                            f"limit {limit:.2f})")
    return FaceMatch(values, frames_sampled, median, limit)


# --------------------------------------------------------------------------- the evidence file


@dataclass(frozen=True)
class StoredEvidence:
    """A recording kept as evidence. ``created``: this call wrote it (else it was there)."""

    path: Path
    sha256: str
    created: bool


def evidence_dir(consent_folder: Path) -> Path:
    """``<consent folder>/evidence``, created owner-only (0700)."""
    return ensure_private_dir(Path(consent_folder) / EVIDENCE_DIR)


def store_evidence(recording: Path, consent_folder: Path) -> StoredEvidence:
    """Copy ``recording`` into the consent folder's evidence folder, readable only by the
    user, named by its SHA-256; the user's file is left as it is.

    The copy is written to a new 0600 file and never replaces one: if the same recording is
    stored already, that copy is reused (same bytes, same name).
    """
    recording = Path(recording)
    if not recording.is_file():
        raise EvidenceError(f"consent recording not found: {recording}")
    folder = evidence_dir(consent_folder)
    suffix = recording.suffix.lower() if recording.suffix.lower() in (".mp4", ".mov", ".mkv", ".webm") else ".mp4"
    partial = folder / f".incoming-{secrets.token_hex(8)}{suffix}"
    digest = hashlib.sha256()
    write_private_file(partial, b"")
    try:
        with open(recording, "rb") as src, open(partial, "r+b") as dst:
            while block := src.read(1 << 20):
                digest.update(block)
                dst.write(block)
            dst.flush()
            os.fsync(dst.fileno())
        sha = digest.hexdigest()
        final = folder / f"{sha}{suffix}"
        try:
            os.link(partial, final)  # fails rather than replace an existing file
            created = True
        except FileExistsError:
            created = False  # the same bytes (same SHA-256) are stored already
        partial.unlink()
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return StoredEvidence(final, sha, created)


def write_checks(consent_folder: Path, code: str, figures: dict) -> Path:
    """Keep what was measured on a recording beside it: ``evidence/<CODE>.checks.json``
    (0600, never overwritten). The signed record holds the recording's hash; these figures
    are the reviewer's notes on it, not part of what was signed."""
    path = evidence_dir(consent_folder) / f"{code.replace('-', '')}.checks.json"
    write_private_file(path, (json.dumps(figures, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return path


def read_checks(consent_folder: Path, code: str) -> dict | None:
    """The figures :func:`write_checks` kept for consent ``code``, or ``None``."""
    path = Path(consent_folder) / EVIDENCE_DIR / f"{code.replace('-', '')}.checks.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def figures_of(speech: SpeechMeasure, face: FaceMatch, evidence: StoredEvidence) -> dict:
    """The measured figures of one recording, as JSON-ready data."""
    return {"speech": asdict(speech), "face_match": asdict(face), "evidence_file": evidence.path.name,
            "evidence_sha256": evidence.sha256}
