"""The spine with fake stages as seams (the real stages are tested end to end in tests/test_app.py)."""

import threading
import time

import numpy as np

from vcam_me.pipeline import LivePipeline, render_offline, track_all
from vcam_me.types import ExpressionState, FaceObservation, Frame


class FakeSource:
    """Publishes a new frame every `period_s` on a thread, newest only, like a camera."""

    def __init__(self, n, period_s=1 / 30):
        self.n, self.period_s = n, period_s
        self._latest = None
        self._cond = threading.Condition()
        self.finished = False
        self.reconnects = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        for i in range(self.n):
            time.sleep(self.period_s)
            with self._cond:
                self._latest = Frame(np.zeros((4, 4, 3), np.uint8), int(time.monotonic_ns() // 1_000_000), i)
                self._cond.notify_all()
        with self._cond:
            self.finished = True
            self._cond.notify_all()

    def wait_newer(self, after_index, timeout_s):
        with self._cond:
            self._cond.wait_for(lambda: (self._latest and self._latest.index > after_index) or self.finished, timeout_s)
            if self._latest is not None and self._latest.index > after_index:
                return self._latest
            return None


class FakeTracker:
    def __init__(self):
        self.seen = []

    def track(self, frame):
        self.seen.append(frame.index)
        return FaceObservation(frame.timestamp_ms, frame.size, np.zeros((478, 3), np.float32), np.zeros(52, np.float32), np.eye(4, dtype=np.float32))


class FakeExpression:
    def __init__(self):
        self.last = None

    def update(self, obs):
        self.last = obs

    def state_at(self, t):
        s = ExpressionState.neutral(t)
        if self.last is None:
            return s
        return ExpressionState(t, s.au, s.gaze, s.head_pose, self.last.timestamp_ms, True)


class FakeRenderer:
    def render(self, state):
        return np.full((8, 8, 3), state.timestamp_ms % 251, np.uint8)


class FakeStamper:
    def __init__(self):
        self.banners = 0

    def restart_banner(self, now):
        self.banners += 1

    def stamp(self, frame):
        return frame


class ListSink:
    def __init__(self):
        self.frames = []

    def send(self, frame):
        self.frames.append(frame)

    def close(self):
        pass


def test_live_pipeline_renders_on_output_clock_and_measures_latency():
    source, tracker, sink = FakeSource(20), FakeTracker(), ListSink()
    pipe = LivePipeline(source, tracker, FakeExpression(), FakeRenderer(), FakeStamper(), sink, fps=60)
    stats = pipe.run(duration_s=0.5)
    assert 20 <= stats.output_frames <= 32  # ~60 fps over 0.5 s
    assert len(sink.frames) == stats.output_frames
    ts = [f.timestamp_ms for f in sink.frames]
    assert ts == sorted(ts)
    assert tracker.seen == sorted(tracker.seen) and len(tracker.seen) >= 5
    assert stats.latency_ms and min(stats.latency_ms) >= 0
    summary = stats.summary(60)
    assert summary["output_frames"] == stats.output_frames and summary["cpu_cores"] is not None


def test_live_pipeline_ends_with_a_finished_source():
    pipe = LivePipeline(FakeSource(3, 0.01), FakeTracker(), FakeExpression(), FakeRenderer(), FakeStamper(), ListSink(), fps=60)
    t0 = time.monotonic()
    pipe.run(duration_s=5)
    assert time.monotonic() - t0 < 2


def test_tracking_errors_reach_the_caller():
    class Broken(FakeTracker):
        def track(self, frame):
            raise RuntimeError("tracker exploded")

    pipe = LivePipeline(FakeSource(5), Broken(), FakeExpression(), FakeRenderer(), FakeStamper(), ListSink(), fps=60)
    try:
        pipe.run(duration_s=2)
    except RuntimeError as err:
        assert "exploded" in str(err)
    else:
        raise AssertionError("error was swallowed")


def test_offline_render_follows_the_video_timeline():
    frames = [Frame(np.zeros((4, 4, 3), np.uint8), int(round(i * 1000 / 30)), i) for i in range(30)]  # 1 s at 30 fps
    sink, tracker = ListSink(), FakeTracker()
    observations = track_all(frames, tracker)
    assert len(observations) == 30 and tracker.seen == list(range(30))
    written = render_offline(observations, FakeExpression(), FakeRenderer(), FakeStamper(), sink, fps=60)
    # frame i of the output is at t = i / 60 s, up to the last driving frame (967 ms)
    assert [f.timestamp_ms for f in sink.frames] == [int(round(i * 1000 / 60)) for i in range(len(sink.frames))]
    assert sink.frames[-1].timestamp_ms <= 967 and written == len(sink.frames) == 59


def test_live_stream_tracker_results_come_back_through_the_callback():
    class AsyncTracker(FakeTracker):
        mode = "live_stream"

        def __init__(self):
            super().__init__()
            self.pipeline = None

        def submit(self, frame):  # MediaPipe would answer later on its own thread
            threading.Timer(0.005, lambda: self.pipeline.on_observation(self.track(frame))).start()

    tracker, sink = AsyncTracker(), ListSink()
    pipe = LivePipeline(FakeSource(12), tracker, FakeExpression(), FakeRenderer(), FakeStamper(), sink, fps=60)
    tracker.pipeline = pipe
    stats = pipe.run(duration_s=0.6)
    assert stats.tracked_frames >= 8 and stats.latency_ms


def test_stream_stats_stay_bounded_on_long_calls():
    from vcam_me.pipeline import STATS_WINDOW, StreamStats

    stats = StreamStats()
    for i in range(STATS_WINDOW + 500):
        stats.render_ms.append(float(i))
    assert len(stats.render_ms) == STATS_WINDOW and stats.render_ms[0] == 500.0
    stats.wall_s, stats.output_frames = 1.0, 1
    assert stats.summary(60)["render_ms_median"] > 500


def test_set_renderer_swaps_the_avatar_from_another_thread_without_touching_the_sink():
    class Solid:
        def __init__(self, value):
            self.value = value

        def render(self, state):
            return np.full((8, 8, 3), self.value, np.uint8)

    first_stamper, second_stamper, sink = FakeStamper(), FakeStamper(), ListSink()
    pipe = LivePipeline(FakeSource(300), FakeTracker(), FakeExpression(), Solid(10), first_stamper, sink, fps=60)
    runner = threading.Thread(target=pipe.run, kwargs={"duration_s": 5.0})
    runner.start()
    while len(sink.frames) < 5:
        time.sleep(0.01)
    pipe.set_renderer(Solid(200), second_stamper)
    while not sink.frames or sink.frames[-1].image[0, 0, 0] != 200:
        time.sleep(0.01)
    pipe.stop()
    runner.join()
    values = [int(f.image[0, 0, 0]) for f in sink.frames]
    switched = values.index(200)
    assert set(values[:switched]) == {10} and set(values[switched:]) == {200}  # one clean cut, no mix
    assert pipe.renderer.value == 200 and pipe.stamper is second_stamper
    assert second_stamper.banners == 1  # the new avatar is announced with the start banner


def test_request_stop_ends_the_loop_after_the_current_frame():
    """What a stop signal does to a stream: a plain flag, read once a frame; run() returns normally."""
    sink = ListSink()
    holder = {}

    def on_frame(frame, state):
        if len(sink.frames) == 5:
            holder["pipe"].request_stop()

    pipe = holder["pipe"] = LivePipeline(FakeSource(300), FakeTracker(), FakeExpression(), FakeRenderer(), FakeStamper(),
                                         sink, fps=60, on_frame=on_frame)
    t0 = time.monotonic()
    stats = pipe.run(duration_s=5)
    assert time.monotonic() - t0 < 2
    assert pipe.stop_requested
    assert stats.output_frames == len(sink.frames) == 5
