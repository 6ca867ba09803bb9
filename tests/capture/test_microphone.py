"""The microphone level meter: dBFS arithmetic, following real speech, and a missing device."""

from __future__ import annotations

import numpy as np
import pytest

from vcam_me.capture.microphone import SILENCE_DBFS, Microphone, find_input, pcm_to_float, rms_dbfs
from vcam_me.errors import CaptureError

RATE = 16_000


def _sine(amplitude: float, seconds: float, hz: float = 440.0, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _feed_in_blocks(mic: Microphone, samples: np.ndarray, block: int) -> np.ndarray:
    """Feed ``samples`` block by block, as the audio callback would; the level after each."""
    return np.array([mic.feed(samples[i:i + block]) for i in range(0, len(samples) - block + 1, block)])


def test_rms_dbfs_of_known_signals() -> None:
    assert rms_dbfs(_sine(1.0, 1.0)) == pytest.approx(-3.0103, abs=0.01)
    assert rms_dbfs(_sine(0.1, 1.0)) == pytest.approx(-23.0103, abs=0.01)
    assert rms_dbfs(np.ones(100, np.float32)) == pytest.approx(0.0)
    assert rms_dbfs(np.zeros(100, np.float32)) == SILENCE_DBFS
    assert rms_dbfs(np.zeros(0, np.float32)) == SILENCE_DBFS


def test_integer_pcm_is_scaled_to_full_scale() -> None:
    pcm = np.array([-32768, 0, 16384], np.int16)
    np.testing.assert_allclose(pcm_to_float(pcm), [-1.0, 0.0, 0.5])
    assert pcm_to_float(np.array([128, 255], np.uint8))[0] == 0.0


def test_level_rises_fast_and_falls_slowly() -> None:
    mic = Microphone(None, RATE, attack_ms=15, release_ms=120)
    assert mic.level() == SILENCE_DBFS
    block = RATE // 100  # 10 ms blocks
    loud = _feed_in_blocks(mic, _sine(0.5, 0.3), block)
    # 60 ms into the tone the level has risen from digital silence to within 3 dB of the
    # tone's own level (−9 dBFS).
    assert loud[5] > -12.0
    assert loud[-1] == pytest.approx(rms_dbfs(_sine(0.5, 0.3)), abs=0.5)
    quiet = _feed_in_blocks(mic, np.zeros(RATE, np.float32), block)
    halfway = (SILENCE_DBFS + loud[-1]) / 2
    blocks_up = int(np.argmax(loud > halfway))
    blocks_down = int(np.argmax(quiet < halfway))
    assert blocks_down > 3 * blocks_up, "the level falls between words more slowly than it rises"
    assert quiet[-1] < -100.0
    assert mic.seconds_heard == pytest.approx(1.3, abs=0.011)


def test_level_follows_real_speech_and_its_pauses(spoken_speech) -> None:
    speech, rate = spoken_speech("Good morning everyone, can you hear me?")
    pause = np.zeros(rate, np.float32)  # one second of silence between two utterances
    signal = np.concatenate([pause, speech, pause, speech, pause])
    blocks = []
    mic = Microphone(None, rate, on_block=blocks.append)
    block = rate // 50  # 20 ms, the live block size
    levels = _feed_in_blocks(mic, signal, block)
    t = np.arange(len(levels)) * block / rate
    speaking = np.zeros(len(levels), bool)
    for start in (1.0, 2.0 + len(speech) / rate):
        speaking |= (t >= start + 0.2) & (t < start + len(speech) / rate - 0.2)
    silent = np.zeros(len(levels), bool)
    for start in (len(speech) / rate + 1.0, 2 * len(speech) / rate + 2.0):
        silent |= (t >= start + 0.7) & (t < start + 1.0)
    silent |= t < 1.0
    assert np.median(levels[speaking]) > -35.0, "speech reads as speech"
    assert np.max(levels[silent]) < -80.0, "the level falls back within a pause"
    assert len(blocks) == len(levels) and blocks[0].dtype == np.float32


def test_a_missing_microphone_is_a_one_line_capture_error() -> None:
    with pytest.raises(CaptureError) as info:
        Microphone.open("no-such-microphone-vcam-me-test")
    message = str(info.value)
    assert "\n" not in message
    assert "no-such-microphone-vcam-me-test" in message or "PortAudio" in message
    with pytest.raises(CaptureError, match="no-such-microphone-vcam-me-test|PortAudio"):
        find_input("no-such-microphone-vcam-me-test")  # what `vcam-me doctor` asks


def test_close_is_idempotent_and_a_context_manager() -> None:
    class Stream:
        def __init__(self) -> None:
            self.calls: list[str] = []

        def start(self) -> None:
            self.calls.append("start")

        def stop(self) -> None:
            self.calls.append("stop")

        def close(self) -> None:
            self.calls.append("close")

    stream = Stream()
    with Microphone(stream, RATE) as mic:
        pass
    mic.close()
    assert stream.calls == ["stop", "close"]
