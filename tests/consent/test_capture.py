"""Recording a consent statement: live frames + microphone blocks → one H.264/AAC MP4.

No camera or microphone here: a real video file paced in real time stands in for the
camera, and real espeak-ng speech is fed, block by block in real time, through the real
:class:`~vcam_me.capture.microphone.Microphone` seam (``feed``) into the recorder.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

from vcam_me.capture import VideoFileSource
from vcam_me.capture.microphone import Microphone
from vcam_me.consent.capture import AudioBlocks, RecordingCancelled, record_statement
from vcam_me.consent.evidence import measure_speech, read_audio
from vcam_me.errors import CaptureError, ConsentError

CLIP = Path(__file__).resolve().parents[2] / "assets" / "driving" / "pyfeat_WolfgangLanger_Pexels.mp4"


class _SpokenMicrophone:
    """Plays ``samples`` into a Microphone's ``feed`` in real time on its own thread."""

    def __init__(self, samples: np.ndarray, rate: int, on_block) -> None:
        self.microphone = Microphone(None, rate, on_block=on_block)
        self.sample_rate = rate
        self._samples, self._stop = samples, threading.Event()
        self._thread = threading.Thread(target=self._play, daemon=True)
        self._thread.start()

    def _play(self) -> None:
        block = self.sample_rate // 50
        start = time.monotonic()
        for i in range(0, len(self._samples), block):
            if self._stop.is_set():
                return
            self.microphone.feed(self._samples[i:i + block])
            time.sleep(max(0.0, start + (i + block) / self.sample_rate - time.monotonic()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.microphone.close()


@pytest.fixture
def speech(spoken_speech):
    return spoken_speech("I, Jane Doe, agree that vcam-me may show an AI-generated avatar of my face. "
                         "My one-time code is RIVER-4821.")


def test_a_statement_is_recorded_as_h264_and_aac_with_the_voice_in_it(tmp_path, speech):
    samples, rate = speech
    blocks = AudioBlocks(rate)
    out = tmp_path / "take.mp4"
    seen: list[float] = []
    with VideoFileSource.open(CLIP, pace="realtime") as camera:
        mic = _SpokenMicrophone(samples, rate, blocks.add)
        try:
            result = record_statement(camera, blocks, out, 3.0, on_progress=lambda done, total: seen.append(done))
        finally:
            mic.close()
    assert result.path == out and 2.9 <= result.duration_s < 4.0
    assert result.audio_seconds == pytest.approx(3.0, abs=0.3)
    assert result.video_frames >= 40  # a 24 fps clip for 3 s
    assert seen == sorted(seen) and seen[-1] <= 3.0
    if os.name == "posix":
        assert stat.S_IMODE(out.stat().st_mode) == 0o600
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.audio[0].codec_context.name == "aac"
        assert float(container.duration / 1e6) == pytest.approx(3.0, abs=0.3)
    voice = measure_speech(read_audio(out))
    assert voice.voiced_s > 1.5 and voice.voice_dbfs > -30


def test_an_existing_file_is_never_replaced(tmp_path, speech):
    out = tmp_path / "take.mp4"
    out.write_bytes(b"the user's own file")
    with VideoFileSource.open(CLIP, pace="fast") as camera, pytest.raises(ConsentError, match="never replaces"):
        record_statement(camera, AudioBlocks(16_000), out, 1.0)
    assert out.read_bytes() == b"the user's own file"


def test_cancelling_stops_and_leaves_no_file(tmp_path, speech):
    samples, rate = speech
    blocks, cancel = AudioBlocks(rate), threading.Event()
    out = tmp_path / "take.mp4"

    def progress(done: float, total: float) -> None:
        if done > 0.3:
            cancel.set()

    with VideoFileSource.open(CLIP, pace="realtime") as camera:
        mic = _SpokenMicrophone(samples, rate, blocks.add)
        try:
            with pytest.raises(RecordingCancelled, match="cancelled"):
                record_statement(camera, blocks, out, 5.0, on_progress=progress, cancel=cancel)
        finally:
            mic.close()
    assert not out.exists()


def test_no_sound_is_a_clear_error_and_leaves_no_file(tmp_path):
    out = tmp_path / "take.mp4"
    with VideoFileSource.open(CLIP, pace="realtime") as camera, \
            pytest.raises(ConsentError, match="the microphone gave no sound"):
        record_statement(camera, AudioBlocks(16_000), out, 0.5)
    assert not out.exists()


def test_blocks_before_the_start_are_dropped():
    blocks = AudioBlocks(8000)
    blocks.add(np.ones(100, np.float32))
    blocks.start()
    blocks.add(np.full(10, 0.5, np.float32))
    kept = blocks.stop()
    blocks.add(np.ones(100, np.float32))
    assert kept.tolist() == [0.5] * 10 and blocks.stop().size == 0


def test_no_microphone_on_this_machine_is_a_one_line_error(monkeypatch):
    import sounddevice

    def no_devices(device=None, kind=None):
        if kind is None:
            return sounddevice.DeviceList([])
        raise sounddevice.PortAudioError("Error querying device -1")

    monkeypatch.setattr(sounddevice, "query_devices", no_devices)
    assert len(sounddevice.query_devices()) == 0
    with pytest.raises(CaptureError, match=r"^no microphone found \(Error querying device -1\)") as info:
        Microphone.open(on_block=AudioBlocks(16_000).add)
    assert "\n" not in str(info.value)
