"""Head-pose angles <-> rotation matrices, one convention for the whole project.

MediaPipe's facial transformation matrix maps the canonical face model into camera space.
Its rotation part R is decomposed here as R = Ry(yaw) @ Rx(pitch) @ Rz(roll), angles in
degrees. :func:`euler_to_rotation` is the exact inverse, so a stage that turns angles back
into a rotation gets the same matrix the tracker saw.
"""

from __future__ import annotations

import numpy as np


def rotation_from_transform(transform: np.ndarray) -> np.ndarray:
    """The pure rotation (3, 3) of a 4x4 similarity transform (scale removed, re-orthonormalised)."""
    m = np.asarray(transform, dtype=np.float64)[:3, :3]
    u, _, vt = np.linalg.svd(m)
    r = u @ vt
    if np.linalg.det(r) < 0:
        u[:, -1] *= -1
        r = u @ vt
    return r


def rotation_to_euler(r: np.ndarray) -> np.ndarray:
    """(yaw, pitch, roll) in degrees such that r = Ry(yaw) @ Rx(pitch) @ Rz(roll)."""
    r = np.asarray(r, dtype=np.float64)
    pitch = np.arcsin(np.clip(-r[1, 2], -1.0, 1.0))
    yaw = np.arctan2(r[0, 2], r[2, 2])
    roll = np.arctan2(r[1, 0], r[1, 1])
    return np.degrees(np.array([yaw, pitch, roll]))


def euler_to_rotation(angles_deg) -> np.ndarray:
    """Inverse of :func:`rotation_to_euler`."""
    yaw, pitch, roll = np.radians(np.asarray(angles_deg, dtype=np.float64))
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return ry @ rx @ rz


def pose_from_transform(transform: np.ndarray) -> np.ndarray:
    """(yaw, pitch, roll) in degrees of a MediaPipe facial transformation matrix."""
    return rotation_to_euler(rotation_from_transform(transform))
