"""The face selector's rule on synthetic landmark sets (the rule itself; the real tracker on
real video is tested in tests/tracking/test_tracking_faults.py)."""

from __future__ import annotations

import numpy as np
import pytest

from vcam_me.tracking.selector import FacePlace, FaceSelector, choose_first
from vcam_me.types import NUM_LANDMARKS, FaceObservation

SIZE = (1280, 720)


def face(cx: float, cy: float, size: float, t_ms: int = 0) -> FaceObservation:
    """A face whose landmarks fill a ``size``-pixel square centred on (cx, cy) pixels."""
    grid = np.random.default_rng(0).uniform(-0.5, 0.5, (NUM_LANDMARKS, 3))
    grid[:4, :2] = [[-0.5, -0.5], [0.5, 0.5], [-0.5, 0.5], [0.5, -0.5]]  # the box's corners
    xy = (np.array([cx, cy]) + grid[:, :2] * size) / SIZE
    marks = np.column_stack([xy, grid[:, 2] * 0.05]).astype(np.float32)
    return FaceObservation(t_ms, SIZE, marks, np.zeros(52, np.float32), np.eye(4, dtype=np.float32))


def test_place_is_centroid_and_box_size_in_pixels():
    place = FacePlace.of(face(300, 200, 100))
    assert place.size == pytest.approx(100, rel=1e-3)
    assert place.centre == pytest.approx((300, 200), abs=5)


def test_first_choice_is_the_largest_face():
    faces = [face(640, 360, 100), face(200, 300, 220)]
    assert choose_first(faces) == 1


def test_first_choice_among_similar_sizes_is_the_most_central():
    faces = [face(150, 360, 200), face(700, 380, 190)]
    assert choose_first(faces) == 1


def test_no_face_is_no_choice():
    assert choose_first([]) is None


def test_follows_the_chosen_face_when_the_order_swaps():
    selector = FaceSelector()
    a0, b0 = face(300, 360, 200, 0), face(980, 360, 180, 0)
    assert selector.select([a0, b0], 0, SIZE) is a0
    # MediaPipe reports the faces in the other order, and the chosen one moves a little
    a1, b1 = face(330, 350, 205, 33), face(980, 360, 180, 33)
    assert selector.select([b1, a1], 33, SIZE) is a1


def test_does_not_jump_to_another_face_while_the_chosen_one_is_away():
    selector = FaceSelector(reacquire_after_ms=2000)
    a, b = face(300, 360, 200), face(980, 360, 200)
    assert selector.select([a, b], 0, SIZE) is a
    for t in range(33, 1500, 33):  # only the other face is in view
        chosen = selector.select([face(980, 360, 200, t)], t, SIZE)
        assert not chosen.has_face
    back = face(320, 370, 200, 1500)  # the chosen face comes back where it was
    assert selector.select([face(980, 360, 200, 1500), back], 1500, SIZE) is back


def test_chooses_again_after_the_chosen_face_has_been_away_long_enough():
    selector = FaceSelector(reacquire_after_ms=1000)
    selector.select([face(300, 360, 200)], 0, SIZE)
    other = face(980, 360, 200, 900)
    assert not selector.select([other], 900, SIZE).has_face
    later = face(980, 360, 200, 1100)
    assert selector.select([later], 1100, SIZE) is later
    assert selector.place.centre[0] == pytest.approx(980, abs=5)


def test_a_face_of_very_different_size_at_the_same_place_is_not_taken_for_the_chosen_one():
    selector = FaceSelector()
    selector.select([face(640, 360, 200)], 0, SIZE)
    assert not selector.select([face(640, 360, 60, 33)], 33, SIZE).has_face


def test_a_face_beyond_the_gate_is_not_followed():
    selector = FaceSelector(follow_gate=0.5)
    selector.select([face(400, 360, 200)], 0, SIZE)
    assert not selector.select([face(560, 360, 200, 33)], 33, SIZE).has_face  # 0.8 face sizes away
    near = face(460, 360, 200, 66)  # 0.3 face sizes away
    assert selector.select([near], 66, SIZE) is near


@pytest.mark.parametrize("kwargs", [{"follow_gate": 0}, {"reacquire_after_ms": -1}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        FaceSelector(**kwargs)


def test_a_resolution_change_keeps_the_chosen_face():
    """The camera switches from 1280x720 to 640x360 mid-stream: the same face, now half the
    size in pixels, is still the chosen one (not lost for reacquire_after_ms)."""
    selector = FaceSelector()
    a, b = face(300, 360, 200), face(980, 360, 200)
    assert selector.select([a, b], 0, SIZE) is a
    small = (640, 360)
    half_a = FaceObservation(33, small, a.landmarks, a.blendshapes, a.transform)  # same place, same share
    half_b = FaceObservation(33, small, b.landmarks, b.blendshapes, b.transform)
    assert selector.select([half_b, half_a], 33, small) is half_a
