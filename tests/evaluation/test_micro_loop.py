"""The micro-expression proof's bookkeeping, with a fake renderer as the seam.

The real closed loop (renderer, MediaPipe re-tracking, the engine) is exercised by
tests/test_eval_micro.py; here the render function draws known bumps into blendshape
streams, so every number the proof reports can be checked by hand.
"""

import numpy as np

from vcam_me.evaluation import micro_loop as L
from vcam_me.expression.action_units import default_crosswalk
from vcam_me.types import AU_INDEX, FaceObservation

FPS = 60
_CW = default_crosswalk()
#: blendshape index that feeds each AU channel
_SOURCE = {int(c): int(s) for c, s in zip(_CW.channel_index, _CW.source_index)}
TYPES = {"smile": "AU12_L", "brow": "AU1"}


def _obs(t_ms, blend):
    return FaceObservation(int(t_ms), (640, 360), np.zeros((478, 3), np.float32), blend.astype(np.float32), np.eye(4, dtype=np.float32))


def _fake_render(duration_ms=12_000, noise=0.003, drop_types=(), seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_ms * FPS / 1000)) * 1000.0 / FPS

    def render(script):
        blend = 0.05 + noise * rng.standard_normal((len(t), 52))
        log = []
        for entry in script or []:
            start, onset, offset = entry["t_ms"], 150.0, 200.0
            channel = TYPES[entry["type"]]
            log.append({"type": entry["type"], "start_ms": start, "apex_ms": start + onset, "end_ms": start + onset + offset,
                        "side": "left" if channel.endswith("_L") else "both", "aus": {channel: 1.0}})
            if entry["type"] in drop_types:
                continue
            x = np.clip((t - start) / onset, 0, 1)
            rise = 0.5 - 0.5 * np.cos(np.pi * x)
            y = np.clip((t - start - onset) / offset, 0, 1)
            bump = np.where(t < start + onset, rise, 0.5 + 0.5 * np.cos(np.pi * y)) * (t >= start) * (t <= start + onset + offset)
            blend[:, _SOURCE[AU_INDEX[channel]]] += 0.15 * bump
        return [_obs(ti, b) for ti, b in zip(t, blend)], log

    return render, [_obs(ti, 0.05 + np.zeros(52)) for ti in t[::2]]


def test_plan_script_covers_every_type_and_keeps_gaps():
    script = L.plan_script(list(TYPES), 20_000, seed=1)
    assert {e["type"] for e in script} == set(TYPES)
    times = [e["t_ms"] for e in script]
    assert min(np.diff(times)) >= 1000 and times[-1] <= 20_000 - 800


def test_evaluate_driver_scores_a_perfect_render_as_perfect():
    render, driver = _fake_render()
    script = L.plan_script(list(TYPES), 12_000, seed=2)
    result = L.evaluate_driver("fake", driver, render, script)
    assert result.score.logged == len(script) and result.score.f1 == 1.0
    assert result.score.au_side_accuracy == 1.0
    assert result.false_events_per_min <= 0.0 + 1e-9
    summary = L.pooled([result])
    assert all(summary["targets"].values())


def test_an_invisible_type_lowers_recall_and_shows_in_the_table():
    render, driver = _fake_render(drop_types=("brow",))
    script = L.plan_script(list(TYPES), 12_000, seed=3)
    summary = L.pooled([L.evaluate_driver("fake", driver, render, script)])
    assert summary["per_type"]["brow"]["spotted"] == 0
    assert summary["per_type"]["smile"]["spotted"] == summary["per_type"]["smile"]["logged"]
    assert not summary["targets"]["f1 >= 0.9"]


def test_sensitivity_table_and_needed_peak():
    render, _ = _fake_render(duration_ms=10_000, drop_types=("brow",))
    table = L.sensitivity(render, list(TYPES), [0.5, 1.0], seed=0)
    assert table["smile"] == {"0.5": 1.0, "1": 1.0}
    assert L.needed_peak(table["smile"]) == 0.5 and L.needed_peak(table["brow"]) is None


def test_paired_stream_needs_the_same_output_frames():
    import pytest

    render, _ = _fake_render(duration_ms=2000)
    a, _ = render(None)
    b, _ = render(None)
    t, diff = L.paired_stream(a, b)
    assert diff.shape == (len(a), len(AU_INDEX)) and np.abs(diff).max() < 0.05
    with pytest.raises(ValueError):
        L.paired_stream(a, b[:-1])
