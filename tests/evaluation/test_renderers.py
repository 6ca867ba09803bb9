"""Image-quality helpers of the three-renderer evaluation."""

from __future__ import annotations

import numpy as np

from vcam_me.avatar import mesh
from vcam_me.avatar.crop import CROP_SIZE, crop_points
from vcam_me.evaluation import renderers as R


def _crop_landmarks() -> np.ndarray:
    v = mesh.canonical_mesh().vertices[:, :2]
    from vcam_me.avatar.crop import CROP_CENTRE_IOD, CROP_HALF_IOD

    pts = (v - np.asarray(CROP_CENTRE_IOD)) * (CROP_SIZE / (2 * CROP_HALF_IOD)) + CROP_SIZE / 2
    return np.vstack([pts, np.repeat(pts[[468 - 1]], 10, axis=0)])


def test_regions_sit_on_the_mouth_and_the_eyes():
    lm = _crop_landmarks()
    masks = R.region_masks(lm)
    assert set(masks) == {"face", "mouth", "eyes"}
    assert 0.3 < masks["face"].mean() < 0.8
    mouth_y = np.nonzero(masks["mouth"].any(1))[0]
    eyes_y = np.nonzero(masks["eyes"].any(1))[0]
    assert eyes_y.max() < mouth_y.min(), "eyes above the mouth"
    assert masks["mouth"][int(lm[13, 1]), int(lm[13, 0])] and masks["eyes"][int(lm[159, 1]), int(lm[159, 0])]


def test_psnr_and_ssim_rank_a_closer_image_higher():
    rng = np.random.default_rng(0)
    real = rng.integers(0, 255, (CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
    near = np.clip(real.astype(int) + rng.integers(-5, 6, real.shape), 0, 255).astype(np.uint8)
    far = np.clip(real.astype(int) + rng.integers(-60, 61, real.shape), 0, 255).astype(np.uint8)
    lm = _crop_landmarks()
    q_near, q_far = R.image_quality(near, real, lm), R.image_quality(far, real, lm)
    for region in ("face", "mouth", "eyes"):
        assert q_near[region][0] > q_far[region][0] + 10
        assert q_near[region][1] > q_far[region][1]
    same = R.image_quality(real, real, lm)
    assert same["face"][0] == float("inf") and abs(same["face"][1] - 1.0) < 1e-9


def test_aligned_crop_of_the_canonical_face_matches_the_crop_layout():
    v = mesh.canonical_mesh().vertices[:, :2] * 60 + (320, 240)
    points = np.vstack([v, np.zeros((10, 2))])
    image = np.zeros((480, 640, 3), np.uint8)
    crop, lm = R.aligned_crop(image, points)
    assert crop.shape == (CROP_SIZE, CROP_SIZE, 3)
    from vcam_me.avatar.crop import ALIGN_IDS

    assert np.abs(lm[list(ALIGN_IDS)] - crop_points()).max() < 1e-6
