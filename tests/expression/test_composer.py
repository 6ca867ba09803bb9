"""The composer: tracked + idle + injected, with components that add up, behind the mapper's
update/state_at protocol."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from vcam_me.expression import ExpressionMapper
from vcam_me.expression.composer import ExpressionComposer
from vcam_me.expression.micro import (
    AutoTrigger,
    MicroEngine,
    MicroLibrary,
    ScriptedTrigger,
    parse_script,
)
from vcam_me.types import (
    AU_CHANNELS,
    AU_INDEX,
    BLENDSHAPE_INDEX,
    DERIVED_AU_CHANNELS,
    FaceObservation,
)

N = len(AU_CHANNELS)
DRIVING = np.array([c not in DERIVED_AU_CHANNELS for c in AU_CHANNELS])
FRAME_60 = 1000.0 / 60


@pytest.fixture(scope="module")
def library() -> MicroLibrary:
    return MicroLibrary.load()


def _observation(t_ms: int, smile: float = 0.0, brow_down: float = 0.0) -> FaceObservation:
    blend = np.zeros(52, np.float32)
    blend[BLENDSHAPE_INDEX["mouthSmileLeft"]] = blend[BLENDSHAPE_INDEX["mouthSmileRight"]] = smile
    blend[BLENDSHAPE_INDEX["browDownLeft"]] = blend[BLENDSHAPE_INDEX["browDownRight"]] = brow_down
    landmarks = np.full((478, 3), 0.5, np.float32)
    return FaceObservation(t_ms, (640, 480), landmarks, blend, np.eye(4, dtype=np.float32))


class _Idle:
    """A seam for the idle layer: a fixed idle face owning the face by a set weight."""

    def __init__(self, weight: float) -> None:
        self.weight = weight
        self.au = np.zeros(N, np.float32)
        self.au[AU_INDEX["AU43_L"]] = self.au[AU_INDEX["AU43_R"]] = 0.4
        self.au[AU_INDEX["AU12_L"]] = 0.3
        self.calls = []

    def sample(self, t_ms, face_present):
        self.calls.append((t_ms, face_present))
        gaze = np.full((2, 2), 0.2, np.float32)
        return self.au, gaze, np.array([5.0, 0.0, 0.0], np.float32), self.weight


def _drive(composer, smile=0.6, until_ms=2000):
    """Feed a 30 fps camera (a half smile from 0.5 s) and render at 60 fps; returns the states."""
    states = []
    cam = 0
    for k in range(int(until_ms / FRAME_60)):
        t = round(k * FRAME_60)
        while cam <= t:
            composer.update(_observation(cam, smile=smile if cam >= 500 else 0.0))
            cam += 33
        states.append(composer.state_at(t))
    return states


def test_components_add_up_to_the_face(library):
    engine = MicroEngine(library, seed=1)
    script = ScriptedTrigger(engine, parse_script([
        {"t_ms": 700, "type": "suppressed_smile", "side": "left", "peak": 0.5},
        {"t_ms": 900, "type": "brow_lowerer", "peak": 0.3},
    ], library))
    composer = ExpressionComposer(ExpressionMapper(), engine, [script], _Idle(0.25))
    states = _drive(composer)
    saw_injection = False
    for s in states:
        parts = s.components["tracked"] + s.components["idle"] + s.components["injected"]
        np.testing.assert_allclose(s.au[DRIVING], parts[DRIVING], atol=1e-6)
        assert np.all(s.au <= 1.0) and np.all(s.au >= 0.0)
        saw_injection |= bool(s.components["injected"].any())
    assert saw_injection
    # the idle part is the idle face × its weight; the tracked part is scaled by (1 − weight)
    last = states[-1]
    assert last.components["idle"][AU_INDEX["AU43_L"]] == pytest.approx(0.1)
    alone = composer.tracked.state_at(last.timestamp_ms)  # the mapper's own view of that instant
    assert alone.au[AU_INDEX["AU12_R"]] > 0.3
    np.testing.assert_allclose(last.components["tracked"], 0.75 * alone.au, atol=1e-5)
    np.testing.assert_allclose(last.gaze, 0.25 * 0.2 + 0.75 * alone.gaze, atol=1e-5)


def test_injection_shows_in_the_face_and_is_relative_on_an_active_au(library):
    engine = MicroEngine(library, seed=2)
    composer = ExpressionComposer(ExpressionMapper(), engine)
    _drive(composer, until_ms=1200)  # the tracked smile is on from 0.5 s
    before = composer.state_at(1200)
    event = composer.trigger("suppressed_smile", 1200, side="left", peak=0.4)
    at_apex = composer.state_at(round(event.apex_ms))
    i = AU_INDEX["AU12_L"]
    tracked = at_apex.components["tracked"][i]
    assert 0.2 < tracked < 1.0  # the user is smiling already
    assert at_apex.components["injected"][i] == pytest.approx(0.4 * (1 - tracked), abs=1e-4)
    assert at_apex.au[i] > before.au[i]
    assert at_apex.components["injected"][AU_INDEX["AU12_R"]] == 0.0


def test_derived_channels_follow_the_combined_face(library):
    for seed in range(50):  # a lip stretch whose optional jaw drop was drawn
        engine = MicroEngine(library, seed=seed)
        composer = ExpressionComposer(ExpressionMapper(), engine)
        composer.update(_observation(0))
        composer.update(_observation(33))
        event = composer.trigger("lip_stretch", 100, peak=1.0)
        if "AU26" in event.aus:
            break
    else:
        pytest.fail("no lip stretch with a jaw drop in 50 seeds")
    state = composer.state_at(round(event.apex_ms))
    assert state.components["injected"][AU_INDEX["AU26"]] > 0 and state.components["tracked"][AU_INDEX["AU25"]] == 0
    assert state.au[AU_INDEX["AU25"]] > 0  # the jaw drop parts the lips (AU25 recomputed)


def test_without_engine_or_idle_it_is_the_mapper():
    composer = ExpressionComposer(ExpressionMapper())
    plain = ExpressionMapper()
    for k in range(0, 1000, 33):
        composer.update(_observation(k, brow_down=0.5))
        plain.update(_observation(k, brow_down=0.5))
    a, b = composer.state_at(990), plain.state_at(990)
    np.testing.assert_allclose(a.au, b.au, atol=1e-6)
    assert not a.components["injected"].any() and not a.components["idle"].any()
    assert composer.events == ()
    with pytest.raises(RuntimeError):
        composer.trigger("brow_flash")


def test_origin_is_the_first_rendered_frame_and_the_log_uses_it(tmp_path, library):
    engine = MicroEngine(library, seed=4)
    script = ScriptedTrigger(engine, parse_script([{"t_ms": 300, "type": "brow_flash"}], library))
    composer = ExpressionComposer(ExpressionMapper(), engine, [script])
    for k in range(60):
        composer.state_at(50_000 + round(k * FRAME_60))  # a live stream starts at some clock time
    assert composer.origin_ms == 50_000
    (event,) = composer.events
    assert event.start_ms == 50_300
    composer.hold("suppressed_smile", 50_500)
    path = composer.write_events(tmp_path / "log.json", mode="test")
    doc = json.loads(path.read_text())
    assert [e["start_ms"] for e in doc["events"]] == [300.0, 500.0]
    assert doc["events"][1]["held"] and doc["events"][1]["end_ms"] is not None  # closed at the last frame
    assert doc["seed"] == engine.seed


def test_hotkeys_trigger_from_their_own_thread_while_frames_render(library):
    engine = MicroEngine(library, seed=5)
    clock = {"now": 0}
    composer = ExpressionComposer(ExpressionMapper(), engine, [AutoTrigger(engine, 30.0, seed=6)],
                                  clock=lambda: clock["now"])
    done = threading.Event()
    fired = []

    def hotkeys():
        while not done.is_set():
            event = composer.trigger("brow_flash", source="hotkey")
            if event is not None:
                fired.append(event)

    thread = threading.Thread(target=hotkeys)
    thread.start()
    try:
        for k in range(1200):
            clock["now"] = round(k * FRAME_60)
            if k % 2 == 0:
                composer.update(_observation(clock["now"]))
            state = composer.state_at(clock["now"])
            assert np.all(state.au <= 1.0)
    finally:
        done.set()
        thread.join()
    assert fired and {e.source for e in composer.events} == {"hotkey", "auto"}


def _turned(t_ms: int, yaw_deg: float) -> FaceObservation:
    """A neutral face turned by ``yaw_deg`` about the vertical axis."""
    a = np.radians(yaw_deg)
    transform = np.eye(4, dtype=np.float32)
    transform[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
    return FaceObservation(t_ms, (640, 480), np.full((478, 3), 0.5, np.float32), np.zeros(52, np.float32), transform)


def test_losing_the_face_fades_once_from_the_last_tracked_face():
    """The hand-over to idle starts from the face last seen and follows its smoothstep: the
    mapper's own decay of the lost face must not add a second, faster fade (a pose step)."""
    from vcam_me.config import IdleOptions
    from vcam_me.expression.idle import IdleAnimator

    quiet = IdleOptions(sway_deg=0.0, breath_pitch_deg=0.0, blinks_per_min=0.0, gaze_range=0.0, micro_per_min=0.0)
    composer = ExpressionComposer(ExpressionMapper(), idle=IdleAnimator(quiet, seed=1))
    yaws, cam = [], 0
    for k in range(int(2000 / FRAME_60)):
        t = round(k * FRAME_60)
        while cam <= t:
            if cam < 400:
                composer.update(_turned(cam, 0.0))  # the neutral pose is learnt here
            elif cam < 1000:
                composer.update(_turned(cam, 20.0))
            else:
                composer.update(FaceObservation.empty(cam, (640, 480)))
            cam += 33
        yaws.append(float(composer.state_at(t).head_pose[0]))
    yaws = np.asarray(yaws)
    held = abs(yaws[int(990 / FRAME_60)])
    assert held > 15  # the turn was tracked before the face was lost
    assert abs(yaws[-1]) < 0.5  # and the idle face is back at the neutral pose
    # smoothstep's steepest slope is 1.5 × the distance / the hand-over time
    steepest = 1.5 * held * FRAME_60 / quiet.handover_ms
    assert np.abs(np.diff(yaws[int(1000 / FRAME_60):])).max() <= 1.1 * steepest
