"""Automatic mode: seeded, at the configured rate, never two conflicting events at once, not
during blinks, no mouth events at speech peaks, weighted by persona."""

from __future__ import annotations

import numpy as np
import pytest

from vcam_me.errors import MicroExpressionError
from vcam_me.expression.micro import AutoTrigger, MicroEngine, MicroLibrary
from vcam_me.expression.micro.auto import AFTER_BLINK_MS, LOWER_FACE_AUS
from vcam_me.expression.micro.library import au_number
from vcam_me.types import AU_CHANNELS, AU_INDEX

N = len(AU_CHANNELS)
FRAME_30 = 1000.0 / 30  # ticks at 30 fps keep these long simulations quick


@pytest.fixture(scope="module")
def library() -> MicroLibrary:
    return MicroLibrary.load()


def _simulate(library, minutes: float, rate: float, seed: int, tracked=None, speech=None, persona=None):
    engine = MicroEngine(library, seed=seed)
    auto = AutoTrigger(engine, rate, persona, seed=seed + 1)
    neutral = np.zeros(N, np.float32)
    for k in range(int(minutes * 60_000 / FRAME_30)):
        t = k * FRAME_30
        face = neutral if tracked is None else tracked(t)
        auto.tick(t, face, speech_level=None if speech is None else speech(t))
        engine.injected(t, face)
    return engine.events, auto


def _numbers(event) -> frozenset[int]:
    return frozenset(au_number(ch) for ch in event.aus)


def test_same_seed_same_sequence(library):
    a, _ = _simulate(library, 3, 6.0, seed=1)
    b, _ = _simulate(library, 3, 6.0, seed=1)
    c, _ = _simulate(library, 3, 6.0, seed=2)
    assert a == b and len(a) > 5
    assert a != c


def test_rate_over_a_long_span_is_the_configured_rate(library):
    events, auto = _simulate(library, 30, 8.0, seed=3)  # 240 expected; Poisson sd 15.5
    assert len(events) == pytest.approx(240, rel=0.15)
    assert auto.dropped == 0
    assert all(e.source == "auto" for e in events)


def test_never_two_conflicting_events_at_once(library):
    events, _ = _simulate(library, 10, 40.0, seed=4)  # crowded on purpose
    assert len(events) > 250
    for i, a in enumerate(events):
        for b in events[i + 1:]:
            if b.start_ms >= a.end_ms:
                continue
            assert not library.conflicting(_numbers(a), _numbers(b)), (a, b)


def test_nothing_starts_during_a_blink_or_just_after(library):
    def blinking(t):  # a 250 ms blink every 1.5 s
        face = np.zeros(N, np.float32)
        if t % 1500 < 250:
            face[AU_INDEX["AU43_L"]] = face[AU_INDEX["AU43_R"]] = 0.9
        return face

    events, _ = _simulate(library, 5, 12.0, seed=5, tracked=blinking)
    assert len(events) > 30
    for e in events:
        assert e.start_ms % 1500 >= 250 + AFTER_BLINK_MS - FRAME_30, e


def test_mouth_events_wait_for_the_mouth_to_stop_talking(library):
    def talking(t):
        face = np.zeros(N, np.float32)
        face[AU_INDEX["AU26"]] = 0.6
        return face

    events, _ = _simulate(library, 5, 12.0, seed=6, tracked=talking)
    assert len(events) > 20
    assert not any(_numbers(e) & LOWER_FACE_AUS for e in events)
    loud, _ = _simulate(library, 5, 12.0, seed=6, speech=lambda t: 0.9)
    assert len(loud) > 20 and not any(_numbers(e) & LOWER_FACE_AUS for e in loud)
    quiet, _ = _simulate(library, 5, 12.0, seed=6, speech=lambda t: 0.1)
    assert any(_numbers(e) & LOWER_FACE_AUS for e in quiet)


def test_persona_weights_the_types(library):
    persona = {name: 0.0 for name in library.names}
    persona["suppressed_smile"] = 1.0
    events, _ = _simulate(library, 3, 10.0, seed=7, persona=persona)
    assert events and {e.type for e in events} == {"suppressed_smile"}
    cheerful = dict.fromkeys(library.names, 1.0) | {"suppressed_smile": 20.0}
    events, _ = _simulate(library, 10, 10.0, seed=7, persona=cheerful)
    share = sum(e.type == "suppressed_smile" for e in events) / len(events)
    base = library["suppressed_smile"].weight / sum(t.weight for t in library.types.values())
    assert share > 2 * base


def test_bad_persona_or_rate_is_a_clear_error(library):
    engine = MicroEngine(library, seed=1)
    with pytest.raises(MicroExpressionError, match="unknown type 'grin'"):
        AutoTrigger(engine, 4.0, {"grin": 1.0})
    with pytest.raises(MicroExpressionError, match="rate_per_min"):
        AutoTrigger(engine, -1.0)


def test_rate_zero_fires_nothing(library):
    events, _ = _simulate(library, 2, 0.0, seed=8)
    assert events == ()
