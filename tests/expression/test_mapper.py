import numpy as np
import pytest

from vcam_me.config import ExpressionOptions
from vcam_me.expression import Calibration, ExpressionMapper, OneEuroFilter
from vcam_me.geometry import euler_to_rotation
from vcam_me.types import AU_INDEX, BLENDSHAPE_INDEX, FaceObservation

JAW = BLENDSHAPE_INDEX["jawOpen"]


def _obs(t, jaw=0.0, pose=(0, 0, 0), face=True):
    if not face:
        return FaceObservation.empty(t, (640, 480))
    b = np.zeros(52, np.float32)
    b[JAW] = jaw
    m = np.eye(4, dtype=np.float32)
    m[:3, :3] = euler_to_rotation(pose)
    return FaceObservation(t, (640, 480), np.zeros((478, 3), np.float32), b, m)


def test_one_euro_removes_jitter_but_follows_steps():
    f = OneEuroFilter(min_cutoff_hz=1.0, beta=4.0)
    rng = np.random.default_rng(1)
    out = [f(np.array([0.3 + rng.normal(0, 0.02)]), t * 33.3)[0] for t in range(60)]
    assert np.std(out[30:]) < 0.01  # jitter 0.02 → well under half
    steps = [f(np.array([0.9]), (60 + t) * 33.3)[0] for t in range(6)]
    assert steps[-1] > 0.8  # a fast real move arrives within ~6 frames


def test_baseline_is_subtracted_and_expression_passes_through():
    m = ExpressionMapper(ExpressionOptions(interpolation_delay_ms=0))
    for i in range(20):
        m.update(_obs(i * 33, jaw=0.1))  # resting jaw at 0.1 becomes neutral
    assert m.state_at(20 * 33).intensity("AU26") == pytest.approx(0.0, abs=0.01)
    for i in range(20, 30):
        m.update(_obs(i * 33, jaw=0.7))
    assert m.state_at(30 * 33).intensity("AU26") == pytest.approx(0.6, abs=0.05)


def test_render_clock_interpolates_between_camera_samples():
    m = ExpressionMapper(ExpressionOptions(interpolation_delay_ms=0, min_cutoff_hz=30.0, beta=0.0))
    m.update(_obs(0, jaw=0.0))
    m.update(_obs(100, jaw=0.0))  # establishes neutral 0
    m.update(_obs(133, jaw=0.6))
    mid = m.state_at(117).intensity("AU26")
    end = m.state_at(133).intensity("AU26")
    assert 0.2 * end < mid < 0.8 * end
    assert m.state_at(500).intensity("AU26") == pytest.approx(end)  # held, never extrapolated


def test_head_pose_is_relative_to_neutral():
    m = ExpressionMapper(ExpressionOptions(interpolation_delay_ms=0))
    for i in range(12):
        m.update(_obs(i * 33, pose=(5, -3, 1)))
    np.testing.assert_allclose(m.state_at(12 * 33).head_pose, 0, atol=0.05)
    for i in range(12, 40):
        m.update(_obs(i * 33, pose=(20, -3, 1)))
    assert m.state_at(40 * 33).head_pose[0] == pytest.approx(15, abs=0.5)


def test_face_loss_decays_to_neutral_without_jumps():
    m = ExpressionMapper(ExpressionOptions(interpolation_delay_ms=0))
    for i in range(10):
        m.update(_obs(i * 33, jaw=0.0))
    for i in range(10, 20):
        m.update(_obs(i * 33, jaw=0.8))
    before = m.state_at(19 * 33)
    assert before.face_present
    values = []
    for i in range(20, 40):
        m.update(_obs(i * 33, face=False))
        values.append(m.state_at(i * 33).intensity("AU26"))
    assert not m.state_at(39 * 33).face_present
    assert values[-1] < 0.01
    assert max(abs(np.diff([before.intensity("AU26")] + values))) < 0.3


