"""The real-time spine: capture → tracking → expression → avatar → label → sinks.

Two threads and two clocks (design.md §2):
  * the *tracking thread* takes the newest camera frame (never a queue), tracks it and
    hands the observation to the expression stage, at the camera's rate;
  * the *render loop* runs on the output clock (60 fps by default): it asks the expression
    stage for the state at that instant, renders, stamps the label and hands the frame to
    the sinks.

Offline rendering (:func:`render_offline`) uses the same stages on one thread, driven by the
video's own timeline instead of the wall clock.

This module knows the stages only through the small protocols below; :mod:`vcam_me.app`
builds the real ones and wires them here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Protocol

import numpy as np

from vcam_me.clock import Pacer, now_ms
from vcam_me.types import ExpressionState, FaceObservation, Frame, RenderedFrame

log = logging.getLogger(__name__)


class LiveSource(Protocol):
    """A camera, or a video file paced in real time, read from a background thread."""

    def wait_newer(self, after_index: int, timeout_s: float) -> Frame | None: ...

    @property
    def finished(self) -> bool: ...

    @property
    def reconnects(self) -> int: ...


class Tracker(Protocol):
    def track(self, frame: Frame) -> FaceObservation: ...


class Expression(Protocol):
    def update(self, obs: FaceObservation) -> None: ...

    def state_at(self, t_ms: int) -> ExpressionState: ...


class Renderer(Protocol):
    def render(self, state: ExpressionState) -> np.ndarray: ...


class Stamper(Protocol):
    def stamp(self, frame: RenderedFrame) -> RenderedFrame: ...

    def restart_banner(self, now_ms: int) -> None: ...


class Guard(Protocol):
    """Consent, re-checked: rendering stops the moment it is no longer allowed."""

    def allowed(self, now_ms: int) -> bool: ...

    @property
    def reason(self) -> str: ...


def _refuse(guard: Guard):
    from vcam_me.errors import ConsentError

    return ConsentError(f"stopped: {guard.reason}")


class Sink(Protocol):
    def send(self, frame: RenderedFrame) -> None: ...

    def close(self) -> None: ...


#: Samples kept per timing series (5 minutes of 60 fps output).
STATS_WINDOW = 60 * 60 * 5


@dataclass
class StreamStats:
    """Per-frame timings of a run (all in ms), kept for benchmarks and the tray's status line.

    Each series keeps only its newest :data:`STATS_WINDOW` samples, so a call that runs for
    hours does not grow the process: percentiles cover the last five minutes at 60 fps.
    """

    render_ms: deque = field(default_factory=lambda: deque(maxlen=STATS_WINDOW))
    label_ms: deque = field(default_factory=lambda: deque(maxlen=STATS_WINDOW))
    sink_ms: deque = field(default_factory=lambda: deque(maxlen=STATS_WINDOW))
    #: per camera frame: its capture → the first output frame that shows it, handed to the sink
    latency_ms: deque = field(default_factory=lambda: deque(maxlen=STATS_WINDOW))
    #: per output frame: age of the newest camera frame it shows (60 fps output from a 30 fps
    #: camera shows each camera frame twice, the second time one output period older)
    frame_age_ms: deque = field(default_factory=lambda: deque(maxlen=STATS_WINDOW))
    frame_interval_ms: deque = field(default_factory=lambda: deque(maxlen=STATS_WINDOW))
    tracking_ms: deque = field(default_factory=lambda: deque(maxlen=STATS_WINDOW))
    tracked_frames: int = 0
    frames_with_face: int = 0
    output_frames: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0

    def summary(self, fps: float) -> dict:
        def pct(values, q):
            return round(float(np.percentile(values, q)), 2) if values else None

        period = 1000.0 / fps
        intervals = np.asarray(self.frame_interval_ms)
        return {
            "output_frames": self.output_frames,
            "wall_s": round(self.wall_s, 2),
            "sustained_fps": round(self.output_frames / self.wall_s, 2) if self.wall_s else None,
            "frames_later_than_2_periods": int(np.sum(intervals > 2 * period)) if intervals.size else 0,
            "max_frame_interval_ms": round(float(intervals.max()), 2) if intervals.size else None,
            "latency_ms_p50": pct(self.latency_ms, 50),
            "latency_ms_p99": pct(self.latency_ms, 99),
            "frame_age_ms_p50": pct(self.frame_age_ms, 50),
            "render_ms_median": pct(self.render_ms, 50),
            "render_ms_p99": pct(self.render_ms, 99),
            "label_ms_median": pct(self.label_ms, 50),
            "sink_ms_median": pct(self.sink_ms, 50),
            "tracking_ms_median": pct(self.tracking_ms, 50),
            "tracked_frames": self.tracked_frames,
            "frames_with_face": self.frames_with_face,
            "cpu_cores": round(self.cpu_s / self.wall_s, 3) if self.wall_s else None,
        }


def _ms_since(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


class LivePipeline:
    """Runs the tracking thread and the render loop until stopped, the source ends, or a duration."""

    def __init__(
        self,
        source: LiveSource,
        tracker: Tracker,
        expression: Expression,
        renderer: Renderer,
        stamper: Stamper,
        sink: Sink,
        fps: float,
        *,
        on_frame: Callable[[RenderedFrame, ExpressionState], None] | None = None,
        guard: Guard | None = None,
    ) -> None:
        self.source = source
        self.guard = guard
        self.tracker = tracker
        self.expression = expression
        self.renderer = renderer
        self.stamper = stamper
        self.sink = sink
        self.fps = fps
        self.on_frame = on_frame
        self.stats = StreamStats()
        self._stop = threading.Event()
        #: Set by :meth:`request_stop`; a plain attribute, read by the render loop every frame.
        self.stop_requested = False
        self._swap_lock = threading.Lock()
        self._pending_swap: tuple[Renderer, Stamper | None, Guard | None] | None = None
        self._tracking_error: BaseException | None = None
        self._sample_arrived_ns = 0  # when the newest observation reached the expression stage

    def stop(self) -> None:
        self._stop.set()

    def request_stop(self) -> None:
        """Ask the render loop to end after the frame it is on, and :meth:`run` to return
        normally. Unlike :meth:`stop` this takes no lock, so a signal handler may call it
        whatever the interrupted thread was doing (an ``Event.set`` there could wait on a lock
        that very thread holds)."""
        self.stop_requested = True

    def set_renderer(self, renderer: Renderer, stamper: Stamper | None = None, guard: Guard | None = None) -> None:
        """Show another avatar from the next tick on, without stopping the stream or its sinks.

        Safe to call from any thread. Build ``renderer`` (and the ``stamper`` and ``guard`` of
        the new avatar's consent) beforehand, off the render thread: the swap itself is only an
        assignment at the start of a tick, so no frame is late for it.
        """
        with self._swap_lock:
            self._pending_swap = (renderer, stamper, guard)

    def _apply_pending_swap(self, tick_ms: int) -> None:
        with self._swap_lock:
            swap, self._pending_swap = self._pending_swap, None
        if swap is None:
            return
        renderer, stamper, guard = swap
        self.renderer = renderer
        if guard is not None:
            self.guard = guard
        if stamper is not None:
            self.stamper = stamper
            self.stamper.restart_banner(tick_ms)  # a new avatar is announced like a new stream

    # -- tracking thread -------------------------------------------------------------------
    def on_observation(self, obs: FaceObservation) -> None:
        """Hand one tracker result to the expression stage.

        Called on the tracking thread in ``video`` mode, and by MediaPipe's own thread in
        ``live_stream`` mode (build the tracker with ``on_result=pipeline.on_observation``).
        """
        if getattr(self.tracker, "mode", "video") == "live_stream":
            self.stats.tracking_ms.append(max(0.0, (time.monotonic_ns() // 1000 - obs.timestamp_ms * 1000) / 1000))
        self.stats.tracked_frames += 1
        self.stats.frames_with_face += obs.has_face
        self.expression.update(obs)
        self._sample_arrived_ns = time.monotonic_ns()

    def _track_loop(self) -> None:
        last_index = -1
        try:
            while not self._stop.is_set():
                frame = self.source.wait_newer(last_index, 0.25)
                if frame is None:
                    if self.source.finished:
                        break
                    continue
                last_index = frame.index
                if getattr(self.tracker, "mode", "video") == "live_stream":
                    self.tracker.submit(frame)  # the result comes back through on_observation
                    continue
                t0 = time.perf_counter()
                obs = self.tracker.track(frame)
                self.stats.tracking_ms.append(_ms_since(t0))
                self.on_observation(obs)
        except BaseException as err:  # reported by run() on the main thread
            self._tracking_error = err
            self._stop.set()

    # -- render loop -----------------------------------------------------------------------
    #: The render tick should come this long after a new camera sample is ready.
    PHASE_MARGIN_NS = 1_500_000
    #: Fraction of the phase error corrected per camera sample (a slow, steady loop).
    PHASE_GAIN = 0.2

    def _phase_lock(self, pacer: Pacer, seen_arrival: int) -> int:
        """Nudge the output clock so a tick falls just after each camera sample is ready.

        Without this a sample waits for the next tick, on average half an output period
        (8 ms at 60 fps) of pure latency. When the camera rate divides the output rate
        (30 → 60 fps) the loop settles; otherwise it keeps the wait small on average. Each
        nudge is bounded, so frame intervals stay within a quarter period of nominal.
        """
        arrived = self._sample_arrived_ns
        if arrived == seen_arrival:
            return seen_arrival
        next_tick = pacer.next_tick_ns()
        if next_tick is not None:
            period = pacer.period_ns
            # where, within one output period after the sample, the next tick falls
            offset = (next_tick - arrived) % period
            error = offset - self.PHASE_MARGIN_NS
            if error > period // 2:
                error -= period
            pacer.shift(-int(self.PHASE_GAIN * error))
        return arrived

    def run(self, duration_s: float | None = None) -> StreamStats:
        import psutil

        proc = psutil.Process()
        tracking = threading.Thread(target=self._track_loop, name="vcam-tracking", daemon=True)
        tracking.start()
        pacer = Pacer(self.fps)
        reconnects = self.source.reconnects
        face_lost_since: int | None = None
        cpu0 = proc.cpu_times()
        wall0 = time.perf_counter()
        self.stamper.restart_banner(now_ms())
        last_sent: float | None = None
        last_source: int | None = None
        seen_arrival = 0
        try:
            while not self._stop.is_set() and not self.stop_requested:
                if duration_s is not None and time.perf_counter() - wall0 >= duration_s:
                    break
                if not tracking.is_alive() and self.source.finished:
                    break
                tick = pacer.wait()
                self._apply_pending_swap(tick)
                if self.guard is not None and not self.guard.allowed(tick):
                    raise _refuse(self.guard)  # revoked or expired: not one more frame
                if self.source.reconnects != reconnects:  # camera came back: show the banner again
                    reconnects = self.source.reconnects
                    self.stamper.restart_banner(tick)
                t0 = time.perf_counter()
                state = self.expression.state_at(tick)
                image = self.renderer.render(state)
                t1 = time.perf_counter()
                frame = self.stamper.stamp(RenderedFrame(image, tick, state.source_timestamp_ms))
                t2 = time.perf_counter()
                handed = now_ms()
                self.sink.send(frame)
                t3 = time.perf_counter()
                st = self.stats
                st.render_ms.append((t1 - t0) * 1000)
                st.label_ms.append((t2 - t1) * 1000)
                st.sink_ms.append((t3 - t2) * 1000)
                if state.source_timestamp_ms is not None and state.face_present:
                    age = handed - state.source_timestamp_ms
                    st.frame_age_ms.append(age)
                    if state.source_timestamp_ms != last_source:
                        # latency is per camera frame: capture → the first output frame showing it
                        st.latency_ms.append(age)
                        last_source = state.source_timestamp_ms
                if last_sent is not None:
                    st.frame_interval_ms.append((t3 - last_sent) * 1000)
                last_sent = t3
                st.output_frames += 1
                # Re-show the banner when the face comes back after a long absence.
                if not state.face_present:
                    face_lost_since = face_lost_since if face_lost_since is not None else tick
                elif face_lost_since is not None:
                    if tick - face_lost_since > 5000:
                        self.stamper.restart_banner(tick)
                    face_lost_since = None
                if self.on_frame is not None:
                    self.on_frame(frame, state)
                seen_arrival = self._phase_lock(pacer, seen_arrival)
        finally:
            self._stop.set()
            tracking.join(timeout=2.0)
            cpu1 = proc.cpu_times()
            self.stats.wall_s = time.perf_counter() - wall0
            self.stats.cpu_s = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
        if self._tracking_error is not None:
            raise self._tracking_error
        return self.stats


def on_timeline(timed_frames: Iterable[tuple[Frame, int]]) -> Iterator[Frame]:
    """Frames re-stamped with their presentation time in the file (ms from its start), so an
    offline render follows the video's own timeline instead of the wall clock."""
    for frame, pts_ms in timed_frames:
        yield Frame(frame.image, int(pts_ms), frame.index)


def track_all(frames: Iterable[Frame], tracker: Tracker, *, progress: Callable[[int], None] | None = None) -> list[FaceObservation]:
    """Track every frame of a recording (offline): one observation per frame, in order."""
    observations = []
    for frame in frames:
        observations.append(tracker.track(frame))
        if progress is not None:
            progress(len(observations))
    return observations


def render_offline(
    observations: Iterable[FaceObservation],
    expression: Expression,
    renderer: Renderer,
    stamper: Stamper,
    sink: Sink,
    fps: float,
    *,
    progress: Callable[[int], None] | None = None,
    guard: Guard | None = None,
) -> int:
    """Render output frame i at t = i / fps on the driving video's own timeline; returns the count.

    ``observations`` come from the driving video in order, with ``timestamp_ms`` = their
    presentation time (from 0). Each output instant is drawn once the driving frames up to
    one frame past it are known, so the expression stage can interpolate between the two
    around it (set its interpolation delay to 0 for this).
    """
    it: Iterator[FaceObservation] = iter(observations)
    last_ts: int | None = None
    exhausted = False
    written = 0
    stamper.restart_banner(0)

    def feed() -> bool:
        nonlocal last_ts
        obs = next(it, None)
        if obs is None:
            return False
        expression.update(obs)
        last_ts = obs.timestamp_ms
        return True

    while True:
        t = int(round(written * 1000.0 / fps))
        while not exhausted and (last_ts is None or last_ts < t):
            exhausted = not feed()
        if last_ts is None or (exhausted and t > last_ts):
            break
        if guard is not None and not guard.allowed(time.monotonic_ns() // 1_000_000):
            raise _refuse(guard)
        state = expression.state_at(t)
        sink.send(stamper.stamp(RenderedFrame(renderer.render(state), t, state.source_timestamp_ms)))
        written += 1
        if progress is not None:
            progress(written)
    return written
