"""The renderer without scipy draws what it drew with scipy: the sample avatar rendered with our
Delaunay and sparse map, against the same renderer built on ``scipy.spatial.Delaunay`` and
``scipy.sparse.csr_matrix`` (the code before scipy left the runtime). Skipped where scipy (the
[dev] extra) is not installed. Also: a warp cache written in the scipy version's layout loads."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from vcam_me.avatar import Avatar, AvatarRenderer
from vcam_me.avatar import renderer as renderer_module
from vcam_me.types import AU_INDEX, ExpressionState

scipy_sparse = pytest.importorskip("scipy.sparse", reason="scipy (the [dev] extra) is the reference; not installed")
scipy_spatial = pytest.importorskip("scipy.spatial", reason="scipy (the [dev] extra) is the reference; not installed")

SAMPLE = Path(__file__).resolve().parents[2] / "assets" / "avatars" / "sample"
#: Largest difference of one channel of one pixel, and the mean over the frame, in grey levels
#: (the two differ by float32 rounding of a few barycentric weights at most).
MAX_PIXEL_DIFFERENCE = 1
MEAN_PIXEL_DIFFERENCE = 0.001


class _ScipyRows:
    """The scipy version's sparse matrix, built as it was built (COO → CSR, duplicates summed)."""

    @staticmethod
    def from_coo(rows, cols, values, shape):
        matrix = scipy_sparse.csr_matrix((np.asarray(values, np.float32), (rows, cols)), shape=shape)
        matrix.sum_duplicates()
        return matrix


def _scipy_delaunay(points):
    return scipy_spatial.Delaunay(points).simplices


def _state(au: dict, gaze=0.0, pose=(0.0, 0.0, 0.0)) -> ExpressionState:
    neutral = ExpressionState.neutral(0)
    values = neutral.au.copy()
    for name, v in au.items():
        values[AU_INDEX[name]] = v
    return ExpressionState(0, values, np.full((2, 2), gaze, np.float32), np.asarray(pose, np.float32))


STATES = [
    _state({}),
    _state({"AU12_L": 0.8, "AU12_R": 0.7, "AU26": 0.5}),
    _state({"AU43_L": 0.9, "AU43_R": 0.6}),  # the eye patches are redrawn
    _state({"AU1": 0.6, "AU4_R": 0.5}, gaze=0.4),  # the iris moves
    _state({"AU12_L": 0.4, "AU20_R": 0.6}, pose=(12.0, -8.0, 4.0)),  # the whole head region
]


@pytest.fixture(scope="module")
def both():
    avatar = Avatar.load(SAMPLE)
    ours = AvatarRenderer.create(avatar)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(renderer_module, "delaunay_triangles", _scipy_delaunay)
        patch.setattr(renderer_module, "SparseRows", _ScipyRows)
        theirs = AvatarRenderer.create(avatar)
    assert isinstance(theirs._matrix, scipy_sparse.csr_matrix)  # the reference really is scipy's
    return ours, theirs


@pytest.mark.parametrize("index", range(len(STATES)))
def test_renders_match_the_scipy_version(both, index):
    ours, theirs = both
    a = ours.render(STATES[index]).astype(np.int16)
    b = theirs.render(STATES[index]).astype(np.int16)
    difference = np.abs(a - b)
    assert difference.max() <= MAX_PIXEL_DIFFERENCE
    assert difference.mean() <= MEAN_PIXEL_DIFFERENCE


def test_the_warps_hold_the_same_weights(both):
    ours, theirs = both
    pairs = [(ours._matrix, theirs._matrix)] + [(p.matrix, q.matrix) for p, q in zip(ours._patches, theirs._patches)]
    for mine, reference in pairs:
        reference.sort_indices()
        np.testing.assert_array_equal(mine.indptr, reference.indptr)
        np.testing.assert_array_equal(mine.indices, reference.indices)
        # the eye triangles' corners come in another order, which moves a weight by an ulp
        np.testing.assert_allclose(mine.data, reference.data, rtol=0, atol=1e-6)


def test_a_warp_cache_in_the_scipy_versions_layout_loads(both, tmp_path):
    """The cache keeps its file layout (CSR arrays from csr_matrix), so a cache written before
    scipy left the runtime is read, not recomputed."""
    _, theirs = both
    avatar = Avatar.load(SAMPLE)
    AvatarRenderer.create(avatar, cache_dir=tmp_path)
    (path,) = tmp_path.glob("warp-*.npz")
    arrays = {"bbox": np.asarray(theirs.bbox, np.int64), "grid": np.asarray(theirs._grid, np.int64)}
    named = [("warp", theirs._matrix)] + [(f"patch{i}", p.matrix) for i, p in enumerate(theirs._patches) if p]
    for prefix, matrix in named:
        arrays.update({f"{prefix}_data": matrix.data, f"{prefix}_indices": matrix.indices,
                       f"{prefix}_indptr": matrix.indptr, f"{prefix}_shape": np.asarray(matrix.shape, np.int64)})
    for i, p in enumerate(theirs._patches):
        if p is not None:
            arrays[f"patch{i}_box"] = np.asarray(p.box, np.int64)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path.write_bytes(buffer.getvalue())
    cached = AvatarRenderer.create(avatar, cache_dir=tmp_path)
    assert np.array_equal(cached._matrix.data, theirs._matrix.data)  # read from the file, not rebuilt
    for state in STATES:
        np.testing.assert_array_equal(cached.render(state), theirs.render(state))
