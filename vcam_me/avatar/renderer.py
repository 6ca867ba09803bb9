"""The avatar renderer: ExpressionState → ``(H, W, 3) uint8 RGB`` frame, ≤ 6 ms at 720p on one core.

How a frame is made (design.md §4):

1. **Geometry.** The fitted basis turns the driving AUs and gaze into displacements of the
   avatar's 478-point mesh in the canonical, pose-normalised frame; they are rotated into
   the portrait's own pose and scaled to its size, added to the reference mesh, the lids
   and irises are kept from crossing, and the 3-D mesh is turned by ``state.head_pose``
   (relative to the portrait's own rest pose) about MediaPipe's canonical head origin and
   projected orthographically.
2. **Forward displacement field at 1/k resolution** (k = ``warp_downscale``) =
   precomputed sparse matrix @ [vertex displacements; 3 control-point displacements].
   Grid points inside the face take barycentric weights in the reference triangles. Points
   outside follow the head's rigid motion (an affine field carried by 3 control points)
   with a smooth falloff to zero, plus, near the face boundary, the boundary vertices'
   non-rigid part, so the field is continuous across the face outline (no tearing).
3. **Inverse warp.** One fixed-point iteration at low resolution (src = q − Δ(q − Δ(q))),
   bilinear upsampling, ``cv2.convertMaps`` to fixed point and one ``cv2.remap`` of the
   head region's bounding box only; the rest of the frame is the static framed portrait.
4. **Mouth interior.** When the lips part more than in the portrait, the inner-lip polygon
   is filled with a dark colour (antialiased, soft edge), faded in with the opening.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from vcam_me.avatar import mesh as M
from vcam_me.avatar.appearance import condition_of
from vcam_me.avatar.avatar import Avatar
from vcam_me.avatar.basis import FEATURE_NAMES, AUBasis, state_features
from vcam_me.avatar.delaunay import delaunay_triangles
from vcam_me.avatar.sparse import SparseRows
from vcam_me.config import AvatarOptions
from vcam_me.geometry import euler_to_rotation
from vcam_me.types import NUM_LANDMARKS, ExpressionState

#: Image frame (x right, y down, z away) ↔ MediaPipe camera frame (x right, y up, z toward).
_FLIP = np.diag([1.0, -1.0, -1.0])
#: Framing of the portrait in the output: face height (forehead→chin) as a fraction of the
#: output height, and where the eye midpoint goes (fractions of width, height).
FACE_HEIGHT_FRACTION = 0.40
EYES_AT = (0.5, 0.43)
#: With a row to keep clear (the label's badge), the chin stays this far above it (fraction of
#: the height); the face moves up for that until the forehead's top reaches ``FACE_TOP_LIMIT``
#: of the height, and only then gets smaller (to half its size at most).
CHIN_CLEARANCE = 0.03
FACE_TOP_LIMIT = 0.10
#: Dark mouth interior (RGB) and how far the lips must part beyond the portrait's rest gap
#: (in IOD) before it is fully shown.
MOUTH_COLOUR = np.array([46, 20, 24], np.float32)
MOUTH_FULL_GAP_IOD = 0.06
#: Eye closure is drawn explicitly (the fitted lid motion is driver-sized, not this
#: avatar's): closure = clip(BLINK_GAIN · AU43, 0, 1) of the lid gap, AU43 taken after the
#: basis's cross-talk mixing but *not* its cross-identity gain. MediaPipe reads a fully closed
#: eye as eyeBlink ≈ 0.6–0.7 above rest, hence the gain; it is already set to what the tracker
#: reads, so the gain that makes up for it reading basis motion weakly on another face does
#: not belong here. With that gain (2.0) the lid was shut from AU43 ≈ 0.19 on a photo avatar,
#: and a drawn half-shut lid reads back mostly as eyeLookDown: the drivers' small lid movements
#: came out as a half-shut, downcast eye (benchmarks/README.md, "Eye closure").
BLINK_GAIN = 1.6
#: How far the iris may travel towards an eye corner, as a fraction of the room between its rest
#: place and that corner (less its radius and 2 px); a soft (tanh) limit.
IRIS_ROOM = 0.55
#: Lash line drawn along a closing lid (RGB).
LASH_COLOUR = np.array([38, 28, 28], np.float32)
#: Non-rigid motion of boundary vertices fades out over this many face widths outside the face.
EXPRESSION_FALLOFF = 0.35

#: Bounds of an AU feature after the cross-talk mixing: a compensating term may push it
#: somewhat below rest (negative) or past 1, never into a caricature. Gaze keeps [-1, 1].
MIXED_AU_RANGE = (-0.5, 1.5)

_LIP_PAIRS = ((13, 14), (82, 87), (81, 178), (80, 88), (312, 317), (311, 402), (310, 318))


def frame_portrait(image: np.ndarray, landmarks: np.ndarray, size: tuple[int, int],
                   keep_clear_row: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Place the portrait in a ``size = (W, H)`` frame: returns (canvas RGB, 2x3 photo→frame affine).

    The face is scaled to :data:`FACE_HEIGHT_FRACTION` of the height with the eyes at
    :data:`EYES_AT`; where the frame reaches beyond the photo, the photo's edge is
    replicated and heavily blurred, so the surround looks like out-of-focus background.

    ``keep_clear_row``: the first row of something drawn over the lower frame (the label's
    badge, which climbs higher on frames narrower than 16:9): the chin is kept
    :data:`CHIN_CLEARANCE` above it, by moving the face up and then making it smaller.
    """
    w_out, h_out = size
    ih, iw = image.shape[:2]
    px = M.landmarks_to_pixels(landmarks, (iw, ih))
    face_h = np.linalg.norm(px[M.CHIN, :2] - px[M.FOREHEAD_TOP, :2])
    eyes = 0.5 * (px[list(M.RIGHT_EYE), :2].mean(0) + px[list(M.LEFT_EYE), :2].mean(0))
    s = FACE_HEIGHT_FRACTION * h_out / max(face_h, 1.0)
    # The photo's own top/bottom edges should not show inside the frame if a slightly
    # larger face avoids it (up to 25 % larger).
    if ih * s < h_out and ih * s * 1.25 >= h_out:
        s = h_out / ih
    t = np.array([EYES_AT[0] * w_out, EYES_AT[1] * h_out]) - s * eyes
    if keep_clear_row is not None:
        s, t = _keep_chin_above(s, t, px, keep_clear_row - CHIN_CLEARANCE * h_out, FACE_TOP_LIMIT * h_out)
    affine = np.array([[s, 0.0, t[0]], [0.0, s, t[1]]])
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    sharp = cv2.warpAffine(image, affine, (w_out, h_out), flags=interp, borderMode=cv2.BORDER_REPLICATE)
    inside = cv2.warpAffine(np.ones((ih, iw), np.float32), affine, (w_out, h_out), flags=cv2.INTER_LINEAR, borderValue=0)
    if inside.min() > 0.999:
        return sharp, affine
    small = cv2.resize(sharp, (max(1, w_out // 8), max(1, h_out // 8)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), 4.0)
    blurred = cv2.resize(small, (w_out, h_out), interpolation=cv2.INTER_LINEAR)
    feather = max(3.0, 0.01 * h_out)
    mask = cv2.GaussianBlur(cv2.erode(inside, np.ones((3, 3), np.uint8), iterations=int(2 * feather)), (0, 0), feather)
    canvas = sharp * mask[..., None] + blurred * (1.0 - mask[..., None])
    return np.clip(canvas + 0.5, 0, 255).astype(np.uint8), affine


def _keep_chin_above(s: float, t: np.ndarray, px: np.ndarray, limit: float, top: float) -> tuple[float, np.ndarray]:
    """Scale ``s`` and offset ``t`` (photo → frame) moved so that the chin's row is at most
    ``limit``: first up, as far as the forehead's top may go (``top``), then smaller about
    the forehead's top, never below half the size."""
    chin, forehead = px[M.CHIN, :2], px[M.FOREHEAD_TOP, :2]
    t = np.asarray(t, np.float64).copy()
    over = s * chin[1] + t[1] - limit
    if over <= 0:
        return s, t
    t[1] -= min(over, max(s * forehead[1] + t[1] - top, 0.0))
    if s * chin[1] + t[1] <= limit:
        return s, t
    anchor = s * forehead + t  # the forehead's top stays where it is while the face shrinks
    s_new = max(s * (limit - anchor[1]) / max(s * (chin[1] - forehead[1]), 1e-6), 0.5 * s)
    return s_new, anchor - s_new * forehead


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _affine_coords(points: np.ndarray, ctrl: np.ndarray) -> np.ndarray:
    """Barycentric (affine) coordinates ``(n, 3)`` of 2-D ``points`` w.r.t. triangle ``ctrl (3, 2)``."""
    a = np.vstack([ctrl.T, np.ones(3)])  # (3, 3)
    rhs = np.vstack([points.T, np.ones(len(points))])
    return np.linalg.solve(a, rhs).T


@dataclass(frozen=True)
class EyeRig:
    """Index data for one eye: lids kept apart, iris kept between them."""

    upper: np.ndarray  # (m,) upper-lid contour vertices
    lower_pair: np.ndarray  # (m,) the lower-lid vertex opposite each
    mid_upper: int
    mid_lower: int
    iris: np.ndarray  # iris vertices inside the opening (centre, maybe more)
    down: np.ndarray  # (3,) unit vector upper → lower lid at rest
    rest_open: float  # rest opening along ``down`` (pixels)
    blink_feature: int  # index of this eye's AU43 feature
    corners: tuple[int, int] = (0, 0)  # (inner, outer) corner vertices
    lid_colour: np.ndarray | None = None  # (3,) RGB of the lid skin above the opening
    disc_radius: float = 0.0  # radius (pixels) of the rigid iris disc


#: The iris is moved as a rigid disc of this fraction of its radius (the sclera around it
#: stretches), so a gaze shift moves a sharp iris instead of smearing the whole eye.
IRIS_DISC = 0.75


def _triangulation(v2: np.ndarray) -> tuple[np.ndarray, list, np.ndarray, np.ndarray]:
    """Render triangles over the reference mesh ``v2 (478, 2)``.

    The canonical triangles, except that each eye opening is re-triangulated around the
    iris: its centre plus a ring of extra points that move with the centre (a rigid disc).
    Returns ``(triangles (T, 3) into points, eye rig data, points (478 + n, 2), owner
    (478 + n,))``; ``owner[i]`` is the mesh vertex whose displacement point ``i`` takes.
    """
    tris = M.canonical_mesh().triangles
    rigs = []
    keep = np.ones(len(tris), bool)
    extra_tris = []
    points = [v2]
    owner = list(range(len(v2)))
    for contour, iris in ((M.RIGHT_EYE, M.IRIS_A), (M.LEFT_EYE, M.IRIS_B)):
        # MediaPipe's iris ring A belongs to whichever eye its centre sits in.
        c = np.asarray(contour)
        if np.linalg.norm(v2[iris[0]] - v2[c].mean(0)) > np.linalg.norm(v2[M.IRIS_B[0]] - v2[c].mean(0)):
            iris = M.IRIS_B if iris is M.IRIS_A else M.IRIS_A
        poly = v2[c].astype(np.float32).reshape(-1, 1, 2)
        centre = iris[0]
        inside = cv2.pointPolygonTest(poly, tuple(map(float, v2[centre])), True) > 1.0
        if inside:
            keep &= ~np.all(np.isin(tris, c), axis=1)
            radius = IRIS_DISC * float(np.mean(np.linalg.norm(v2[list(iris[1:])] - v2[centre], axis=1)))
            angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
            ring = v2[centre] + radius * np.stack([np.cos(angles), np.sin(angles)], 1)
            margin = max(1.5, 0.15 * radius)
            ring = np.array([p for p in ring if cv2.pointPolygonTest(poly, (float(p[0]), float(p[1])), True) > margin]).reshape(-1, 2)
            base = sum(len(p) for p in points)
            local = np.vstack([v2[c], v2[centre][None], ring])
            ids = np.concatenate([c, [centre], base + np.arange(len(ring))])
            points.append(ring)
            owner += [centre] * len(ring)
            for t in delaunay_triangles(local):
                cen = local[t].mean(0)
                if cv2.pointPolygonTest(poly, (float(cen[0]), float(cen[1])), False) > 0:
                    extra_tris.append(ids[t])
        lower, upper = c[:9], c[9:]
        pair = np.array([lower[np.argmin(np.abs(v2[lower, 0] - v2[u, 0]))] for u in upper])
        mid_u = M.RIGHT_EYE_UPPER if contour is M.RIGHT_EYE else M.LEFT_EYE_UPPER
        mid_l = M.RIGHT_EYE_LOWER if contour is M.RIGHT_EYE else M.LEFT_EYE_LOWER
        rigs.append((upper, pair, mid_u, mid_l, np.array([centre] if inside else [], int)))
    all_tris = np.vstack([tris[keep], np.array(extra_tris, np.int64).reshape(-1, 3)]).astype(np.int64)
    return all_tris, rigs, np.vstack(points), np.asarray(owner)


def _barycentric_rows(v2: np.ndarray, tris: np.ndarray, x0: int, y0: int, k: int, wl: int, hl: int):
    """Barycentric weights of the grid points ``(x0 + k j + (k-1)/2, y0 + k i + (k-1)/2)`` in
    the triangles ``tris`` of the 2-D mesh ``v2`` (first containing triangle wins).

    Returns ``(rows, cols, vals, assigned)``: lists of arrays for a :class:`SparseRows`, and the
    ``(hl * wl,) bool`` mask of grid points inside the mesh.
    """
    jj, ii = np.meshgrid(np.arange(wl), np.arange(hl))
    pts = np.stack([x0 + k * jj.ravel() + (k - 1) / 2.0, y0 + k * ii.ravel() + (k - 1) / 2.0], 1)
    n = len(pts)
    rows, cols, vals = [], [], []
    assigned = np.zeros(n, bool)
    # Face: barycentric weights in the triangle that contains the point (first one wins).
    for a, b, c in tris:
        pa, pb, pc = v2[a], v2[b], v2[c]
        det = (pb[0] - pa[0]) * (pc[1] - pa[1]) - (pc[0] - pa[0]) * (pb[1] - pa[1])
        if abs(det) < 1e-9:
            continue
        bx0, by0 = np.minimum(np.minimum(pa, pb), pc)
        bx1, by1 = np.maximum(np.maximum(pa, pb), pc)
        j0, j1 = int(np.ceil((bx0 - x0 - (k - 1) / 2) / k)), int(np.floor((bx1 - x0 - (k - 1) / 2) / k))
        i0, i1 = int(np.ceil((by0 - y0 - (k - 1) / 2) / k)), int(np.floor((by1 - y0 - (k - 1) / 2) / k))
        j0, i0, j1, i1 = max(j0, 0), max(i0, 0), min(j1, wl - 1), min(i1, hl - 1)
        if j1 < j0 or i1 < i0:
            continue
        sj, si = np.meshgrid(np.arange(j0, j1 + 1), np.arange(i0, i1 + 1))
        idx = (si * wl + sj).ravel()
        idx = idx[~assigned[idx]]
        if idx.size == 0:
            continue
        p = pts[idx]
        l1 = ((pb[1] - pc[1]) * (p[:, 0] - pc[0]) + (pc[0] - pb[0]) * (p[:, 1] - pc[1])) / det
        l2 = ((pc[1] - pa[1]) * (p[:, 0] - pc[0]) + (pa[0] - pc[0]) * (p[:, 1] - pc[1])) / det
        l3 = 1.0 - l1 - l2
        ok = (l1 >= -1e-6) & (l2 >= -1e-6) & (l3 >= -1e-6)
        if not ok.any():
            continue
        idx, l1, l2, l3 = idx[ok], l1[ok], l2[ok], l3[ok]
        assigned[idx] = True
        for v, l in ((a, l1), (b, l2), (c, l3)):
            rows.append(idx)
            cols.append(np.full(idx.size, v))
            vals.append(l)

    return rows, cols, vals, assigned


def _build_warp(
    v2: np.ndarray,
    tris: np.ndarray,
    points: np.ndarray,
    owner: np.ndarray,
    ctrl: np.ndarray,
    size: tuple[int, int],
    k: int,
    follow: float,
):
    """Precompute the sparse map from [vertex; control] displacements to the 1/k grid.

    Returns ``(matrix (n, 478 + 3) SparseRows, bbox (x0, y0, x1, y1), grid shape (hl, wl))``.
    """
    w_out, h_out = size
    oval = np.asarray(M.FACE_OVAL)
    fw = float(np.linalg.norm(v2[234] - v2[454]))
    rigid_r = max(follow * fw, 1.0)
    expr_r = max(EXPRESSION_FALLOFF * fw, 1.0)
    reach = max(rigid_r, expr_r) + 2 * k
    lo = v2[oval].min(0) - reach
    hi = v2[oval].max(0) + reach
    x0 = int(max(0, np.floor(lo[0] / k) * k))
    y0 = int(max(0, np.floor(lo[1] / k) * k))
    x1 = int(min((w_out // k) * k, np.ceil(hi[0] / k) * k))
    y1 = int(min((h_out // k) * k, np.ceil(hi[1] / k) * k))
    wl, hl = (x1 - x0) // k, (y1 - y0) // k
    jj, ii = np.meshgrid(np.arange(wl), np.arange(hl))
    # centre of each k×k block: matches cv2.resize's pixel-centre convention when upsampling
    gx = x0 + k * jj.ravel() + (k - 1) / 2.0
    gy = y0 + k * ii.ravel() + (k - 1) / 2.0
    pts = np.stack([gx, gy], 1)
    n = len(pts)
    nv = NUM_LANDMARKS

    rows, cols, vals, assigned = _barycentric_rows(points, tris, x0, y0, k, wl, hl)
    cols = [owner[c] for c in cols]

    # Outside the face: rigid head motion with falloff + boundary non-rigid part with falloff.
    out_idx = np.nonzero(~assigned)[0]
    p = pts[out_idx]
    poly = v2[oval]
    seg_a, seg_b = poly, np.roll(poly, -1, axis=0)
    ab = seg_b - seg_a
    rel = p[:, None, :] - seg_a[None]
    u = np.clip(np.sum(rel * ab[None], axis=2) / np.maximum(np.sum(ab * ab, axis=1), 1e-9)[None], 0.0, 1.0)
    near = seg_a[None] + u[..., None] * ab[None]
    dist2 = np.sum((p[:, None, :] - near) ** 2, axis=2)
    seg = np.argmin(dist2, axis=1)
    d = np.sqrt(dist2[np.arange(len(p)), seg])
    u = u[np.arange(len(p)), seg]
    inside_oval = np.array([cv2.pointPolygonTest(poly.astype(np.float32).reshape(-1, 1, 2), (float(x), float(y)), False) >= 0 for x, y in p]) if len(p) else np.zeros(0, bool)
    d = np.where(inside_oval, 0.0, d)
    chin_y = v2[M.CHIN, 1]
    # The neck follows the head less than the hair does: shoulders must stay put.
    # (a smooth factor from 1 at the chin's height to 2 lower down: a step would tear)
    d_rigid = d * (1.0 + _smoothstep((p[:, 1] - chin_y) / (0.3 * fw)))
    g = _smoothstep(1.0 - d_rigid / rigid_r)
    e = _smoothstep(1.0 - d / expr_r)
    va, vb = oval[seg], oval[(seg + 1) % len(oval)]
    beta_p = _affine_coords(p, ctrl)
    beta_v = _affine_coords(v2, ctrl)  # (478, 3)
    live = (g > 0) | (e > 0)
    for v, wgt in ((va, e * (1.0 - u)), (vb, e * u)):
        rows.append(out_idx[live])
        cols.append(v[live])
        vals.append(wgt[live])
    for i in range(3):
        wgt = g * beta_p[:, i] - e * ((1.0 - u) * beta_v[va, i] + u * beta_v[vb, i])
        rows.append(out_idx[live])
        cols.append(np.full(int(live.sum()), nv + i))
        vals.append(wgt[live])
    matrix = SparseRows.from_coo(np.concatenate(rows), np.concatenate(cols), np.concatenate(vals), (n, nv + 3))
    return matrix, (x0, y0, x1, y1), (hl, wl)


def _lid_colour(canvas: np.ndarray, rest: np.ndarray, upper: np.ndarray, down: np.ndarray, iod: float) -> np.ndarray:
    """Median RGB of the upper-lid skin: a band 0.08–0.16 IOD above the lid, below the brow."""
    samples = []
    for t in (0.08, 0.12, 0.16):
        p = rest[upper, :2] - t * iod * down[:2]
        xy = np.round(p).astype(int)
        xy[:, 0] = np.clip(xy[:, 0], 0, canvas.shape[1] - 1)
        xy[:, 1] = np.clip(xy[:, 1], 0, canvas.shape[0] - 1)
        samples.append(canvas[xy[:, 1], xy[:, 0]])
    px = np.concatenate(samples).astype(np.float32)
    # hair or lashes falling across the band are darker than the skin: keep the brighter part
    lum = px @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.median(px[lum >= np.percentile(lum, 40)], axis=0)


#: Bump when _triangulation, _barycentric_rows, _build_warp or _detail_patch change what
#: they compute: cached warps of an older version are then ignored.
WARP_CACHE_VERSION = 1


def _warp_cache_key(v2: np.ndarray, size: tuple[int, int], k: int, follow: float) -> str:
    import hashlib

    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(v2, np.float64).tobytes())
    digest.update(repr((WARP_CACHE_VERSION, tuple(size), int(k), float(follow), EXPRESSION_FALLOFF)).encode())
    return digest.hexdigest()[:32]


def _csr_arrays(prefix: str, matrix: SparseRows) -> dict[str, np.ndarray]:
    # CSR arrays under these names: the layout the cache had when scipy's csr_matrix held the warp
    return {f"{prefix}_{name}": array for name, array in matrix.csr_arrays().items()}


def _csr_from(prefix: str, data) -> SparseRows:
    return SparseRows.from_csr(data[f"{prefix}_data"], data[f"{prefix}_indices"], data[f"{prefix}_indptr"],
                               data[f"{prefix}_shape"])


def _save_warp(path, matrix, bbox, grid, patches) -> None:
    """Write the precomputed warp (data only: .npz, no pickle), atomically."""
    import io

    from vcam_me.storage import atomic_write_bytes

    arrays = {"bbox": np.asarray(bbox, np.int64), "grid": np.asarray(grid, np.int64), **_csr_arrays("warp", matrix)}
    for i, patch in enumerate(patches):
        if patch is not None:
            arrays[f"patch{i}_box"] = np.asarray(patch.box, np.int64)
            arrays.update(_csr_arrays(f"patch{i}", patch.matrix))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def _load_warp(path, n_patches: int):
    """``(matrix, bbox, grid, patches)`` from a cached warp, or None when missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            matrix = _csr_from("warp", data)
            bbox = tuple(int(v) for v in data["bbox"])
            grid = tuple(int(v) for v in data["grid"])
            patches = []
            for i in range(n_patches):
                if f"patch{i}_box" in data:
                    patches.append(_patch_from(tuple(int(v) for v in data[f"patch{i}_box"]), _csr_from(f"patch{i}", data)))
                else:
                    patches.append(None)
    except FileNotFoundError:
        return None
    except Exception as err:  # our own cache: a damaged one is recomputed, never trusted
        import logging

        logging.getLogger(__name__).warning("ignoring damaged warp cache %s: %s", path, err)
        return None
    return matrix, bbox, grid, patches


@dataclass(frozen=True)
class DetailPatch:
    """A small box (eyes, mouth) warped again at full resolution with a converged inverse,
    where the 1/k field is too coarse (an eye closes over ~15 px), feathered into the frame."""

    box: tuple[int, int, int, int]  # x0, y0, x1, y1
    matrix: SparseRows  # (h * w, 478)
    grid: np.ndarray  # (h, w, 2) float32 absolute pixel coordinates
    feather: np.ndarray  # (h, w, 1) float32 weight of the patch (1 inside, 0 at the rim)


def _detail_patch(v2: np.ndarray, tris: np.ndarray, points: np.ndarray, owner: np.ndarray, ids, margins: tuple[float, float, float, float],
                  iod: float, size: tuple[int, int]) -> DetailPatch | None:
    """Patch around the vertices ``ids``; ``margins`` (left, top, right, bottom) in IOD."""
    pts = v2[list(ids)]
    x0 = int(max(0, np.floor(pts[:, 0].min() - margins[0] * iod)))
    y0 = int(max(0, np.floor(pts[:, 1].min() - margins[1] * iod)))
    x1 = int(min(size[0], np.ceil(pts[:, 0].max() + margins[2] * iod)))
    y1 = int(min(size[1], np.ceil(pts[:, 1].max() + margins[3] * iod)))
    w, h = x1 - x0, y1 - y0
    if w < 8 or h < 8:
        return None
    rows, cols, vals, assigned = _barycentric_rows(points, tris, x0, y0, 1, w, h)
    cols = [owner[c] for c in cols]
    if not assigned.all():  # the patch must lie inside the face mesh
        return None
    matrix = SparseRows.from_coo(np.concatenate(rows), np.concatenate(cols), np.concatenate(vals), (w * h, NUM_LANDMARKS))
    return _patch_from((x0, y0, x1, y1), matrix)


def _patch_from(box: tuple[int, int, int, int], matrix: SparseRows) -> DetailPatch:
    """The patch over ``box`` with its warp ``matrix``: the pixel grid and the feathered rim."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    gx, gy = np.meshgrid(np.arange(x0, x1, dtype=np.float32), np.arange(y0, y1, dtype=np.float32))
    rim = max(2.0, min(w, h) / 6.0)
    fx = np.minimum(np.arange(w) + 0.5, w - np.arange(w) - 0.5) / rim
    fy = np.minimum(np.arange(h) + 0.5, h - np.arange(h) - 0.5) / rim
    feather = _smoothstep(np.minimum(fy[:, None], fx[None, :])).astype(np.float32)[..., None]
    return DetailPatch((x0, y0, x1, y1), matrix, np.stack([gx, gy], axis=2), feather)


class AvatarRenderer:
    """Renders an avatar for an :class:`ExpressionState`. Build it with :meth:`create`.

    Not thread-safe (it reuses buffers); use one per render thread.

    ``draw_details``: paint the closing lids and a dark mouth interior by hand (the first
    renderer's way); turned off when the appearance network draws them
    (:class:`~vcam_me.avatar.appearance.NeuralAvatarRenderer`). ``last_mesh``: the posed
    ``(478, 3)`` mesh of the last frame, in output pixels.
    """

    draw_details: bool = True
    last_mesh: np.ndarray | None = None

    def __init__(
        self,
        canvas: np.ndarray,
        rest: np.ndarray,
        basis_px: np.ndarray,
        pivot: np.ndarray,
        ctrl: np.ndarray,
        warp_matrix: SparseRows,
        bbox: tuple[int, int, int, int],
        grid: tuple[int, int],
        downscale: int,
        eyes: list[EyeRig],
        iod_px: float,
        pose_gain: np.ndarray | None = None,
        feature_gain: np.ndarray | None = None,
        patches: list[DetailPatch | None] | None = None,
        pose_coupling: np.ndarray | None = None,
        mixing: np.ndarray | None = None,
        refiner=None,
        canonical_to_px: np.ndarray | None = None,
    ) -> None:
        self.canvas = canvas
        self.rest = rest
        self._basis = basis_px
        self._pivot = pivot
        self._ctrl = ctrl
        self._matrix = warp_matrix
        self.bbox = bbox
        self._grid = grid
        self._k = downscale
        self._eyes = eyes
        self.iod_px = iod_px
        self._patches = patches or []
        self._closure: dict[int, float] = {}
        self._lid_shift: dict[int, np.ndarray] = {}
        self._rotation = np.eye(3)
        self._coupling = None if pose_coupling is None or not np.any(pose_coupling) else np.asarray(pose_coupling, np.float32)
        self._pose_gain = np.ones(3) if pose_gain is None else np.asarray(pose_gain, np.float64)
        self._gain = np.ones(len(basis_px), np.float32) if feature_gain is None else np.asarray(feature_gain, np.float32)
        identity = mixing is None or np.array_equal(mixing, np.eye(len(basis_px)))
        self._mixing = None if identity else np.asarray(mixing, np.float32)
        gaze = np.array([n.startswith("gaze_") for n in FEATURE_NAMES])
        self._mixed_low = np.where(gaze, -1.0, MIXED_AU_RANGE[0]).astype(np.float32)
        self._mixed_high = np.where(gaze, 1.0, MIXED_AU_RANGE[1]).astype(np.float32)
        x0, y0, x1, y1 = bbox
        hl, wl = grid
        jj, ii = np.meshgrid(np.arange(wl, dtype=np.float32), np.arange(hl, dtype=np.float32))
        self._lo_grid = (jj, ii)
        # absolute output coordinates of the 1/k grid cells, padded by one cell all round
        pj, pi = np.meshgrid(np.arange(-1, wl + 1, dtype=np.float32), np.arange(-1, hl + 1, dtype=np.float32))
        k = downscale
        self._lo_abs = np.ascontiguousarray(np.stack([x0 + k * pj + (k - 1) / 2.0, y0 + k * pi + (k - 1) / 2.0], axis=2))
        self._rhs = np.zeros((NUM_LANDMARKS + 3, 2), np.float32)
        lips = np.asarray(_LIP_PAIRS)
        self._lips_up, self._lips_low = lips[:, 0], lips[:, 1]
        self._rest_gap = self._lip_gap(rest[:, :2])
        # the geometry head's refinement of the basis (canonical frame → output pixels by
        # canonical_to_px), or None: the basis alone
        if refiner is not None and canonical_to_px is None:
            raise ValueError("a geometry refiner needs canonical_to_px")
        self._refiner = refiner
        self._canonical_to_px = None if canonical_to_px is None else np.asarray(canonical_to_px, np.float32)

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        avatar: Avatar,
        size: tuple[int, int] = (1280, 720),
        options: AvatarOptions | None = None,
        basis: AUBasis | None = None,
        cache_dir: Path | None = None,
        refiner=None,
        keep_clear_row: int | None = None,
    ) -> "AvatarRenderer":
        """Precompute everything for ``avatar`` at output ``size = (W, H)``.

        ``basis`` defaults to the shipped, hash-checked ``models/au_basis.npz``.
        ``refiner``: a :class:`~vcam_me.avatar.geometry_refiner.GeometryRefiner` whose output is
        added to the basis's displacements (None: the basis alone).
        ``keep_clear_row``: the label badge's top row; the face is framed above it
        (:func:`frame_portrait`).
        ``cache_dir``: where the warp (the slow part, about half a second) is kept once
        computed, keyed by the avatar's mesh, the size and the options, so switching to an
        avatar shown before is quick. A damaged cache file is recomputed.
        """
        options = options or AvatarOptions()
        basis = basis if basis is not None else AUBasis.load()
        canvas, affine = frame_portrait(avatar.image, avatar.landmarks, size, keep_clear_row)
        s = affine[0, 0]
        px = M.landmarks_to_pixels(avatar.landmarks, avatar.image_size)
        rest = px.copy()
        rest[:, :2] = px[:, :2] * s + affine[:, 2]
        rest[:, 2] = px[:, 2] * s
        # Canonical (basis) frame → this portrait's frame: aligned = a · x Rᵀ + t, so a
        # canonical displacement d maps to d R / a in output pixels.
        _, (a, r, t) = M.normalise_pose(rest)
        to_px = r / a
        basis_px = (basis.basis.reshape(-1, 3) @ to_px).reshape(len(basis.basis), -1).astype(np.float32)
        pivot = (-t) @ r / a  # canonical origin (MediaPipe's head-pose origin) in output pixels
        v2 = rest[:, :2]
        fw = float(np.linalg.norm(v2[234] - v2[454]))
        centre = 0.5 * (v2[list(M.RIGHT_EYE)].mean(0) + v2[list(M.LEFT_EYE)].mean(0))
        ctrl = np.array([centre, centre + (fw, 0.0), centre + (0.0, fw)])
        tris, rig_data, points, owner = _triangulation(v2)
        ctrl_z = float(rest[list(M.FACE_OVAL), 2].mean())
        ctrl3 = np.column_stack([ctrl, np.full(3, ctrl_z)])
        iod = M.interocular(rest)
        cache = None
        if cache_dir is not None:
            key = _warp_cache_key(v2, size, options.warp_downscale, options.head_follow_falloff)
            cache = Path(cache_dir) / f"warp-{key}.npz"
        cached = _load_warp(cache, 2) if cache is not None else None
        if cached is not None:
            matrix, bbox, grid, patches = cached
        else:
            matrix, bbox, grid = _build_warp(v2, tris, points, owner, ctrl, size, options.warp_downscale,
                                             options.head_follow_falloff)
            patches = [
                _detail_patch(v2, tris, points, owner, M.RIGHT_EYE, (0.12, 0.22, 0.12, 0.1), iod, size),
                _detail_patch(v2, tris, points, owner, M.LEFT_EYE, (0.12, 0.22, 0.12, 0.1), iod, size),
            ]
            if cache is not None:
                try:
                    cache.parent.mkdir(parents=True, exist_ok=True)
                    _save_warp(cache, matrix, bbox, grid, patches)
                except OSError as err:  # a cache that cannot be written only costs time
                    import logging

                    logging.getLogger(__name__).warning("cannot cache the avatar's warp in %s: %s", cache.parent, err)
        eyes = []
        for (upper, pair, mu, ml, iris), side in zip(rig_data, ("R", "L")):
            down = rest[ml] - rest[mu]
            rest_open = float(np.linalg.norm(down))
            blink = FEATURE_NAMES.index(f"AU43_{side}")
            # the lid itself is closed explicitly in _fix_eyes; keep the fitted motion of
            # the skin around it
            rows = basis_px[blink].reshape(-1, 3)
            rows[np.concatenate([upper, iris]).astype(int)] = 0.0
            contour = M.RIGHT_EYE if side == "R" else M.LEFT_EYE
            unit = down / max(rest_open, 1e-6)
            disc = 0.0
            if iris.size:
                ring = np.arange(iris[0] + 1, iris[0] + 5)
                disc = IRIS_DISC * float(np.mean(np.linalg.norm(v2[ring] - v2[iris[0]], axis=1)))
            eyes.append(EyeRig(upper, pair, mu, ml, iris, unit, rest_open, blink, (contour[8], contour[0]),
                               _lid_colour(canvas, rest, upper, unit, M.interocular(rest)), disc))
        return cls(canvas, rest, basis_px, pivot, ctrl3, matrix, bbox, grid, options.warp_downscale, eyes,
                   iod, basis.pose_gain.astype(np.float64), basis.gain.astype(np.float32), patches,
                   basis.pose_coupling.astype(np.float32), basis.mixing.astype(np.float32),
                   refiner, to_px)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.canvas.shape[1]), int(self.canvas.shape[0])

    # -- per frame -------------------------------------------------------------------------
    def _lip_gap(self, v2: np.ndarray) -> float:
        return float(np.mean(v2[self._lips_low, 1] - v2[self._lips_up, 1]))

    def drive(self, state: ExpressionState) -> np.ndarray:
        """``(n_features,) float32``: what the basis is driven with for ``state``: the
        features through the cross-talk compensation (``mixing @ features``, kept within
        :data:`MIXED_AU_RANGE`), times the closed-loop gain.

        The mixing acts before the gain because it was calibrated on renders that already
        carried the gain: it says which blend of commanded features reads back as the one
        asked for.
        """
        return self._mixed_features(state) * self._gain

    def _mixed_features(self, state: ExpressionState) -> np.ndarray:
        features = state_features(state)
        if self._mixing is None:
            return features
        return np.clip(self._mixing @ features, self._mixed_low, self._mixed_high)

    def _fix_eyes(self, v: np.ndarray, mixed: np.ndarray) -> None:
        """Close the lids by the blink features (``mixed``: after the cross-talk mixing, before
        the gain; see :data:`BLINK_GAIN`), keep each upper lid from passing its lower lid, and
        keep the iris between them (in place)."""
        for eye in self._eyes:
            gap = (v[eye.lower_pair] - v[eye.upper]) @ eye.down
            closure = float(np.clip(BLINK_GAIN * mixed[eye.blink_feature], 0.0, 1.0))
            self._closure[eye.blink_feature] = closure
            # move down by the closed fraction of the open gap; up by any overlap
            shift = (closure * np.maximum(gap, 0.0))[:, None] * eye.down
            self._lid_shift[eye.blink_feature] = shift
            v[eye.upper] += shift + np.minimum(gap, 0.0)[:, None] * eye.down
            if eye.iris.size:
                # along the eye: the disc may not reach the corners (a soft limit keeps the
                # motion monotonic instead of folding the sclera over itself)
                inner, outer = v[eye.corners[0]], v[eye.corners[1]]
                axis = outer - inner
                length = float(np.linalg.norm(axis))
                axis = axis / max(length, 1e-6)
                rest_t = float((self.rest[eye.iris[0]] - self.rest[eye.corners[0]]) @ (
                    (self.rest[eye.corners[1]] - self.rest[eye.corners[0]]) / max(float(np.linalg.norm(
                        self.rest[eye.corners[1]] - self.rest[eye.corners[0]])), 1e-6)))
                t = float((v[eye.iris[0]] - inner) @ axis)
                room = (length - rest_t - eye.disc_radius - 2.0) if t > rest_t else (rest_t - eye.disc_radius - 2.0)
                room = max(IRIS_ROOM * room, 0.5)
                t_new = rest_t + room * np.tanh((t - rest_t) / room)
                v[eye.iris] += (t_new - t) * axis
                up, low = v[eye.mid_upper], v[eye.mid_lower]
                open_now = max(float((low - up) @ eye.down), 0.0)
                for i in eye.iris:
                    along = float((v[i] - up) @ eye.down)
                    # scale the iris's depth into the opening with the opening itself, so a
                    # closing lid carries the iris along instead of folding over it
                    frac = np.clip(along / max(eye.rest_open, 1e-6), 0.1, 0.9)
                    v[i] += (frac * open_now - along) * eye.down

    def mesh(self, state: ExpressionState) -> np.ndarray:
        """``(478, 3) float32`` posed mesh in output pixels (x, y; z scaled like x)."""
        mixed = self._mixed_features(state)
        f = mixed * self._gain  # what drive(state) returns
        v = self.rest + (f @ self._basis).reshape(-1, 3)
        if self._refiner is not None:
            v += self._refiner(self._refiner_condition(state)) @ self._canonical_to_px
        self._fix_eyes(v, mixed)
        pose = self._pose(state)
        self._rotation = np.eye(3)
        if np.any(pose != 0):
            r = _FLIP @ euler_to_rotation(pose) @ _FLIP
            v = (v - self._pivot) @ r.T + self._pivot
            self._rotation = r
        return v.astype(np.float32)

    @staticmethod
    def _refiner_condition(state: ExpressionState) -> np.ndarray:
        """What the geometry refinement is fed: the features as tracked (before the gains and
        mixing that make the basis read back right: the head was trained on tracked features),
        less the micro-expression engine's increments. Injected events are drawn by the basis
        alone, whose one-sided actions are kept to their side; the head's MLP, learnt from faces
        whose two sides mostly move together, spread a one-sided event to both sides
        (benchmarks/README.md, "The geometry head at run time")."""
        injected = state.components.get("injected") if state.components else None
        if injected is not None and np.any(injected):
            state = replace(state, au=np.asarray(state.au, np.float32) - np.asarray(injected, np.float32))
        return condition_of(state)

    def _pose(self, state: ExpressionState) -> np.ndarray:
        """Head rotation to apply (degrees): the commanded pose less what the expression
        itself will read as, times the closed-loop gain. The coupling was measured per
        unit of the features the face is actually drawn with, i.e. after the mixing."""
        pose = np.asarray(state.head_pose, np.float64)
        if self._coupling is not None:
            pose = pose - self._coupling @ self._mixed_features(state)
        return pose * self._pose_gain

    def _ctrl_displacement(self, state: ExpressionState) -> np.ndarray:
        pose = self._pose(state)
        if not np.any(pose != 0):
            return np.zeros((3, 2), np.float32)
        r = _FLIP @ euler_to_rotation(pose) @ _FLIP
        moved = (self._ctrl - self._pivot) @ r.T + self._pivot
        return (moved[:, :2] - self._ctrl[:, :2]).astype(np.float32)

    def displacement_field(self, state: ExpressionState) -> np.ndarray:
        """Forward displacement (pixels) ``(hl, wl, 2) float32`` on the 1/k grid of :attr:`bbox`.

        Grid cell (i, j) is the output pixel ``(x0 + k j + (k-1)/2, y0 + k i + (k-1)/2)``.
        """
        v = self.mesh(state)
        return self._field(v, state)

    def _field(self, v: np.ndarray, state: ExpressionState) -> np.ndarray:
        rhs = self._rhs
        rhs[:NUM_LANDMARKS] = v[:, :2] - self.rest[:, :2]
        rhs[NUM_LANDMARKS:] = self._ctrl_displacement(state)
        hl, wl = self._grid
        return (self._matrix @ rhs).reshape(hl, wl, 2)

    def render(self, state: ExpressionState) -> np.ndarray:
        """The avatar for ``state``: ``(H, W, 3) uint8 RGB`` at :attr:`size`."""
        v = self.mesh(state)
        self.last_mesh = v
        field = self._field(v, state)
        k = self._k
        hl, wl = self._grid
        # One fixed-point step of the inverse: src(q) = q − Δ(q − Δ(q)), at low resolution.
        jj, ii = self._lo_grid
        mx = jj - field[..., 0] * (1.0 / k)
        my = ii - field[..., 1] * (1.0 / k)
        back = cv2.remap(field, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        out = self.canvas.copy()
        # Warp only the cells that move (all of the head region once the head turns; just
        # the face and its surround when only the expression changes).
        moving = (back[..., 0] * back[..., 0] + back[..., 1] * back[..., 1]) > 0.02 * 0.02
        rows, cols = np.nonzero(moving.any(axis=1))[0], np.nonzero(moving.any(axis=0))[0]
        if rows.size:
            i0, i1 = max(rows[0] - 1, 0), min(rows[-1] + 2, hl)
            j0, j1 = max(cols[0] - 1, 0), min(cols[-1] + 2, wl)
            x0, y0 = self.bbox[0] + j0 * k, self.bbox[1] + i0 * k
            w, h = (j1 - j0) * k, (i1 - i0) * k
            # Upsample absolute source coordinates, not displacements (saves a full-size
            # subtraction). The block is padded by one cell so that bilinear upsampling is
            # exact up to its edges, then the padding is cropped off.
            padded = cv2.copyMakeBorder(back[i0:i1, j0:j1], 1, 1, 1, 1, cv2.BORDER_REPLICATE)
            src_lo = self._lo_abs[i0 : i1 + 2, j0 : j1 + 2] - padded
            full = cv2.resize(src_lo, (w + 2 * k, h + 2 * k), interpolation=cv2.INTER_LINEAR)[k:-k, k:-k]
            m1, m2 = cv2.convertMaps(full, None, cv2.CV_16SC2)
            # a contiguous destination is markedly faster for remap than a strided view
            warped = cv2.remap(self.canvas, m1, m2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            out[y0 : y0 + h, x0 : x0 + w] = warped
        # The 1/k field is fine for smooth motion; an eye opening is only ~4 cells tall, so
        # a closing lid or a moving iris is redone at full resolution.
        for eye, patch in zip(self._eyes, self._patches):
            if patch is None:
                continue
            iris_moved = eye.iris.size and np.abs(
                (v[eye.iris[0], :2] - self.rest[eye.iris[0], :2]) - (v[eye.mid_lower, :2] - self.rest[eye.mid_lower, :2])
            ).max() > 0.5
            if iris_moved or self._closure.get(eye.blink_feature, 0.0) > 0.05:
                self._warp_patch(out, patch)
        if self.draw_details:
            self._draw_lids(out, v)
            self._draw_mouth(out, v[:, :2])
        return out

    def _draw_lids(self, out: np.ndarray, v: np.ndarray) -> None:
        """Paint closing lids: the band the lid swept over gets the lid's skin colour and
        the lash line follows the lid down. A warp alone only smears the lashes over the
        opening, which MediaPipe reads as a half-open eye looking down."""
        for eye in self._eyes:
            closure = self._closure.get(eye.blink_feature, 0.0)
            if closure <= 0.05 or eye.lid_colour is None:
                continue
            shift = self._lid_shift[eye.blink_feature] @ self._rotation.T
            inner, outer = eye.corners
            # upper lid runs inner → outer corner
            closed = np.vstack([v[inner, :2], v[eye.upper, :2], v[outer, :2]])
            opened = np.vstack([v[inner, :2], v[eye.upper, :2] - shift[:, :2], v[outer, :2]])
            band = np.vstack([opened, closed[::-1]])
            lo = np.maximum(np.floor(band.min(0)).astype(int) - 4, 0)
            hi = np.minimum(np.ceil(band.max(0)).astype(int) + 5, (out.shape[1], out.shape[0]))
            if np.any(hi - lo < 3):
                continue
            roi = out[lo[1] : hi[1], lo[0] : hi[0]]
            shift_bits = 4
            scale = float(1 << shift_bits)
            mask = np.zeros(roi.shape[:2], np.uint8)
            cv2.fillPoly(mask, [np.round((band - lo) * scale).astype(np.int32)], 255, cv2.LINE_AA, shift_bits)
            mask = cv2.GaussianBlur(mask, (0, 0), max(0.6, 0.012 * self.iod_px))
            lash = np.zeros(roi.shape[:2], np.uint8)
            thick = max(1, int(round(0.012 * self.iod_px)))
            cv2.polylines(lash, [np.round((closed - lo) * scale).astype(np.int32)], False, 255, thick, cv2.LINE_AA, shift_bits)
            a = mask.astype(np.float32)[..., None] * (min(1.0, 1.3 * closure) / 255.0)
            b = lash.astype(np.float32)[..., None] * (closure * 0.6 / 255.0)
            lid = roi * (1.0 - a) + eye.lid_colour * a
            roi[:] = (lid * (1.0 - b) + LASH_COLOUR * b + 0.5).astype(np.uint8)

    def _warp_patch(self, out: np.ndarray, patch: DetailPatch, iterations: int = 3) -> None:
        x0, y0, x1, y1 = patch.box
        field = (patch.matrix @ self._rhs[:NUM_LANDMARKS]).reshape(y1 - y0, x1 - x0, 2)
        src = patch.grid - field
        origin = np.array([x0, y0], np.float32)
        for _ in range(iterations - 1):
            at = src - origin
            d = cv2.remap(field, at[..., 0], at[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            src = patch.grid - d
        m1, m2 = cv2.convertMaps(src, None, cv2.CV_16SC2)
        warped = cv2.remap(self.canvas, m1, m2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        region = out[y0:y1, x0:x1]
        region[:] = (warped * patch.feather + region * (1.0 - patch.feather) + 0.5).astype(np.uint8)

    def _draw_mouth(self, out: np.ndarray, v2: np.ndarray) -> None:
        alpha = (self._lip_gap(v2) - self._rest_gap) / (MOUTH_FULL_GAP_IOD * self.iod_px)
        if alpha <= 0.02:
            return
        alpha = min(alpha, 1.0)
        poly = v2[list(M.INNER_LIPS)]
        pad = 3
        lo = np.floor(poly.min(0)).astype(int) - pad
        hi = np.ceil(poly.max(0)).astype(int) + pad
        lo = np.maximum(lo, 0)
        hi = np.minimum(hi, (out.shape[1], out.shape[0]))
        if np.any(hi - lo < 2):
            return
        roi = out[lo[1] : hi[1], lo[0] : hi[0]]
        mask = np.zeros(roi.shape[:2], np.uint8)
        shift = 4
        pts = np.round((poly - lo) * (1 << shift)).astype(np.int32)
        cv2.fillPoly(mask, [pts], 255, lineType=cv2.LINE_AA, shift=shift)
        mask = cv2.GaussianBlur(mask, (3, 3), 0)
        a = mask.astype(np.float32)[..., None] * (alpha / 255.0)
        roi[:] = (roi * (1.0 - a) + MOUTH_COLOUR * a + 0.5).astype(np.uint8)
