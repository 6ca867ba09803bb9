"""Self-reenactment samples from the bundled real clip (a few frames), and the warp they use."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from vcam_me.avatar import mesh
from vcam_me.avatar import crop
from vcam_me.errors import CaptureError, TrackingError
from vcam_me.training import reenact_data as R

CLIP = Path(__file__).resolve().parents[2] / "assets" / "driving" / "pyfeat_WolfgangLanger_Pexels.mp4"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("reenact_cache")


@pytest.fixture(scope="module")
def samples(cache_dir: Path) -> R.ClipSamples:
    return R.load_clip(CLIP, max_frames=6, stride=12, cache_dir=cache_dir)


@pytest.fixture(scope="module")
def tracked(samples: R.ClipSamples, cache_dir: Path) -> R.TrackedClip:
    """The tracked clip the samples were made from, read back from the cache."""
    with np.load(next(cache_dir.glob("*.npz"))) as z:
        return R.TrackedClip(**{k: z[k] for k in R.TrackedClip.__dataclass_fields__})


def test_samples_shapes_and_reference(samples: R.ClipSamples):
    n, s = len(samples), R.CROP_SIZE
    assert n == 5  # six tracked frames: one reference, five targets
    assert samples.reference_crop.shape == (s, s, 3) and samples.reference_crop.dtype == np.uint8
    assert samples.warped.shape == samples.target.shape == (n, s, s, 3)
    assert samples.face_mask.shape == (n, s, s) and 0.2 < samples.face_mask.mean() < 0.9
    assert samples.condition.shape == (n, R.N_CONDITION) and np.isfinite(samples.condition).all()
    assert samples.displacement.shape == (n, 478, 3) and np.abs(samples.displacement).max() > 0.005
    assert samples.reference_index not in samples.frame_index
    assert samples.frame_index.tolist() == sorted(samples.frame_index.tolist())


def test_reference_is_the_relaxed_frame_and_not_an_occluded_one(tracked):
    n_au = len(R.FEATURE_NAMES) - 4
    features = tracked.features.copy()
    features[:, :n_au] = 0.4
    features[3, :n_au] = 0.1
    s = R.samples_from_tracked(CLIP, R.TrackedClip(**{**tracked.__dict__, "features": features}))
    assert s.reference_index == tracked.index[3]
    np.testing.assert_array_equal(s.reference_crop, tracked.crops[3])
    assert 3 not in [list(tracked.index).index(i) for i in s.frame_index]

    # Two equally relaxed frames: the one with a "hand" over the lower face (a skin-coloured
    # block) loses.
    features[4, :n_au] = 0.1
    crops = tracked.crops.copy()
    lips = tracked.crop_landmarks[3][[13, 14, 61, 291]].mean(0).astype(int)
    crops[3, lips[1] - 30:lips[1] + 35, lips[0] - 45:lips[0] + 45] = (225, 180, 160)
    s = R.samples_from_tracked(CLIP, R.TrackedClip(**{**tracked.__dict__, "features": features, "crops": crops}))
    assert s.reference_index == tracked.index[4]


def test_conditioning_is_the_rise_above_the_clips_own_neutral(tracked: R.TrackedClip):
    """The network is fed calibrated AUs at run time, so it is trained on them: a channel that
    rests high (a person whose squint never relaxes) conditions as 0 at rest, and only the
    rise above that rest counts; the neutral comes from the frames before ``cut`` only."""
    from vcam_me.expression.action_units import default_crosswalk
    from vcam_me.types import AU_INDEX

    cw = default_crosswalk()
    squint = R.FEATURE_NAMES.index("AU7_L")
    source = int(cw.source_index[list(cw.channel_index).index(AU_INDEX["AU7_L"])])
    blend = tracked.blendshapes.copy()
    blend[:, source] = 0.69
    blend[-1, source] = 0.89
    moved = R.TrackedClip(**{**tracked.__dict__, "blendshapes": blend})
    f = R.calibrated_features(moved)
    assert f.shape == (len(tracked.index), len(R.FEATURE_NAMES)) and f.dtype == np.float32
    np.testing.assert_allclose(f[:-1, squint], 0.0, atol=1e-6)
    assert f[-1, squint] == pytest.approx(0.2, abs=1e-5)
    s = R.samples_from_tracked(CLIP, moved)
    targets = np.searchsorted(tracked.index, s.frame_index)
    np.testing.assert_array_equal(s.condition[:, :len(R.FEATURE_NAMES)], f[targets])
    # a neutral taken before a later, higher rest: the frames after the cut read its rise
    blend[3:, source] = 0.79
    later = R.calibrated_features(R.TrackedClip(**{**tracked.__dict__, "blendshapes": blend}), cut=3)
    np.testing.assert_allclose(later[3:, squint], 0.1, atol=1e-5)
    np.testing.assert_allclose(later[:3, squint], 0.0, atol=1e-6)


def test_warped_reference_is_closer_to_the_target_than_the_plain_reference(samples: R.ClipSamples):
    face = samples.face_mask.astype(bool)
    warped_err = np.abs(samples.warped.astype(np.float32) - samples.target)[face].mean()
    plain_err = np.abs(samples.reference_crop[None].astype(np.float32) - samples.target)[face].mean()
    assert warped_err < 0.85 * plain_err


def test_a_basis_that_draws_the_true_mesh_warps_as_the_true_mesh_does(samples, tracked):
    # five samples, 51 features: the least-squares basis reproduces their displacements exactly
    # (from the features it is drawn with: the samples' calibrated ones)
    flat = samples.displacement.reshape(len(samples), -1).astype(np.float64)
    drawn_with = samples.condition[:, :len(R.FEATURE_NAMES)].astype(np.float64)
    basis = np.linalg.lstsq(drawn_with, flat, rcond=None)[0]
    exact = R.warped_by_basis(samples, tracked, basis.reshape(len(R.FEATURE_NAMES), 478, 3))
    assert np.abs(exact.warped.astype(int) - samples.warped).mean() < 0.5
    for name in ("target", "face_mask", "condition", "displacement", "frame_index"):
        np.testing.assert_array_equal(getattr(exact, name), getattr(samples, name))


def test_a_basis_that_draws_nothing_leaves_the_expression_out(samples, tracked):
    still = R.warped_by_basis(samples, tracked, np.zeros((len(R.FEATURE_NAMES), 478, 3)))
    face = samples.face_mask.astype(bool)
    # the true warp follows the expression to the target; drawing none leaves it further off
    err_true = np.abs(samples.warped.astype(np.float32) - samples.target)[face].mean()
    err_still = np.abs(still.warped.astype(np.float32) - samples.target)[face].mean()
    assert err_still > err_true


def test_a_basis_warp_of_samples_from_another_clip_is_refused(samples, tracked):
    other = R.TrackedClip(**{**tracked.__dict__, "index": tracked.index + 1})
    with pytest.raises(ValueError, match="not made from this tracked clip"):
        R.warped_by_basis(samples, other, np.zeros((len(R.FEATURE_NAMES), 478, 3)))
    with pytest.raises(ValueError, match="basis of shape"):
        R.warped_by_basis(samples, tracked, np.zeros((3, 478, 3)))


def test_cache_is_used_on_the_second_load(samples, cache_dir, monkeypatch):
    def fail(*_a, **_k):
        raise AssertionError("tracked again instead of reading the cache")

    monkeypatch.setattr(R, "_track", fail)
    again = R.load_clip(CLIP, max_frames=6, stride=12, cache_dir=cache_dir)
    np.testing.assert_array_equal(again.target, samples.target)
    np.testing.assert_array_equal(again.condition, samples.condition)


def test_a_damaged_cache_is_reported_and_tracked_again(tmp_path, caplog):
    first = R.load_clip(CLIP, max_frames=3, stride=12, cache_dir=tmp_path)
    (cached,) = tmp_path.glob("*.npz")
    data = cached.read_bytes()
    cached.write_bytes(data[: len(data) // 2])  # as a crash mid-write would leave it
    with caplog.at_level("WARNING"):
        again = R.load_clip(CLIP, max_frames=3, stride=12, cache_dir=tmp_path)
    assert "is damaged" in caplog.text and cached.name in caplog.text
    np.testing.assert_array_equal(again.condition, first.condition)
    assert cached.read_bytes() == data, "rewritten whole"
    assert [p.name for p in tmp_path.iterdir()] == [cached.name], "no temporary left"


def test_warp_with_equal_geometry_is_identity():
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8), (5, 5), 0)
    v = mesh.canonical_mesh().vertices[:, :2]
    pts = (v - crop.CROP_CENTRE_IOD) * (128 / (2 * crop.CROP_HALF_IOD)) + 64
    out = R.warp_to_geometry(image, pts, pts)
    assert np.abs(out.astype(int) - image).max() <= 1


def test_warp_follows_a_shift_inside_the_face():
    image = np.zeros((128, 128, 3), np.uint8)
    image[:, ::8] = 255  # vertical stripes
    v = mesh.canonical_mesh().vertices[:, :2]
    src = (v - crop.CROP_CENTRE_IOD) * (128 / (2 * crop.CROP_HALF_IOD)) + 64
    out = R.warp_to_geometry(image, src, src + [3.0, 0.0])
    # At the eye midpoint (inside the mesh) the stripes moved 3 px right.
    np.testing.assert_array_equal(out[64, 40:90], image[64, 37:87])


def test_warp_has_no_seam_at_the_face_outline():
    ramp = np.tile((np.arange(128) * 2).astype(np.uint8)[None, :, None], (128, 1, 3))  # grey = 2·x
    v = mesh.canonical_mesh().vertices[:, :2]
    src = (v - crop.CROP_CENTRE_IOD) * (128 / (2 * crop.CROP_HALF_IOD)) + 64
    out = R.warp_to_geometry(ramp, src, src + [3.0, 0.0])  # the face moves 3 px right
    row, edge = 64, int(np.ceil(src[list(mesh.FACE_OVAL), 0].max()))
    moved = (ramp[row, :, 0].astype(float) - out[row, :, 0]) / 2.0  # px each pixel came from the left
    assert abs(moved[64] - 3.0) < 0.1
    # Just outside the outline pixels still move nearly with the face (a seam would be 3 → 0) …
    assert moved[edge + 1] > 1.5, moved[edge - 2:edge + 6]
    # … and the motion fades out toward the crop's edge.
    assert abs(moved[126]) < 0.5 * moved[edge + 1], moved[edge:]


def test_crops_put_the_alignment_landmarks_in_place(cache_dir):
    with np.load(next(cache_dir.glob("*.npz"))) as z:
        lm = z["crop_landmarks"]
    err = np.linalg.norm(lm[:, list(R.ALIGN_IDS)] - R.crop_points(), axis=2)
    assert np.median(err) < 4.0  # px in a 128 px crop


def test_missing_clip_is_a_capture_error(tmp_path):
    with pytest.raises(CaptureError, match="no such video"):
        R.load_clip(tmp_path / "nope.mp4", cache_dir=tmp_path)


def test_clip_without_a_face_is_a_tracking_error(tmp_path):
    path = tmp_path / "grey.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (96, 96))
    for _ in range(4):
        writer.write(np.full((96, 96, 3), 128, np.uint8))
    writer.release()
    with pytest.raises(TrackingError, match="no face found in grey.avi"):
        R.load_clip(path, max_frames=4, stride=1, cache_dir=tmp_path)


def test_mirroring_twice_is_the_identity_and_swaps_sides():
    rng = np.random.default_rng(1)
    c = rng.random((3, R.N_CONDITION)).astype(np.float32)
    m = R.mirror_condition(c)
    assert np.allclose(R.mirror_condition(m), c)
    left, right = R.CONDITION_NAMES.index("AU12_L"), R.CONDITION_NAMES.index("AU12_R")
    assert np.allclose(m[:, left], c[:, right]) and np.allclose(m[:, right], c[:, left])
    yaw = R.CONDITION_NAMES.index("pose_yaw")
    assert np.allclose(m[:, yaw], -c[:, yaw]) and np.allclose(m[:, yaw + 1], c[:, yaw + 1])
    d = rng.normal(size=(2, 478, 3)).astype(np.float32)
    assert np.allclose(R.mirror_displacement(R.mirror_displacement(d)), d)
