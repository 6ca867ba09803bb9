"""The engine: injection rule (additive, relative on active AUs, saturating at 1), conflicts,
held expressions, calibrated units, seeding and threads."""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest

from vcam_me.config import MicroOptions
from vcam_me.errors import MicroExpressionError
from vcam_me.expression.micro import MicroEngine, MicroLibrary
from vcam_me.expression.micro.library import au_number
from vcam_me.types import AU_CHANNELS, AU_INDEX

N = len(AU_CHANNELS)
FRAME_60 = 1000.0 / 60


@pytest.fixture(scope="module")
def library() -> MicroLibrary:
    return MicroLibrary.load()


def _numbers(event) -> frozenset[int]:
    return frozenset(au_number(ch) for ch in event.aus)


def _zeros() -> np.ndarray:
    return np.zeros(N, np.float32)


def test_on_a_neutral_face_the_apex_is_peak_times_relative_peak(library):
    engine = MicroEngine(library, seed=1)
    e = engine.trigger("brow_raise", 1000.0, side="both", peak=0.3)
    assert e.aus == {"AU1": 0.7, "AU2_L": 1.0, "AU2_R": 1.0}
    inj = engine.injected(e.apex_ms, _zeros())
    assert inj[AU_INDEX["AU2_L"]] == pytest.approx(0.3)
    assert inj[AU_INDEX["AU1"]] == pytest.approx(0.21)
    assert np.count_nonzero(inj) == 3  # nothing else moves
    assert not engine.injected(e.start_ms, _zeros()).any() and not engine.injected(e.end_ms, _zeros()).any()


def test_one_side_moves_only_that_side(library):
    engine = MicroEngine(library, seed=1)
    e = engine.trigger("suppressed_smile", 0.0, side="left", peak=0.25)
    assert e.side == "left" and set(e.aus) >= {"AU12_L"} and not any(ch.endswith("_R") for ch in e.aus)
    inj = engine.injected(e.apex_ms, _zeros())
    assert inj[AU_INDEX["AU12_L"]] > 0 and inj[AU_INDEX["AU12_R"]] == 0


def test_a_pattern_without_sides_is_drawn_on_both(library):
    engine = MicroEngine(library, seed=1)
    sides = set()
    for k in range(40):  # lip suppression's chin-raiser variant has no sides; its AU15 variants do
        e = engine.trigger("lip_suppression", 1000.0 * k, side="left")
        sided = any(ch.endswith(("_L", "_R")) for ch in e.aus)
        assert e.side == ("left" if sided else "both")
        sides.add(e.side)
    assert sides == {"left", "both"}


def test_increments_on_an_active_au_are_relative_and_never_pass_1(library):
    engine = MicroEngine(library, seed=2)
    e = engine.trigger("brow_lowerer", 0.0, side="both", peak=0.4)
    i = AU_INDEX["AU4_L"]
    for x in (0.0, 0.25, 0.5, 0.9, 1.0):
        tracked = _zeros()
        tracked[i] = x
        inj = engine.injected(e.apex_ms, tracked)
        assert inj[i] == pytest.approx(0.4 * (1 - x))  # the same fraction of the headroom left
        assert tracked[i] + inj[i] <= 1.0


def test_the_rule_holds_for_any_mixture_of_events_and_tracked_values(library):
    rng = np.random.default_rng(0)
    engine = MicroEngine(library, seed=3)
    t = 0.0
    for name in library.names:  # every type, each starting while others still run
        engine.trigger(name, t, peak=1.0)
        t += 40.0
    for _ in range(200):
        tracked = rng.uniform(0, 1, N).astype(np.float32)
        now = rng.uniform(0, t + 500)
        inj = engine.injected(now, tracked)
        assert np.all(inj >= 0) and np.all(tracked + inj <= 1.0 + 1e-6)


