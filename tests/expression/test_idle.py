"""The idle animator: blink, breath, glance and sway statistics over a long simulated span,
hand-over to and from live tracking without jumps, the voice-driven jaw on real speech, and
the hook that fires idle micro-expressions."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest

from vcam_me.capture.microphone import Microphone
from vcam_me.config import IdleOptions
from vcam_me.expression.idle import IdleAnimator, handover_blend
from vcam_me.types import AU_CHANNELS, AU_INDEX

STEP_MS = 10  # simulation step: fine enough to time a 100 ms blink to ±10 %
MINUTES = 10
FRAME_MS = 1000 / 60


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) index pairs of the runs of True in ``mask`` (end exclusive)."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


@pytest.fixture(scope="module")
def idle_run() -> dict[str, np.ndarray]:
    """Ten minutes of idle animation with the face lost, sampled every 10 ms."""
    animator = IdleAnimator(IdleOptions(), seed=7)
    t = np.arange(0, MINUTES * 60_000, STEP_MS)
    samples = [animator.sample(int(ti), face_present=False) for ti in t]
    return {
        "t": t,
        "au": np.stack([s.au for s in samples]),
        "gaze": np.stack([s.gaze for s in samples]),
        "pose": np.stack([s.pose for s in samples]),
        "weight": np.array([s.weight for s in samples]),
    }


def test_outputs_are_finite_in_range_and_never_frozen(idle_run) -> None:
    au, gaze, pose = idle_run["au"], idle_run["gaze"], idle_run["pose"]
    assert au.shape == (len(idle_run["t"]), len(AU_CHANNELS)) and au.dtype == np.float32
    assert gaze.shape[1:] == (2, 2) and pose.shape[1:] == (3,)
    for values in (au, gaze, pose):
        assert np.all(np.isfinite(values))
    assert au.min() >= 0.0 and au.max() <= 1.0
    assert np.all(idle_run["weight"] == 1.0), "with no face from the start, idle owns the face at once"
    # Not frozen: the head moves in every one-second window.
    per_second = pose.reshape(-1, 1000 // STEP_MS, 3)
    assert np.all(np.ptp(per_second, axis=1).max(axis=1) > 0.005)
    assert np.any(np.abs(np.diff(au[:, AU_INDEX["AU26"]])) > 0), "the jaw breathes"


def test_blink_rate_durations_and_shape(idle_run) -> None:
    closure = idle_run["au"][:, AU_INDEX["AU43_L"]]
    np.testing.assert_array_equal(closure, idle_run["au"][:, AU_INDEX["AU43_R"]])
    blinks = _runs(closure > 0.01)
    rate = len(blinks) / MINUTES
    assert 14.5 <= rate <= 19.5, f"{rate:.1f} blinks/min; configured 17 (15-20 at rest)"
    durations = np.array([(end - start) * STEP_MS for start, end in blinks])
    assert durations.min() >= 80 and durations.max() <= 410, (durations.min(), durations.max())
    assert 150 <= np.median(durations) <= 250
    # Closing is faster than opening.
    closing = np.array([np.argmax(closure[s:e]) for s, e in blinks])
    opening = np.array([e - s for s, e in blinks]) - closing
    assert np.mean(closing < opening) > 0.95
    assert np.median(closure[[s + c for (s, _), c in zip(blinks, closing, strict=True)]]) > 0.85, "lids close"
    # Gaps between blinks: right-skewed and irregular, with the occasional double blink.
    starts = np.array([s for s, _ in blinks]) * STEP_MS
    gaps = np.diff(starts)
    assert np.mean(gaps) > np.median(gaps), "right-skewed"
    assert 0.4 < np.std(gaps) / np.mean(gaps) < 1.0
    doubles = np.sum(gaps < 600)
    assert 1 <= doubles <= 0.15 * len(blinks), f"{doubles} double blinks of {len(blinks)}"


def test_glances_are_small_saccades_between_fixations(idle_run) -> None:
    gaze = idle_run["gaze"]
    np.testing.assert_array_equal(gaze[:, 0], gaze[:, 1])  # both eyes look at the same point
    limit = IdleOptions().gaze_range
    assert np.abs(gaze[:, :, 0]).max() <= limit + 1e-6
    assert np.abs(gaze[:, :, 1]).max() <= 0.6 * limit + 1e-6, "vertical glances are smaller"
    moving = np.any(np.abs(np.diff(gaze[:, 0], axis=0)) > 1e-7, axis=1)
    saccades = _runs(moving)
    assert len(saccades) > MINUTES * 60 / 3, "a new fixation at least every 3 s"
    assert max(e - s for s, e in saccades) * STEP_MS <= 60, "saccades are quick"
    fixations = np.diff([s for s, _ in saccades]) * STEP_MS
    assert fixations.min() >= 500 and fixations.max() <= 3000 + 60 + STEP_MS
    jumps = [np.abs(gaze[e, 0] - gaze[s, 0]).max() for s, e in saccades if e < len(gaze)]
    assert 0.01 < np.median(jumps) <= limit


def test_head_sways_slowly_and_little(idle_run) -> None:
    pose = idle_run["pose"]
    sway = IdleOptions().sway_deg
    assert 0.4 * sway < np.std(pose[:, 0]) < 2.0 * sway
    assert np.abs(pose).max() < 4 * sway + 1
    per_frame = np.abs(np.diff(pose, axis=0)).max()
    assert per_frame < 0.05, f"{per_frame:.3f}° per 10 ms: sway is slow"


def test_breathing_rate() -> None:
    options = IdleOptions(sway_deg=0.0, breaths_per_min=15.0)
    animator = IdleAnimator(options, seed=3)
    t = np.arange(0, 4 * 60_000, 50)
    samples = [animator.sample(int(ti), face_present=False) for ti in t]
    pitch = np.array([s.pose[1] for s in samples])
    jaw = np.array([s.au[AU_INDEX["AU26"]] for s in samples])
    above = pitch > np.mean(pitch)
    breaths = np.sum(np.diff(above.astype(int)) == 1)
    assert 13 <= breaths / 4 <= 17, f"{breaths / 4:.1f} breaths/min; configured 15"
    assert np.ptp(pitch) == pytest.approx(options.breath_pitch_deg, rel=0.05)
    assert np.corrcoef(pitch, jaw)[0, 1] > 0.99, "the jaw moves with each breath"
    periods = np.diff(np.flatnonzero(np.diff(above.astype(int)) == 1)) * 50 / 1000
    assert periods.min() >= 60 / 15 / 1.2 and periods.max() <= 60 / 15 / 0.8, "each breath differs a little"
    assert np.std(periods) > 0.05


def _handover_run(face: list[tuple[float, bool]], pause_at: float | None = None, resume_at: float | None = None):
    """60 fps with a fixed live expression; ``face``: (time_ms, present) switch points."""
    live_au = np.zeros(len(AU_CHANNELS), np.float32)
    live_au[AU_INDEX["AU12_L"]] = live_au[AU_INDEX["AU12_R"]] = 0.8
    live_au[AU_INDEX["AU4_L"]] = 0.5
    live = (live_au, np.full((2, 2), 0.6, np.float32), np.array([20.0, -10.0, 5.0], np.float32))
    # Glances and blinks are quick by nature (a saccade moves in 2-3 frames); they are switched
    # off here so that every change measured is the hand-over's own.
    animator = IdleAnimator(IdleOptions(gaze_range=0.0, blinks_per_min=0.0), seed=11)
    rows = []
    for i in range(int(4000 / FRAME_MS)):
        t = i * FRAME_MS
        present = [p for ts, p in face if ts <= t][-1]
        for at, action in ((pause_at, animator.pause), (resume_at, animator.resume)):
            if at is not None and abs(t - at) < FRAME_MS / 2:  # as a tray or hotkey thread would
                control = threading.Thread(target=action)
                control.start()
                control.join()
        idle = animator.sample(round(t), present)
        au, gaze, pose = handover_blend(live, idle)
        rows.append((t, idle.weight, au, gaze, pose))
    t = np.array([r[0] for r in rows])
    return t, np.array([r[1] for r in rows]), np.stack([r[2] for r in rows]), np.stack([r[3] for r in rows]), np.stack([r[4] for r in rows])


def _assert_no_jumps(weight, au, gaze, pose) -> None:
    # Smoothstep's steepest slope is 1.5 per hand-over; frames are 16-17 whole ms apart.
    assert np.abs(np.diff(weight)).max() <= 1.5 * 17 / IdleOptions().handover_ms + 1e-6
    assert np.abs(np.diff(au, axis=0)).max() <= 0.085, "AUs: at most ~0.1 × the gap per frame"
    assert np.abs(np.diff(gaze, axis=0)).max() <= 0.08
    assert np.abs(np.diff(pose, axis=0)).max() <= 2.5, "pose: a 20° turn handed over in ≥ 10 frames"


@pytest.mark.parametrize("cause", ["face lost", "paused"])
def test_hand_over_to_idle_and_back_within_300_ms_without_jumps(cause: str) -> None:
    if cause == "face lost":
        t, weight, au, gaze, pose = _handover_run([(0, True), (1000, False), (2500, True)])
    else:
        t, weight, au, gaze, pose = _handover_run([(0, True)], pause_at=1000, resume_at=2500)
    assert np.all(weight[t < 1000] == 0.0), "live tracking owns the face while it is seen"
    assert np.all(weight[(t >= 1000 + 300) & (t < 2500)] == 1.0), "idle within 300 ms"
    assert np.all(weight[t >= 2500 + 300] == 0.0), "live again within 300 ms"
    first_idle = np.argmax(t >= 1000)
    assert au[first_idle, AU_INDEX["AU12_L"]] > 0.7, "the hand-over starts from the live expression"
    assert au[np.argmax(t >= 1300), AU_INDEX["AU12_L"]] == pytest.approx(0.0, abs=1e-6)
    assert au[-1, AU_INDEX["AU12_L"]] == pytest.approx(0.8)
    _assert_no_jumps(weight, au, gaze, pose)


def test_a_face_that_returns_mid_hand_over_turns_back_smoothly() -> None:
    t, weight, au, gaze, pose = _handover_run([(0, True), (1000, False), (1100, True), (1150, False), (1200, True)])
    assert 0 < weight.max() < 1
    assert np.all(weight[t >= 1500] == 0.0)
    _assert_no_jumps(weight, au, gaze, pose)


def test_pause_is_thread_safe_and_toggles() -> None:
    animator = IdleAnimator(seed=0)
    assert animator.toggle_pause() is True and animator.paused
    threads = [threading.Thread(target=lambda: [animator.toggle_pause() for _ in range(1000)]) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert animator.paused, "an even number of toggles leaves the state as it was"
    animator.resume()
    assert not animator.paused


def test_same_seed_same_life_other_seed_other_life() -> None:
    def run(seed):
        a = IdleAnimator(seed=seed)
        return np.concatenate([np.concatenate([s.au, s.gaze.ravel(), s.pose]) for s in
                               (a.sample(t, False) for t in range(0, 20_000, 20))])

    np.testing.assert_array_equal(run(5), run(5))
    assert not np.array_equal(run(5), run(6))


def test_jaw_follows_real_speech_while_the_face_is_lost(spoken_speech) -> None:
    speech, rate = spoken_speech("Sorry, my camera dropped out. I can still hear you, go ahead.")
    pause = np.zeros(int(1.5 * rate), np.float32)
    audio = np.concatenate([pause, speech, pause])
    mic = Microphone(None, rate)
    options = IdleOptions(breath_jaw=0.0)  # the jaw moves with the voice only
    lost = IdleAnimator(options, seed=1, voice_level=mic.level)
    seen = IdleAnimator(options, seed=1, voice_level=mic.level)
    block = rate // 50  # the live meter's 20 ms blocks
    fed = 0
    jaw, lips, jaw_seen, loudness = [], [], [], []
    neutral = (np.zeros(len(AU_CHANNELS), np.float32), np.zeros((2, 2), np.float32), np.zeros(3, np.float32))
    for i in range(int(len(audio) / rate * 60)):
        t_ms = i * FRAME_MS
        while fed + block <= min(len(audio), int(t_ms / 1000 * rate)):
            mic.feed(audio[fed:fed + block])
            fed += block
        recent = audio[max(0, fed - block * 4):fed]
        loudness.append(float(np.sqrt(np.mean(recent**2))) if len(recent) else 0.0)
        sample = lost.sample(int(t_ms), face_present=False)
        jaw.append(sample.au[AU_INDEX["AU26"]])
        composed, _, _ = handover_blend(neutral, sample)
        lips.append(composed[AU_INDEX["AU25"]])
        jaw_seen.append(seen.sample(int(t_ms), face_present=True).au[AU_INDEX["AU26"]])
    jaw, loudness = np.array(jaw), np.array(loudness)
    t = np.arange(len(jaw)) * FRAME_MS / 1000
    speaking = (t > 1.7) & (t < 1.5 + len(speech) / rate - 0.2)
    silent = (t < 1.4) | (t > len(audio) / rate - 1.0)
    assert np.median(jaw[speaking]) > 0.1, "the jaw opens while the user speaks"
    assert jaw[speaking].max() <= options.voice_jaw_max + 1e-6
    assert jaw[silent].max() < 0.01, "and closes when the voice stops"
    assert np.corrcoef(jaw, loudness)[0, 1] > 0.6, "it follows the voice level"
    assert np.std(np.diff(jaw[speaking])) > 0.005, "it moves with the syllables, not as a block"
    np.testing.assert_allclose(lips, jaw, atol=1e-6)  # composed, the lips part with the jaw (AU25)
    assert max(jaw_seen) == 0.0, "while the face is tracked, the voice does not drive the idle jaw"


class _RecordingEngine:
    """Seam: records what the idle animator asks of the micro-expression engine."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, str]] = []

    def trigger(self, type_name, t_ms, *, side=None, peak=None, source="api"):
        self.calls.append((type_name, t_ms, source))
        return object()


