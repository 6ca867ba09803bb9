"""MediaPipe's canonical face mesh, landmark index sets and pose normalisation.

The canonical model (468 vertices with UVs, 898 triangles, 32 weighted pose landmarks) is
read from ``models/canonical_face_mesh.pbtxt`` (MediaPipe's
``geometry_pipeline_metadata_landmarks.pbtxt``, Apache-2.0; source in ``models/manifest.toml``).

Coordinates here are *image-like*: x right, y down, z away from the camera, which is the
orientation of MediaPipe's landmarks once x, y, z are multiplied by the image width/height
(the canonical file itself is y up, z toward the viewer; :func:`canonical_mesh` flips it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from vcam_me.errors import ModelError

# --- landmark index sets (MediaPipe face mesh topology; "left" = subject's left) ---------
#: Eye openings, as closed polygons: lower lid outer→inner, then upper lid inner→outer.
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
#: Upper / lower lid mid points (used to keep the iris between the lids).
RIGHT_EYE_UPPER, RIGHT_EYE_LOWER = 159, 145
LEFT_EYE_UPPER, LEFT_EYE_LOWER = 386, 374
#: Iris landmarks (centre first) of the 478-point model.
IRIS_A = (468, 469, 470, 471, 472)
IRIS_B = (473, 474, 475, 476, 477)
#: Inner lip contour, a closed polygon (upper lip left→right, then lower lip right→left).
INNER_LIPS = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95)
#: Face silhouette, a closed polygon starting at the top of the forehead.
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)
FOREHEAD_TOP, CHIN = 10, 152


def mesh_path() -> Path:
    """The canonical mesh file, after checking its sha256 against ``models/manifest.toml``."""
    from vcam_me.models import verified_model_path

    return verified_model_path("canonical_face_mesh")


@dataclass(frozen=True)
class CanonicalMesh:
    """MediaPipe's canonical face model in image-like orientation.

    Attributes:
        vertices: ``(468, 3) float64`` in units of the model's inter-ocular distance
            (so distances on it are in "IOD"), centred on the eye midpoint.
        uv: ``(468, 2) float64`` texture coordinates.
        triangles: ``(898, 3) int32`` vertex indices (852 face + 18 mouth + 28 eye closers).
        pose_ids: ``(n,) int32`` landmarks (33 in the file) MediaPipe uses to solve head pose …
        pose_weights: ``(n,) float64`` … and their weights.
    """

    vertices: np.ndarray
    uv: np.ndarray
    triangles: np.ndarray
    pose_ids: np.ndarray
    pose_weights: np.ndarray


def parse_canonical_mesh(text: str) -> CanonicalMesh:
    """Parse the pbtxt text (a tiny subset of protobuf text format; no protobuf needed)."""
    pose = re.findall(r"landmark_id:\s*(\d+)\s+weight:\s*([-0-9.eE]+)", text)
    vbuf = np.array(re.findall(r"vertex_buffer:\s*([-0-9.eE]+)", text), dtype=np.float64)
    ibuf = np.array(re.findall(r"index_buffer:\s*(\d+)", text), dtype=np.int32)
    if len(pose) < 20 or vbuf.size != 468 * 5 or ibuf.size % 3:
        raise ModelError("canonical face mesh file is not MediaPipe's geometry pipeline metadata")
    v = vbuf.reshape(468, 5)
    xyz = v[:, :3] * np.array([1.0, -1.0, -1.0])  # y up → down, z toward viewer → away
    eyes = 0.5 * (xyz[list(RIGHT_EYE)].mean(0) + xyz[list(LEFT_EYE)].mean(0))
    iod = np.linalg.norm(xyz[list(RIGHT_EYE)].mean(0) - xyz[list(LEFT_EYE)].mean(0))
    return CanonicalMesh(
        vertices=(xyz - eyes) / iod,
        uv=v[:, 3:5].copy(),
        triangles=ibuf.reshape(-1, 3),
        pose_ids=np.array([int(i) for i, _ in pose], np.int32),
        pose_weights=np.array([float(w) for _, w in pose], np.float64),
    )


@lru_cache(maxsize=1)
def canonical_mesh() -> CanonicalMesh:
    path = mesh_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ModelError(f"canonical face mesh not readable: {path} ({err.strerror})") from None
    return parse_canonical_mesh(text)


def interocular(points: np.ndarray) -> float:
    """Distance between the two eye-opening centroids of ``(478 or 468, 2 or 3)`` points."""
    p = np.asarray(points, dtype=np.float64)
    return float(np.linalg.norm(p[list(RIGHT_EYE)].mean(0) - p[list(LEFT_EYE)].mean(0)))


def similarity_to(src: np.ndarray, dst: np.ndarray, weights: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Weighted 3-D similarity (Umeyama): ``dst ≈ s * src @ R.T + t``.

    ``src``, ``dst``: ``(n, 3)``; ``weights``: ``(n,)`` ≥ 0. Returns ``(s, R (3, 3), t (3,))``.
    """
    w = np.asarray(weights, np.float64) / np.sum(weights)
    mu_s, mu_d = w @ src, w @ dst
    a, b = src - mu_s, dst - mu_d
    cov = (b * w[:, None]).T @ a
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(3)
    if np.linalg.det(u @ vt) < 0:
        d[-1] = -1.0
    r = u @ np.diag(d) @ vt
    var = np.sum(w * np.sum(a * a, axis=1))
    s = float(np.sum(sig * d) / var)
    return s, r, mu_d - s * (r @ mu_s)


def landmarks_to_pixels(landmarks: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Normalised MediaPipe landmarks ``(n, 3)`` → pixels ``(n, 3) float64`` (z scaled like x)."""
    w, h = image_size
    return np.asarray(landmarks, np.float64) * np.array([w, h, w], np.float64)


def normalise_pose(points_px: np.ndarray) -> tuple[np.ndarray, tuple[float, np.ndarray, np.ndarray]]:
    """Bring pixel landmarks ``(478, 3)`` into the canonical frame (units: canonical IOD).

    Returns the aligned points and the similarity ``(s, R, t)`` with aligned = s p R^T + t.
    """
    mesh = canonical_mesh()
    ids = mesh.pose_ids
    s, r, t = similarity_to(points_px[ids], mesh.vertices[ids], mesh.pose_weights)
    return s * points_px @ r.T + t, (s, r, t)


@lru_cache(maxsize=1)
def mirror_index() -> np.ndarray:
    """``(478,) int`` index of each landmark's left/right mirror partner (self on the midline)."""
    v = canonical_mesh().vertices
    flipped = v * np.array([-1.0, 1.0, 1.0])
    d = np.linalg.norm(v[None, :, :] - flipped[:, None, :], axis=2)
    out = np.concatenate([np.argmin(d, axis=1), np.zeros(10, np.int64)])
    # Iris rings: centre ↔ centre; MediaPipe orders each ring the same way around the
    # image, so ring point k of one eye mirrors the point opposite in x of the other.
    out[468], out[473] = 473, 468
    out[[469, 470, 471, 472]] = [476, 475, 474, 477]
    out[[474, 475, 476, 477]] = [471, 470, 469, 472]
    return out
