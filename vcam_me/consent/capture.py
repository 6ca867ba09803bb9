"""Recording a consent statement: camera frames and microphone audio into one MP4.

The person reads the statement (:func:`~vcam_me.consent.evidence.consent_statement`) while
:func:`record_statement` takes frames from a live source and audio blocks from the
microphone for a fixed time, then writes both into one MP4 (H.264 video, AAC audio) through
FFmpeg's libraries (PyAV). The checks of :mod:`vcam_me.consent.evidence` then run on that
file exactly as on a recording made elsewhere.

What goes in is duck-typed, so this module imports no other stage:

* ``frames``: the live-source interface of the capture stage (``wait_newer(after_index,
  timeout_s) -> Frame | None`` and ``finished``): a camera, or a video file paced in real time;
* ``audio``: an :class:`AudioBlocks` that the microphone's ``on_block`` callback fills.

Video and audio share one clock: frame ``timestamp_ms`` and the moment :class:`AudioBlocks`
starts keeping blocks are both on :func:`vcam_me.clock.now_ms`, so the frames are placed at
``timestamp_ms - start`` and the audio from 0. A UI (the setup wizard) passes ``on_progress``
and a ``cancel`` event; the command line prints a progress bar.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from vcam_me.clock import now_ms
from vcam_me.consent.keys import write_private_file
from vcam_me.errors import ConsentError

VIDEO_CODEC = "libx264"
AUDIO_CODEC = "aac"
_FRAME_WAIT_S = 0.5


class RecordingCancelled(ConsentError):
    """The person or the UI stopped the consent recording before it was complete."""


class AudioBlocks:
    """Microphone blocks kept between :meth:`start` and :meth:`stop`; thread-safe.

    Pass :meth:`add` as the microphone's ``on_block`` callback (it runs on the audio
    thread). Blocks that arrive before :meth:`start` are dropped, so the audio begins when
    the recording does.
    """

    def __init__(self, sample_rate: int) -> None:
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be > 0, got {sample_rate}")
        self.sample_rate = int(sample_rate)
        self._lock = threading.Lock()
        self._blocks: list[np.ndarray] = []
        self._keeping = False

    def add(self, block: np.ndarray) -> None:
        """One block of mono float samples in [-1, 1]."""
        with self._lock:
            if self._keeping:
                self._blocks.append(np.asarray(block, np.float32).reshape(-1).copy())

    def start(self) -> None:
        with self._lock:
            self._blocks.clear()
            self._keeping = True

    def stop(self) -> np.ndarray:
        """Stop keeping blocks; all samples kept, ``(N,) float32``."""
        with self._lock:
            self._keeping = False
            blocks, self._blocks = self._blocks, []
        return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


@dataclass(frozen=True)
class RecordedStatement:
    """What :func:`record_statement` wrote. ``duration_s``: wall time recorded."""

    path: Path
    video_frames: int
    audio_seconds: float
    duration_s: float


def record_statement(
    frames,
    audio: AudioBlocks,
    out: Path,
    seconds: float,
    *,
    on_progress: Callable[[float, float], None] | None = None,
    cancel: threading.Event | None = None,
    clock: Callable[[], int] = now_ms,
) -> RecordedStatement:
    """Record ``seconds`` of ``frames`` and ``audio`` into the new MP4 file ``out`` (0600).

    ``on_progress(elapsed_s, seconds)`` is called after each frame; setting ``cancel`` stops
    the recording, deletes ``out`` and raises :class:`RecordingCancelled`. ``out`` must not
    exist: it is created, never replaced.

    Raises:
        ConsentError: the camera gave no frame, or the microphone no sound.
    """
    if seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    out = Path(out)
    try:
        write_private_file(out, b"")
    except FileExistsError:
        raise ConsentError(f"{out} exists already; a consent recording never replaces a file") from None
    try:
        result = _record(frames, audio, out, seconds, on_progress, cancel, clock)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return result


def _record(frames, audio, out, seconds, on_progress, cancel, clock) -> RecordedStatement:
    import av

    limit_ms = round(seconds * 1000)
    with av.open(str(out), mode="w", format="mp4") as container:
        video = sound = None
        written = 0
        last_index = -1
        last_pts = -1
        start_ms = clock()
        audio.start()
        try:
            while True:
                elapsed = clock() - start_ms
                if elapsed >= limit_ms:
                    break
                if cancel is not None and cancel.is_set():
                    raise RecordingCancelled("the consent recording was cancelled")
                frame = frames.wait_newer(last_index, _FRAME_WAIT_S)
                if frame is None:
                    if getattr(frames, "finished", False):
                        break
                    continue
                last_index = frame.index
                pts = frame.timestamp_ms - start_ms
                if pts <= last_pts or pts >= limit_ms:  # before the start, or a repeat
                    continue
                if video is None:  # both streams before the first packet: the header is written then
                    video = _add_video_stream(container, frame.image)
                    sound = container.add_stream(AUDIO_CODEC, rate=audio.sample_rate, layout="mono")
                _encode_video(container, video, frame.image, max(pts, 0))
                last_pts = pts
                written += 1
                if on_progress is not None:
                    on_progress(min(elapsed / 1000.0, seconds), seconds)
        finally:
            samples = audio.stop()
        duration_s = (clock() - start_ms) / 1000.0
        if video is None:
            raise ConsentError("the camera gave no picture during the consent recording")
        if samples.size == 0:
            raise ConsentError("the microphone gave no sound during the consent recording")
        for packet in video.encode(None):
            container.mux(packet)
        _encode_audio(container, sound, samples, audio.sample_rate)
    return RecordedStatement(out, written, round(samples.size / audio.sample_rate, 3), round(duration_s, 3))


def _add_video_stream(container, image: np.ndarray):
    height, width = image.shape[:2]
    stream = container.add_stream(VIDEO_CODEC, rate=30)
    stream.width, stream.height = width - width % 2, height - height % 2  # yuv420p needs even sizes
    stream.pix_fmt = "yuv420p"
    stream.time_base = Fraction(1, 1000)
    stream.codec_context.time_base = Fraction(1, 1000)
    stream.options = {"preset": "veryfast", "crf": "20"}
    return stream


def _encode_video(container, stream, image: np.ndarray, pts_ms: int) -> None:
    import av

    rgb = np.ascontiguousarray(image[: stream.height, : stream.width])
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
    frame.pts = pts_ms
    frame.time_base = Fraction(1, 1000)
    for packet in stream.encode(frame):
        container.mux(packet)


def _encode_audio(container, stream, samples: np.ndarray, sample_rate: int) -> None:
    import av

    pcm = np.clip(samples, -1.0, 1.0).astype(np.float32)
    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = sample_rate
    frame.pts = 0
    frame.time_base = Fraction(1, sample_rate)
    for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
