"""Microphone input: a smoothed voice level (dBFS), measured on the audio driver's own thread.

The idle animator moves the avatar's jaw with the voice while the face is lost, so what it
needs is not the audio itself but a level it can read at any time from the render thread:
:meth:`Microphone.level`. PortAudio (through ``sounddevice``) calls back with each block of
samples on its own thread; :meth:`Microphone.feed` turns a block into its RMS level and
folds it into a fast-attack, slow-release follower, so the level rises with a syllable
within a block or two and falls between words without flickering.

:meth:`Microphone.feed` is also the seam for tests and recordings: feed it the blocks of a
WAV file and the level follows that speech exactly as it would from a live device. Time in
the follower is counted in samples, not wall-clock time, so feeding is deterministic.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from typing import Protocol, Self

import numpy as np

from vcam_me.errors import CaptureError

log = logging.getLogger(__name__)

#: The level reported for digital silence (an RMS of 0 has no logarithm).
SILENCE_DBFS = -120.0


def rms_dbfs(samples: np.ndarray) -> float:
    """RMS level of ``samples`` in dB relative to full scale.

    ``samples`` are floats in [-1, 1] (any shape; all values count). A full-scale square wave
    is 0 dBFS, a full-scale sine −3 dBFS; silence is :data:`SILENCE_DBFS`.
    """
    x = np.asarray(samples, np.float64)
    if x.size == 0:
        return SILENCE_DBFS
    rms = math.sqrt(float(np.mean(x * x)))
    return max(20.0 * math.log10(rms), SILENCE_DBFS) if rms > 0 else SILENCE_DBFS


def pcm_to_float(samples: np.ndarray) -> np.ndarray:
    """Integer PCM (int16/int32/uint8) or float samples → float32 in [-1, 1]."""
    x = np.asarray(samples)
    if x.dtype == np.uint8:
        return (x.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(x.dtype, np.integer):
        return x.astype(np.float32) / float(-np.iinfo(x.dtype).min)
    return x.astype(np.float32, copy=False)


def _sounddevice():
    try:
        import sounddevice
    except OSError as err:  # the Python package is there, the PortAudio library is not
        raise CaptureError(f"no audio input: {err} (Debian/Ubuntu: sudo apt install libportaudio2)") from None
    except ImportError:
        raise CaptureError("no audio input: the sounddevice package is not installed (pip install sounddevice)") from None
    return sounddevice


def find_input(device: str | int | None = None) -> str:
    """The name of the input device ``device`` (``None`` or ``""``: the system default), without
    opening it; :class:`~vcam_me.errors.CaptureError` with one line when there is none."""
    sounddevice = _sounddevice()
    wanted = None if device in (None, "") else device
    try:
        return str(sounddevice.query_devices(wanted, kind="input")["name"])
    except (ValueError, sounddevice.PortAudioError) as err:
        which = "no microphone found" if wanted is None else f"microphone {wanted!r} not found"
        raise CaptureError(f"{which} ({str(err).splitlines()[0]}); plug one in or check the sound settings") from None


class LevelFollower:
    """Envelope follower on block levels: rises with ``attack_ms``, falls with ``release_ms``.

    Works in dB, so a loud syllable and a quiet one move the level by the same relative
    amount; the time constants are in ms of audio (counted from the samples fed).
    """

    def __init__(self, attack_ms: float = 15.0, release_ms: float = 120.0) -> None:
        if attack_ms <= 0 or release_ms <= 0:
            raise ValueError(f"attack_ms and release_ms must be > 0, got {attack_ms}, {release_ms}")
        self.attack_ms = float(attack_ms)
        self.release_ms = float(release_ms)
        self.value = SILENCE_DBFS

    def update(self, block_dbfs: float, block_ms: float) -> float:
        tau = self.attack_ms if block_dbfs > self.value else self.release_ms
        alpha = 1.0 - math.exp(-block_ms / tau)
        self.value += alpha * (block_dbfs - self.value)
        return self.value


class _Stream(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


class Microphone:
    """A microphone's smoothed level, readable from any thread. A context manager.

    Build it with :meth:`open` (a real input device); the constructor only takes finished
    parts, so ``Microphone(None, 16000)`` is a meter that tests feed by hand.
    """

    def __init__(
        self,
        stream: _Stream | None,
        sample_rate: int,
        *,
        attack_ms: float = 15.0,
        release_ms: float = 120.0,
        on_block: Callable[[np.ndarray], None] | None = None,
    ) -> None:
        """``on_block`` (optional) also receives every block, float32 mono, on the audio thread."""
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be > 0, got {sample_rate}")
        self.sample_rate = int(sample_rate)
        self._stream = stream
        self._follower = LevelFollower(attack_ms, release_ms)
        self._on_block = on_block
        self._lock = threading.Lock()
        self._samples_seen = 0
        self._closed = False

    @classmethod
    def open(
        cls,
        device: str | int | None = None,
        *,
        sample_rate: int | None = 16_000,
        block_ms: int = 20,
        attack_ms: float = 15.0,
        release_ms: float = 120.0,
        on_block: Callable[[np.ndarray], None] | None = None,
    ) -> Microphone:
        """Open an input device (``None`` or ``""``: the system default) and start measuring.

        ``sample_rate=None`` takes the device's own default rate, which every device supports.
        Raises :class:`~vcam_me.errors.CaptureError` with one line when PortAudio is missing,
        no input device exists, or the named one cannot be opened.
        """
        sounddevice = _sounddevice()
        name = find_input(device)
        wanted = None if device in (None, "") else device
        if sample_rate is None:
            sample_rate = int(sounddevice.query_devices(wanted, kind="input")["default_samplerate"])
        meter = cls(None, sample_rate, attack_ms=attack_ms, release_ms=release_ms, on_block=on_block)

        def callback(indata, frames, time_info, status) -> None:
            if status:
                log.debug("microphone: %s", status)
            meter.feed(indata[:, 0])

        try:
            stream = sounddevice.InputStream(
                device=wanted, channels=1, samplerate=sample_rate, dtype="float32",
                blocksize=max(1, sample_rate * block_ms // 1000), callback=callback,
            )
            stream.start()
        except (ValueError, sounddevice.PortAudioError) as err:
            raise CaptureError(f"microphone {name!r} cannot be opened: {str(err).splitlines()[0]}") from None
        meter._stream = stream
        log.info("microphone: %s at %d Hz", name, sample_rate)
        return meter

    def feed(self, samples: np.ndarray) -> float:
        """Take one block of mono samples (float in [-1, 1] or integer PCM); returns the level."""
        block = pcm_to_float(samples).reshape(-1)
        if block.size == 0:
            return self.level()
        block_ms = 1000.0 * block.size / self.sample_rate
        with self._lock:
            value = self._follower.update(rms_dbfs(block), block_ms)
            self._samples_seen += block.size
        if self._on_block is not None:
            self._on_block(block.copy())  # PortAudio reuses its buffer after the callback
        return value

    def level(self) -> float:
        """The smoothed voice level in dBFS (:data:`SILENCE_DBFS` before any sound)."""
        with self._lock:
            return self._follower.value

    @property
    def seconds_heard(self) -> float:
        """How much audio has been measured so far, in seconds."""
        with self._lock:
            return self._samples_seen / self.sample_rate

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._stream is not None:
            try:
                self._stream.stop()
            finally:
                self._stream.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
