"""Envelopes are unimodal, smooth, hold the apex for at most one frame, and are sampled on the
render clock (a 150 ms onset spans 9 frames at 60 fps)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from vcam_me.expression.micro import held_envelope, micro_envelope, raised_cosine_rise

FRAME_60 = 1000.0 / 60


def _frames(start: float, end: float, phase: float) -> np.ndarray:
    """Render instants between start and end as the offline renderer makes them: output frame i
    at round(i × 1000 / 60) ms, shifted by ``phase`` ms."""
    i = np.arange(int(start * 0.06) - 2, int(end * 0.06) + 3)
    t = np.round(i * FRAME_60) + phase
    return t[(t >= start) & (t <= end)]


@pytest.mark.parametrize("phase", [0.0, 3.3, 8.0, 16.0, 16.5])
def test_a_150_ms_onset_spans_9_frames_at_60_fps(phase):
    start, apex, end = 1000.0, 1150.0, 1320.0
    t = _frames(start - 50, end + 50, phase)
    rising = [x for x in t if start <= x < apex]
    assert len(rising) == 9
    values = [micro_envelope(x, start, apex, end) for x in rising]
    assert all(b > a for a, b in itertools.pairwise(values)), "the rise is drawn over all nine frames"
    at_30fps = [x for x in t[::2] if start <= x < apex]
    assert len(at_30fps) in (4, 5)  # what a 30 fps camera alone would have drawn


@pytest.mark.parametrize("phase", [0.0, 5.0, 8.33, 12.0])
@pytest.mark.parametrize("onset,offset", [(150.0, 170.0), (105.0, 105.0), (212.0, 135.0), (40.0, 300.0)])
def test_the_envelope_is_unimodal_with_at_most_one_frame_at_the_apex(phase, onset, offset):
    start = 500.0
    apex, end = start + onset, start + onset + offset
    t = _frames(start - 100, end + 100, phase)
    v = np.array([micro_envelope(x, start, apex, end) for x in t])
    assert v.min() == 0.0 and v.max() <= 1.0
    top = int(np.argmax(v))
    assert np.all(np.diff(v[: top + 1]) >= 0) and np.all(np.diff(v[top:]) <= 0), "unimodal"
    inside = (t > start) & (t < end)
    assert np.all(v[inside] > 0)
    # No plateau: at most two frames share the top value (at most one frame of hold; two only
    # when they fall equally high on either side of the apex); elsewhere it strictly moves.
    inner = v[inside]
    at_top = np.isclose(inner, inner.max(), rtol=0, atol=1e-9)
    assert at_top.sum() <= 2
    first_top = int(np.argmax(at_top))
    last_top = first_top + int(at_top.sum()) - 1
    assert np.all(np.diff(inner[: first_top + 1]) > 0)
    assert np.all(np.diff(inner[last_top:]) < 0)
    assert micro_envelope(apex, start, apex, end) == 1.0


def test_rise_and_fall_start_and_stop_smoothly():
    eps = 1e-3
    assert raised_cosine_rise(eps) < 1e-5 and 1 - raised_cosine_rise(1 - eps) < 1e-5  # zero slope at both ends
    assert raised_cosine_rise(-1) == 0.0 and raised_cosine_rise(2) == 1.0
    assert raised_cosine_rise(0.5) == pytest.approx(0.5)


def test_envelope_refuses_an_impossible_interval():
    with pytest.raises(ValueError):
        micro_envelope(0.0, 100.0, 100.0, 200.0)


def test_held_envelope_rises_holds_and_falls_from_where_it_was():
    rise, fall = 465.0, 600.0
    assert held_envelope(0.0, 0.0, rise, None, fall) == 0.0
    assert held_envelope(rise, 0.0, rise, None, fall) == 1.0
    assert held_envelope(5000.0, 0.0, rise, None, fall) == 1.0  # kept while held
    assert held_envelope(5000.0 + fall / 2, 0.0, rise, 5000.0, fall) == pytest.approx(0.5)
    assert held_envelope(5000.0 + fall, 0.0, rise, 5000.0, fall) == 0.0
    # let go half-way up: it falls from the level it had reached, without a jump
    level = held_envelope(rise / 2, 0.0, rise, None, fall)
    assert held_envelope(rise / 2 + 1e-6, 0.0, rise, rise / 2, fall) == pytest.approx(level, abs=1e-6)
    t = np.arange(rise / 2, rise / 2 + fall + 1, FRAME_60)
    v = [held_envelope(x, 0.0, rise, rise / 2, fall) for x in t]
    assert all(b <= a for a, b in itertools.pairwise(v)) and v[-1] == 0.0