def test_the_envelope_is_drawn_frame_by_frame_on_the_render_clock(library):
    engine = MicroEngine(library, seed=4)
    e = engine.trigger("brow_lowerer", 1000.0, side="both", peak=0.3)
    frames = np.round(np.arange(50, 100) * FRAME_60)
    values = np.array([engine.injected(t, _zeros())[AU_INDEX["AU4_L"]] for t in frames])
    rise = values[(frames > e.start_ms) & (frames <= e.apex_ms)]
    fall = values[(frames > e.apex_ms) & (frames < e.end_ms)]
    # every 60 fps frame shows a new value (not the 30 fps camera's steps), up and then down
    assert len(rise) >= int((e.apex_ms - e.start_ms) // FRAME_60) and np.all(np.diff(rise) > 0)
    assert len(fall) >= int((e.end_ms - e.apex_ms) // FRAME_60) - 1 and np.all(np.diff(fall) < 0)
    assert values.max() == pytest.approx(0.3, abs=0.01)


def test_conflicting_events_are_refused(library):
    engine = MicroEngine(library, seed=5)
    smile = engine.trigger("suppressed_smile", 1000.0, side="left")
    assert engine.trigger("duchenne_smile", 1100.0) is None  # shares AU12 (other side or not)
    assert engine.trigger("suppressed_smile", 1100.0, side="right") is None
    raise_ = engine.trigger("brow_raise", 1100.0)
    assert raise_ is not None  # brows and mouth: no conflict
    assert engine.trigger("brow_lowerer", 1150.0) is None  # AU4 against a running AU2: antagonists
    assert engine.trigger("duchenne_smile", smile.end_ms + 1) is not None  # once it is over
    assert [e.type for e in engine.events] == ["suppressed_smile", "brow_raise", "duchenne_smile"]


def test_a_scheduled_event_conflicts_with_one_that_would_overlap_it(library):
    engine = MicroEngine(library, seed=6)
    later = engine.trigger("lid_tightener", 5000.0)
    assert engine.trigger("lid_tightener", later.start_ms - 100.0) is None  # would still run at 5000


def test_held_expression_rises_stays_falls_and_is_logged_once(library):
    engine = MicroEngine(library, MicroOptions(held_intensity="C"), seed=7)
    e = engine.hold("brow_raise", 1000.0, side="both")
    assert e.held and e.end_ms is None and 0.3 <= e.peak <= 0.5
    i = AU_INDEX["AU2_L"]
    assert engine.injected(1000.0 + library.held.onset_ms, _zeros())[i] == pytest.approx(e.peak)
    assert engine.injected(9000.0, _zeros())[i] == pytest.approx(e.peak)  # kept while held
    assert engine.hold("brow_raise", 9000.0) is None  # already held
    assert engine.trigger("brow_flash", 9000.0) is None  # conflicts with the held AU2
    done = engine.release("brow_raise", 10_000.0)
    assert done.end_ms == pytest.approx(10_000.0 + library.held.offset_ms) and done.apex_ms == e.apex_ms
    fall = [engine.injected(10_000.0 + k * FRAME_60, _zeros())[i] for k in range(40)]
    assert all(b < a for a, b in itertools.pairwise(fall) if a > 0) and fall[-1] == 0.0
    assert engine.events == (done,)
    assert engine.release("brow_raise", 11_000.0) is None


def test_release_all_closes_every_held_expression(library):
    engine = MicroEngine(library, seed=8)
    engine.hold("brow_raise", 0.0)
    engine.hold("suppressed_smile", 0.0)
    assert len(engine.release_all(100.0)) == 2
    assert all(e.end_ms is not None for e in engine.events)


def test_peaks_are_in_units_of_the_calibrated_range(library):
    engine = MicroEngine(library, MicroOptions(intensity="A-B"), seed=9)
    peaks = [engine.trigger("brow_lowerer", 1000.0 * k).peak for k in range(300)]
    assert 0.10 <= min(peaks) and max(peaks) <= 0.30
    strong = MicroEngine(library, MicroOptions(intensity="D"), seed=9)
    assert 0.5 <= strong.trigger("brow_lowerer", 0.0).peak <= 0.75
    # a user whose full brow lowering is half the tracked scale gets half the increment
    engine = MicroEngine(library, seed=9, calibration_range=np.full(N, 0.5, np.float32))
    e = engine.trigger("brow_lowerer", 0.0, side="both", peak=0.4)
    assert engine.injected(e.apex_ms, _zeros())[AU_INDEX["AU4_L"]] == pytest.approx(0.2)


def test_same_seed_same_events(library):
    def run(seed):
        engine = MicroEngine(library, seed=seed)
        return [engine.trigger(name, 1000.0 * k) for k, name in enumerate(library.names * 3)]

    assert run(42) == run(42)
    assert run(42) != run(43)
    assert MicroEngine(library).seed != MicroEngine(library).seed  # "random": a fresh, recorded seed


def test_misuse_is_a_clear_error(library):
    engine = MicroEngine(library, seed=1)
    with pytest.raises(MicroExpressionError, match="unknown micro-expression type"):
        engine.trigger("wink", 0.0)
    with pytest.raises(MicroExpressionError, match="side 'up'"):
        engine.trigger("brow_flash", 0.0, side="up")
    with pytest.raises(MicroExpressionError, match="peak 1.5"):
        engine.trigger("brow_flash", 0.0, peak=1.5)
    with pytest.raises(MicroExpressionError, match="source 'robot'"):
        engine.trigger("brow_flash", 0.0, source="robot")
    with pytest.raises(ValueError):
        engine.set_calibration_range(np.ones(3))


def test_hotkeys_may_trigger_from_another_thread_while_frames_render(library):
    engine = MicroEngine(library, seed=10)
    stop = threading.Event()
    errors = []

    def hotkeys():
        k = 0
        while not stop.is_set() and k < 2000:
            try:
                engine.trigger(library.names[k % len(library.names)], float(k) * 7.0, source="hotkey")
            except Exception as err:  # noqa: BLE001 - any error is the finding
                errors.append(err)
            k += 1

    thread = threading.Thread(target=hotkeys)
    thread.start()
    for k in range(3000):
        inj = engine.injected(k * 5.0, _zeros())
        assert np.all(inj <= 1.0)
    stop.set()
    thread.join()
    assert not errors
    events = engine.events
    for a in events:  # and still never two conflicting at once
        for b in events:
            if a is not b and a.start_ms < b.end_ms and b.start_ms < a.end_ms:
                assert not library.conflicting(_numbers(a), _numbers(b))


def test_an_event_started_ahead_of_the_render_clock_leaves_running_ones_alone(library):
    engine = MicroEngine(library, seed=11)
    now = engine.trigger("brow_lowerer", 1000.0, side="both", peak=0.3)
    mid = (now.start_ms + now.apex_ms) / 2
    before = engine.injected(mid, _zeros())[AU_INDEX["AU4_L"]]
    assert before > 0
    assert engine.trigger("suppressed_smile", 9000.0) is not None  # scheduled 8 s ahead
    assert engine.injected(mid + 1, _zeros())[AU_INDEX["AU4_L"]] >= before  # still drawn
