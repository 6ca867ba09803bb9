"""delaunay_triangles: the empty-circle property and full cover checked directly, degenerate
inputs, and the same triangles as scipy's Qhull where scipy is installed."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from vcam_me.avatar.delaunay import MAX_POINTS, delaunay_triangles

#: Relative slack for the checks below (the function's own tolerances are tighter).
AREA_SLACK = 1e-9


def _area(points: np.ndarray, tris: np.ndarray) -> np.ndarray:
    a, b, c = points[tris[:, 0]], points[tris[:, 1]], points[tris[:, 2]]
    return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))


def _hull_area(points: np.ndarray) -> float:
    return float(cv2.contourArea(cv2.convexHull(points.astype(np.float64).astype(np.float32))))


def _check_delaunay(points: np.ndarray, tris: np.ndarray) -> None:
    """Every triangle proper and counter-clockwise (x right, y up), the triangles tile the
    convex hull, and no point lies strictly inside a triangle's circumcircle."""
    areas = _area(points, tris)
    assert np.all(areas > 0)
    hull = _hull_area(points)
    assert abs(areas.sum() - hull) <= 1e-4 * hull  # float32 hull: loose
    scale = np.ptp(points, axis=0).max() ** 4
    for t in tris:
        # in-circle determinant of (a - d, b - d, c - d) with the squared norms: > 0 inside
        rows = []
        for corner in points[t]:
            dx, dy = corner[0] - points[:, 0], corner[1] - points[:, 1]
            rows.append((dx, dy, dx * dx + dy * dy))
        (ax, ay, aw), (bx, by, bw), (cx, cy, cw) = rows
        det = ax * (by * cw - bw * cy) - ay * (bx * cw - bw * cx) + aw * (bx * cy - by * cx)
        assert np.all(det <= AREA_SLACK * scale), t


@pytest.mark.parametrize("seed", range(5))
def test_random_points_are_triangulated_as_delaunay(seed):
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, 800, size=(int(rng.integers(3, MAX_POINTS + 1)), 2))
    tris = delaunay_triangles(points)
    _check_delaunay(points, tris)
    assert set(tris.ravel()) == set(range(len(points)))  # in general position every point is a corner
    # canonical: each starts at its smallest index; the list is sorted
    assert np.all(tris[:, 0] < tris[:, 1]) and np.all(tris[:, 0] < tris[:, 2])
    assert [tuple(t) for t in tris] == sorted(tuple(t) for t in tris)


def test_a_grid_with_cocircular_points_is_still_a_tiling():
    points = np.stack(np.meshgrid(np.arange(5.0), np.arange(4.0)), -1).reshape(-1, 2) * 10
    tris = delaunay_triangles(points)
    assert len(tris) == 2 * 4 * 3  # two triangles per unit square
    _check_delaunay(points, tris)


def test_repeated_points_are_triangulated_once_under_their_first_index():
    rng = np.random.default_rng(9)
    points = rng.uniform(0, 100, size=(12, 2))
    points[7] = points[3]
    tris = delaunay_triangles(points)
    assert 3 in tris and 7 not in tris
    without = delaunay_triangles(np.delete(points, 7, axis=0))
    np.testing.assert_array_equal(np.where(tris > 7, tris - 1, tris), without)


@pytest.mark.parametrize("points", [np.zeros((0, 2)), np.ones((2, 2)), np.ones((5, 2)),
                                    np.stack([np.arange(6.0), 2 * np.arange(6.0)], 1)])
def test_too_few_or_collinear_points_give_no_triangle(points):
    assert delaunay_triangles(points).shape == (0, 3)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        delaunay_triangles(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="finite"):
        delaunay_triangles(np.array([[0, 0], [1, 0], [0, np.nan]]))
    with pytest.raises(ValueError, match="at most"):
        delaunay_triangles(np.random.default_rng(0).uniform(size=(MAX_POINTS + 1, 2)))


def test_same_triangles_as_scipy():
    spatial = pytest.importorskip("scipy.spatial", reason="scipy (the [dev] extra) is the reference; not installed")
    rng = np.random.default_rng(1)
    for _ in range(200):
        points = rng.uniform(0, 800, size=(int(rng.integers(3, MAX_POINTS + 1)), 2))
        ours = {tuple(sorted(t)) for t in delaunay_triangles(points).tolist()}
        theirs = {tuple(sorted(t)) for t in spatial.Delaunay(points).simplices.tolist()}
        assert ours == theirs