def test_idle_fires_occasional_micro_expressions_away_from_blinks() -> None:
    engine = _RecordingEngine()
    options = dataclasses.replace(IdleOptions(), micro_per_min=6.0, micro_types=("inner_brow", "lip_suppression"))
    animator = IdleAnimator(options, seed=2, engine=engine)
    closure = []
    for t in range(0, 5 * 60_000, 20):
        present = 120_000 <= t < 180_000  # a live minute in the middle: no idle micro-expressions
        closure.append(animator.sample(t, face_present=present).au[AU_INDEX["AU43_L"]])
    times = np.array([c[1] for c in engine.calls])
    assert 15 <= len(times) <= 45, f"{len(times)} in 4 idle minutes at 6 per minute"
    assert {c[0] for c in engine.calls} == {"inner_brow", "lip_suppression"}
    assert {c[2] for c in engine.calls} == {"idle"}
    assert not np.any((times >= 120_000) & (times < 180_300)), "none while the live face is shown"
    closure = np.array(closure)
    for t in times:
        assert closure[max(0, t // 20 - 3): t // 20 + 3].max() == 0.0, "not during a blink"
    assert list(animator.micro_fired) == [(c[1], c[0]) for c in engine.calls]


def test_idle_micro_expressions_reach_the_real_engine() -> None:
    from vcam_me.expression.micro import MicroEngine, MicroLibrary

    engine = MicroEngine(MicroLibrary.load(), seed=9)
    options = IdleOptions(micro_per_min=12.0)
    assert set(options.micro_types) <= set(engine.library.names), "the default idle types are library types"
    animator = IdleAnimator(options, seed=9, engine=engine)
    for t in range(0, 60_000, 20):
        animator.sample(t, face_present=False)
    assert engine.events, "a minute of idle at 12 per minute shows some"
    assert {e.source for e in engine.events} == {"idle"}
    assert {e.type for e in engine.events} <= set(options.micro_types)
    assert [(int(e.start_ms), e.type) for e in engine.events] == list(animator.micro_fired)
