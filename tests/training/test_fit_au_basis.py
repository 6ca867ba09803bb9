"""The AU-basis fit: pure pieces (features, mirroring, ridge with per-clip intercepts)."""

from __future__ import annotations

import numpy as np

from vcam_me.avatar import mesh as M
from vcam_me.avatar.basis import FEATURE_NAMES as RENDER_FEATURES
from vcam_me.training import features as F
from vcam_me.training.fit_au_basis import (
    allowed_features,
    clip_features,
    fit_ridge,
    mirror_clip,
)
from vcam_me.types import BLENDSHAPE_INDEX


def test_feature_layout_matches_the_renderer():
    assert F.FEATURE_NAMES == RENDER_FEATURES


def test_private_crosswalk_matches_expression_stage():
    rng = np.random.default_rng(1)
    b = rng.uniform(0, 1, size=(20, 52)).astype(np.float32)
    au, gaze = F.blendshapes_to_au_and_gaze(b)
    f = F.features_from(au, gaze)
    g = F.features_from(F._private_au(b), F._private_gaze(b))
    np.testing.assert_allclose(f, g, atol=1e-6)


def test_gaze_sign():
    b = np.zeros(52, np.float32)
    b[BLENDSHAPE_INDEX["eyeLookOutLeft"]] = 0.6  # left eye looks toward the subject's left
    b[BLENDSHAPE_INDEX["eyeLookInRight"]] = 0.6  # so does the right eye
    b[BLENDSHAPE_INDEX["eyeLookUpLeft"]] = 0.3
    _, gaze = F.blendshapes_to_au_and_gaze(b)
    assert gaze[0, 0] > 0.5 and gaze[1, 0] > 0.5 and gaze[0, 1] > 0.2


def test_mirror_is_an_involution():
    mf = F.mirror_features()
    idx, sign = mf[0].astype(int), mf[1]
    assert np.array_equal(idx[idx], np.arange(len(idx)))
    assert np.all(sign[idx] * sign == 1)
    perm = M.mirror_index()
    assert np.array_equal(perm[perm], np.arange(478))
    rng = np.random.default_rng(0)
    aligned, feats = rng.normal(size=(5, 478, 3)), rng.uniform(size=(5, len(F.FEATURE_NAMES)))
    a2, f2 = mirror_clip(*mirror_clip(aligned, feats))
    np.testing.assert_allclose(a2, aligned)
    np.testing.assert_allclose(f2, feats)


def test_clip_features_are_rest_relative():
    rng = np.random.default_rng(2)
    b = rng.uniform(0.2, 0.4, size=(100, 52))
    f = clip_features(b)
    n_au = len(F.FEATURE_NAMES) - 4
    assert np.all(f[:, :n_au] >= 0) and np.all(np.percentile(f[:, :n_au], 5, axis=0) < 0.01)
    assert np.allclose(np.median(f[:, n_au:], axis=0), 0)


def test_ridge_with_per_clip_intercepts_recovers_the_basis():
    rng = np.random.default_rng(3)
    true = rng.normal(size=(4, 6))
    groups = []
    for clip in range(3):
        x = rng.uniform(size=(200, 4))
        y = x @ true + rng.normal(size=6) * 5  # each clip its own offset (identity)
        groups.append((x, y))
    w = fit_ridge(groups, lam=1e-6)
    np.testing.assert_allclose(w, true, atol=1e-6)


def test_one_sided_mouth_actions_stay_on_their_side():
    v = M.canonical_mesh().vertices
    allowed = allowed_features(v)
    names = list(RENDER_FEATURES)
    subject_left_corner, subject_right_corner = 291, 61  # image right, image left
    for au in ("AU10", "AU12", "AU14", "AU15", "AU20"):
        left, right = names.index(f"{au}_L"), names.index(f"{au}_R")
        assert allowed[left, subject_left_corner] and not allowed[left, subject_right_corner]
        assert allowed[right, subject_right_corner] and not allowed[right, subject_left_corner]
    # the lip centre may move with either side; a sideways shift moves the whole mouth
    assert allowed[names.index("AU12_L"), 0] and allowed[names.index("AU12_R"), 0]
    assert allowed[names.index("MOUTH_L"), subject_right_corner] and allowed[names.index("MOUTH_L"), subject_left_corner]


def test_pose_normalisation_removes_similarity():
    v = M.canonical_mesh().vertices
    pts = np.vstack([v, v[:10]])  # 478 points
    from vcam_me.geometry import euler_to_rotation

    r = euler_to_rotation([10, -5, 3])
    moved = 230.0 * pts @ r.T + np.array([300.0, 200.0, 5.0])
    aligned, (_s, _, _) = M.normalise_pose(moved)
    np.testing.assert_allclose(aligned[:468], v, atol=1e-9)
    assert abs(M.interocular(moved) - 230.0) < 1e-6