def test_calibrated_range_maps_full_expression_to_one(tmp_path):
    base = np.zeros(45, np.float32)
    top = np.full(45, 0.5, np.float32)
    cal = Calibration(base, top)
    cal.save(tmp_path / "cal.json")
    m = ExpressionMapper(ExpressionOptions(interpolation_delay_ms=0), Calibration.load(tmp_path / "cal.json"))
    for i in range(30):
        m.update(_obs(i * 33, jaw=0.5))
    assert m.state_at(30 * 33).au[AU_INDEX["AU26"]] == pytest.approx(1.0, abs=0.02)


def test_non_monotonic_observation_ignored():
    m = ExpressionMapper(ExpressionOptions(interpolation_delay_ms=0))
    m.update(_obs(100, jaw=0.0))
    m.update(_obs(50, jaw=0.9))
    assert m.state_at(100).source_timestamp_ms == 100


def test_recording_calibrates_itself_for_offline_rendering():
    # a clip whose face is tense (jaw 0.4) for most of it and relaxed (0.0) only at the end:
    # a causal running baseline cannot know the relaxed face yet, the clip's own one does
    observations = [_obs(i * 33, jaw=0.4, pose=(10, 0, 0)) for i in range(60)]
    observations += [_obs((60 + i) * 33, jaw=0.0, pose=(10, 0, 0)) for i in range(20)]
    cal = Calibration.from_observations(observations)
    assert cal.baseline[AU_INDEX["AU26"]] == pytest.approx(0.0)
    np.testing.assert_allclose(cal.pose_zero, (10, 0, 0), atol=1e-3)
    m = ExpressionMapper(ExpressionOptions(interpolation_delay_ms=0), cal, adapt_baseline=False)
    for obs in observations[:30]:
        m.update(obs)
    assert m.state_at(29 * 33).intensity("AU26") == pytest.approx(0.4, abs=0.02)
    np.testing.assert_allclose(m.state_at(29 * 33).head_pose, 0, atol=0.05)
    assert Calibration.from_observations([_obs(0, face=False)]) is None
    with pytest.raises(ValueError):
        ExpressionMapper(adapt_baseline=False)


def test_a_face_with_no_new_sample_for_too_long_counts_as_lost():
    """A stalled or frozen camera sends nothing new: the last face must not be drawn as live
    for ever, so the composer can hand over to the idle animation."""
    m = ExpressionMapper(ExpressionOptions(interpolation_delay_ms=0, stale_after_ms=500))
    for i in range(10):
        m.update(_obs(i * 33, jaw=0.5))
    last = 9 * 33
    assert m.state_at(last + 400).face_present
    assert not m.state_at(last + 600).face_present
    m.update(_obs(last + 700, jaw=0.5))  # the camera is back
    assert m.state_at(last + 700).face_present


def test_soft_limit_keeps_small_turns_and_bends_large_ones_smoothly_into_the_limit():
    from vcam_me.expression.mapper import soft_limit

    angles = np.linspace(-120, 120, 2401)
    bent = soft_limit(angles, 30.0)
    small = np.abs(angles) <= 18
    np.testing.assert_allclose(bent[small], angles[small], atol=1e-4)  # up to 60 % of the limit: as tracked
    assert np.all(np.abs(bent) < 30.0) and np.abs(bent).max() > 29.9
    slope = np.diff(bent) / np.diff(angles)
    assert np.all(slope >= 0) and slope.max() <= 1.0 + 1e-3  # never backwards, never faster than the head
    assert np.abs(np.diff(slope)).max() < 0.01  # no kink where the bend starts


def test_an_extreme_head_turn_is_drawn_within_the_limit():
    mapper = ExpressionMapper(ExpressionOptions(max_head_turn_deg=30.0))
    for k in range(12):  # the neutral pose is learnt over the first frames
        mapper.update(_obs(k * 33))
    for k in range(12, 40):
        mapper.update(_obs(k * 33, pose=(70.0, 0.0, 0.0)))
    yaw = abs(float(mapper.state_at(39 * 33).head_pose[0]))
    assert 27 < yaw < 30
