"""Delaunay triangulation of a small 2-D point set, in numpy.

The renderer re-triangulates each eye opening around the iris: about thirty points, once per
avatar and output size. At that size the definition itself is the simplest exact algorithm:
a triangle belongs to the triangulation when no other point lies inside its circumcircle.
All triples are tested against all points at once (``n³/6 × n`` in-circle tests: 0.1 M for 30
points), which gets the thin triangles along the convex hull right. OpenCV's ``Subdiv2D`` was
tried first and loses some of those: its outer vertices are at a finite distance, so a hull
triangle whose circumcircle reaches them is replaced by one that uses them (105 of 300 random
sets of 3 to 40 points differed from Qhull's triangulation).

Where four or more points lie on one empty circle (a square grid; a regular polygon), any
triangulation of that convex face is Delaunay; the face is fanned from its lowest index.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

#: Above this many points the all-triples test grows large (time and memory ~ n⁴); the renderer
#: triangulates about 30.
MAX_POINTS = 40
#: Collinearity and co-circularity tolerances, relative to the point set's extent (squared
#: for the triangle area, to the fourth power for the in-circle determinant).
AREA_TOLERANCE = 1e-12
CIRCLE_TOLERANCE = 1e-10


def delaunay_triangles(points: np.ndarray) -> np.ndarray:
    """Delaunay triangles of ``points (n, 2)``: ``(T, 3) int64`` indices into ``points``.

    A repeated point is triangulated once, under its first index. Each triangle starts at its
    smallest index and turns counter-clockwise in x-right, y-up axes (so clockwise on an image,
    whose y points down); the list is sorted. Fewer than three distinct points, or all of them
    on one line, give no triangle. Raises ValueError for more than :data:`MAX_POINTS` points,
    a wrong shape, or a non-finite coordinate.
    """
    pts = np.asarray(points, np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"points must be (n, 2), got {pts.shape}")
    if len(pts) > MAX_POINTS:
        raise ValueError(f"at most {MAX_POINTS} points can be triangulated here, got {len(pts)}")
    if not np.all(np.isfinite(pts)):
        raise ValueError("points must be finite")
    _, first = np.unique(pts, axis=0, return_index=True)
    keep = np.sort(first)  # the first occurrence of each distinct point, in input order
    if len(keep) < 3:
        return np.zeros((0, 3), np.int64)
    local = pts[keep] - pts[keep].mean(0)
    scale = float(np.abs(local).max())
    local /= scale  # extent ~1: the tolerances below are relative

    triples = np.array(list(combinations(range(len(local)), 3)), np.int64)
    a, b, c = local[triples[:, 0]], local[triples[:, 1]], local[triples[:, 2]]
    cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    proper = np.abs(cross) > AREA_TOLERANCE
    triples, a, b, c, cross = triples[proper], a[proper], b[proper], c[proper], cross[proper]
    # counter-clockwise corners, so that "inside the circumcircle" is a positive determinant
    clockwise = cross < 0
    b[clockwise], c[clockwise] = c[clockwise].copy(), b[clockwise].copy()
    triples[clockwise, 1], triples[clockwise, 2] = triples[clockwise, 2], triples[clockwise, 1].copy()
    inside = _in_circle(a, b, c, local)  # (triples, points)
    empty = ~np.any(inside > CIRCLE_TOLERANCE, axis=1)

    triangles: set[tuple[int, int, int]] = set()
    faces_done: set[frozenset[int]] = set()
    for t, row in zip(triples[empty], inside[empty]):
        on_circle = np.flatnonzero(np.abs(row) <= CIRCLE_TOLERANCE)
        if len(on_circle) <= 3:
            triangles.add(_canonical(*t))
            continue
        face = frozenset(on_circle.tolist())
        if face in faces_done:
            continue
        faces_done.add(face)
        triangles.update(_fan(np.array(sorted(face)), local))
    if not triangles:
        return np.zeros((0, 3), np.int64)
    return np.array(sorted(_canonical(*(keep[list(t)])) for t in triangles), np.int64)


def _in_circle(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``(T, n)``: positive where point ``d[j]`` lies inside the circumcircle of the
    counter-clockwise triangle ``(a[i], b[i], c[i])``, zero on it, negative outside."""
    rows = []
    for corner in (a, b, c):
        dx = corner[:, None, 0] - d[None, :, 0]
        dy = corner[:, None, 1] - d[None, :, 1]
        rows.append((dx, dy, dx * dx + dy * dy))
    (ax, ay, aw), (bx, by, bw), (cx, cy, cw) = rows
    return ax * (by * cw - bw * cy) - ay * (bx * cw - bw * cx) + aw * (bx * cy - by * cx)


def _fan(face: np.ndarray, local: np.ndarray) -> list[tuple[int, int, int]]:
    """Triangles fanning the convex face whose corners are ``face`` (indices into ``local``)
    from its lowest index."""
    centre = local[face].mean(0)
    angle = np.arctan2(local[face, 1] - centre[1], local[face, 0] - centre[0])
    ring = face[np.argsort(angle)]  # counter-clockwise
    start = int(np.argmin(ring))
    ring = np.roll(ring, -start)
    return [_canonical(int(ring[0]), int(ring[i]), int(ring[i + 1])) for i in range(1, len(ring) - 1)]


def _canonical(a: int, b: int, c: int) -> tuple[int, int, int]:
    """The same cyclic order, starting from the smallest index."""
    corners = (int(a), int(b), int(c))
    start = corners.index(min(corners))
    return corners[start:] + corners[:start]
