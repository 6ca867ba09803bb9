"""Cross-talk compensation: the fit on synthetic responses, the probe on a fake and on the real renderer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vcam_me.training import calibrate_mixing as cm
from vcam_me.training.features import FEATURE_NAMES, mirror_features
from vcam_me.types import AU_INDEX, BLENDSHAPE_INDEX, DRIVING_AU_CHANNELS

ROOT = Path(__file__).resolve().parents[2]
N = cm.N_AU


def idx(name: str) -> int:
    return DRIVING_AU_CHANNELS.index(name)


def synthetic_response(seed: int = 0) -> np.ndarray:
    """Own responses between 0.4 and 1, small cross-talk everywhere."""
    rng = np.random.default_rng(seed)
    r = rng.uniform(-0.08, 0.08, (N, N))
    np.fill_diagonal(r, rng.uniform(0.4, 1.0, N))
    return r


def test_fit_recovers_a_known_mixing():
    r = synthetic_response()
    r[idx("AU2_L"), idx("AU4_L")] = 0.3  # a lowered brow reads as a raised outer brow
    mixing, read = cm.fit_mixing(r, ridge=1e-8)
    assert read.all()
    np.testing.assert_allclose(r @ mixing[:N, :N], np.eye(N), atol=1e-5)
    assert mixing[idx("AU2_L"), idx("AU4_L")] < -0.1  # drawn with less outer brow to cancel it


def test_keep_scale_undoes_only_the_cross_talk():
    r = synthetic_response(1)
    mixing, _ = cm.fit_mixing(r, ridge=1e-8, keep_scale=True)
    np.testing.assert_allclose(r @ mixing[:N, :N], np.diag(np.diag(r)), atol=1e-5)


def test_unread_channels_and_gaze_keep_the_identity():
    r = synthetic_response(2)
    blind = [idx("AU9_L"), idx("AU9_R"), idx("AU5_L")]
    r[blind, blind] = 0.01
    r[idx("AU10_L"), idx("AU9_L")] = 0.5  # the nose wrinkle reads as a raised lip: left as is
    mixing, read = cm.fit_mixing(r)
    assert not read[blind].any() and read.sum() == N - len(blind)
    eye = np.eye(len(FEATURE_NAMES))
    for j in blind:
        np.testing.assert_array_equal(mixing[:, j], eye[:, j])
        np.testing.assert_array_equal(mixing[j], eye[j])
    np.testing.assert_array_equal(mixing[N:], eye[N:])
    np.testing.assert_array_equal(mixing[:, N:], eye[:, N:])


def test_fit_is_bounded():
    r = np.eye(N) * 0.16  # barely read: the exact inverse would draw everything ×6
    r[idx("AU12_R"), idx("AU12_L")] = 0.15  # and a smile on one side reads on both
    mixing, _ = cm.fit_mixing(r, ridge=1e-8)
    diag = np.diag(mixing)[:N]
    assert diag.max() <= cm.DIAGONAL_LIMITS[1] and diag.min() >= cm.DIAGONAL_LIMITS[0]
    off = mixing[:N, :N] - np.diag(diag)
    assert np.abs(off).max() <= cm.OFF_DIAGONAL_LIMIT


def test_mirrored_pool_gives_symmetric_pairs():
    r = synthetic_response(3)
    r[idx("AU7_R"), idx("AU7_R")] = 0.9
    r[idx("AU7_L"), idx("AU7_L")] = 0.4  # one side reads weaker on this avatar
    pooled = cm.pooled_response([r, synthetic_response(4)])
    np.testing.assert_allclose(pooled, cm.mirrored(pooled))
    mixing, _ = cm.fit_mixing(pooled)
    swap = mirror_features()[0].astype(int)
    np.testing.assert_allclose(mixing[np.ix_(swap, swap)], mixing, atol=1e-6)
    assert mixing[idx("AU7_L"), idx("AU7_L")] == pytest.approx(mixing[idx("AU7_R"), idx("AU7_R")])


def test_mirrored_swaps_sides():
    r = np.zeros((N, N))
    r[idx("AU2_L"), idx("AU4_L")] = 1.0
    m = cm.mirrored(r)
    assert m[idx("AU2_R"), idx("AU4_R")] == 1.0 and m.sum() == 1.0


def test_pool_skips_what_an_avatar_could_not_read():
    a, b = synthetic_response(5), synthetic_response(6)
    b[:, 3] = np.nan
    pooled = cm.pooled_response([a, b], symmetric=False)
    np.testing.assert_allclose(pooled[:, 3], a[:, 3])
    np.testing.assert_allclose(pooled[:, 4], 0.5 * (a[:, 4] + b[:, 4]))


def test_probe_measures_a_linear_fake():
    """The probe's plumbing: a fake renderer + tracker whose read-back is rest + R_true · features."""
    r_true = synthetic_response(7)
    rest = np.full(52, 0.05)
    shapes = [BLENDSHAPE_INDEX[s] for s in _blendshape_of_channel()]

    def render(state):
        return np.asarray(state.au, np.float64)[[AU_INDEX[c] for c in DRIVING_AU_CHANNELS]]

    def read(features):
        out = rest.copy()
        out[shapes] += r_true @ features
        return out

    got = cm.probe_response(render, read, levels=(0.1, 0.2))
    np.testing.assert_allclose(got, r_true, atol=1e-5)


def _blendshape_of_channel() -> list[str]:
    from vcam_me.training.features import _CHANNEL_TO_BLENDSHAPE

    return [_CHANNEL_TO_BLENDSHAPE[c] for c in DRIVING_AU_CHANNELS]


def test_probe_on_the_real_renderer_reads_jaw_open():
    from vcam_me.avatar import AUBasis, Avatar, AvatarRenderer
    from vcam_me.models import verified_model_path
    from vcam_me.tracking.mediapipe_tracker import FaceTracker

    renderer = AvatarRenderer.create(Avatar.load(ROOT / "assets" / "avatars" / "sample"), (640, 360),
                                     basis=AUBasis.load())
    with FaceTracker.create(verified_model_path("face_landmarker"), mode="image") as tracker:
        def read(image):
            faces = tracker.detect_image(image)
            return faces[0].blendshapes if faces else None

        got = cm.probe_response(renderer.render, read, levels=(0.3, 0.6), features=[idx("AU26")])
    assert got[idx("AU26"), idx("AU26")] > 0.5
    assert np.isnan(got[:, idx("AU1")]).all()


def test_only_compensates_the_named_aus():
    r = synthetic_response(8)
    mixing, read = cm.fit_mixing(r, ridge=1e-8, only=["AU4", "AU2"])
    assert {DRIVING_AU_CHANNELS[i] for i in np.flatnonzero(read)} == {"AU2_L", "AU2_R", "AU4_L", "AU4_R"}
    eye = np.eye(len(FEATURE_NAMES))
    np.testing.assert_array_equal(mixing[:, idx("AU12_L")], eye[:, idx("AU12_L")])
    assert mixing[idx("AU2_L"), idx("AU4_L")] != 0.0
