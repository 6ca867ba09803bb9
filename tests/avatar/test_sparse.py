"""SparseRows: the renderer's fixed sparse map, checked against a dense product, against
scipy's CSR product where scipy is installed, and on the sample avatar's real warp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vcam_me.avatar.sparse import SparseRows

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "assets" / "avatars" / "sample"


def _random_coo(rng: np.random.Generator, n_rows: int, n_cols: int, per_row: int):
    """COO entries with a varying number per row (0 to per_row), some positions repeated."""
    rows, cols = [], []
    for r in range(n_rows):
        k = int(rng.integers(0, per_row + 1))
        rows += [r] * k
        cols += list(rng.integers(0, n_cols, k))
    vals = rng.normal(size=len(rows)).astype(np.float32)
    return np.array(rows, np.int64), np.array(cols, np.int64), vals


def _dense(rows, cols, vals, shape) -> np.ndarray:
    dense = np.zeros(shape, np.float64)
    np.add.at(dense, (rows, cols), vals.astype(np.float64))
    return dense


def test_product_equals_the_dense_product():
    rng = np.random.default_rng(3)
    rows, cols, vals = _random_coo(rng, 500, 40, 6)
    matrix = SparseRows.from_coo(rows, cols, vals, (500, 40))
    d = rng.normal(size=(40, 2)).astype(np.float32)
    out = matrix @ d
    assert out.shape == (500, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out, _dense(rows, cols, vals, (500, 40)) @ d, rtol=1e-5, atol=1e-5)


def test_repeated_positions_are_summed_and_zero_values_kept():
    matrix = SparseRows.from_coo([1, 1, 0, 1], [2, 2, 0, 0], [0.25, 0.5, 0.0, 1.0], (3, 3))
    assert matrix.nnz == 3  # (0, 0) = 0 kept, (1, 0), (1, 2) = 0.75
    np.testing.assert_array_equal(matrix.indptr, [0, 1, 3, 3])
    np.testing.assert_array_equal(matrix.indices, [0, 0, 2])
    np.testing.assert_array_equal(matrix.data, np.float32([0.0, 1.0, 0.75]))
    d = np.float32([[1, 2], [3, 4], [5, 6]])
    np.testing.assert_array_equal(matrix @ d, np.float32([[0, 0], [1 + 3.75, 2 + 4.5], [0, 0]]))


def test_empty_matrix_and_empty_rows_give_zeros():
    empty = SparseRows.from_coo([], [], [], (4, 2))
    np.testing.assert_array_equal(empty @ np.ones((2, 2), np.float32), np.zeros((4, 2), np.float32))


def test_csr_round_trip():
    rng = np.random.default_rng(5)
    rows, cols, vals = _random_coo(rng, 200, 30, 5)
    matrix = SparseRows.from_coo(rows, cols, vals, (200, 30))
    arrays = matrix.csr_arrays()
    again = SparseRows.from_csr(arrays["data"], arrays["indices"], arrays["indptr"], arrays["shape"])
    d = rng.normal(size=(30, 2)).astype(np.float32)
    np.testing.assert_array_equal(again @ d, matrix @ d)


@pytest.mark.parametrize("broken", [
    {"indptr": [0, 1]},  # too short for 3 rows
    {"indptr": [0, 2, 1, 3]},  # decreasing
    {"indices": [0, 5, 1]},  # column out of range
    {"data": [1.0, 2.0]},  # data and indices differ
])
def test_bad_csr_arrays_are_refused(broken):
    arrays = {"data": [1.0, 2.0, 3.0], "indices": [0, 1, 1], "indptr": [0, 1, 2, 3], "shape": (3, 2)}
    arrays.update(broken)
    with pytest.raises(ValueError, match="CSR arrays"):
        SparseRows.from_csr(**arrays)


def test_entries_outside_the_shape_and_wrong_displacements_are_refused():
    with pytest.raises(ValueError, match="outside the shape"):
        SparseRows.from_coo([0, 3], [0, 0], [1.0, 1.0], (3, 2))
    matrix = SparseRows.from_coo([0], [1], [1.0], (3, 2))
    with pytest.raises(ValueError, match=r"must be \(2, 2\)"):
        matrix @ np.zeros((3, 2), np.float32)


def test_equals_scipy_csr_product_exactly():
    sparse = pytest.importorskip("scipy.sparse", reason="scipy (the [dev] extra) is the reference; not installed")
    rng = np.random.default_rng(7)
    rows, cols, vals = _random_coo(rng, 3000, 481, 5)
    ours = SparseRows.from_coo(rows, cols, vals, (3000, 481))
    theirs = sparse.csr_matrix((vals, (rows, cols)), shape=(3000, 481))
    theirs.sum_duplicates()
    np.testing.assert_array_equal(ours.indptr, theirs.indptr)
    np.testing.assert_array_equal(ours.indices, theirs.indices)
    np.testing.assert_array_equal(ours.data, theirs.data)
    d = rng.normal(size=(481, 2)).astype(np.float32)
    # same float32 products summed in the same order: the same bits
    np.testing.assert_array_equal(ours @ d, theirs @ d)


def test_the_sample_avatars_warp_equals_its_dense_form():
    from vcam_me.avatar import Avatar, AvatarRenderer

    renderer = AvatarRenderer.create(Avatar.load(SAMPLE))
    matrix = renderer._matrix
    dense = np.zeros(matrix.shape, np.float64)
    row_of = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    dense[row_of, matrix.indices] = matrix.data
    d = np.random.default_rng(11).normal(scale=5.0, size=(matrix.shape[1], 2)).astype(np.float32)
    np.testing.assert_allclose(matrix @ d, dense @ d, rtol=1e-5, atol=1e-4)
