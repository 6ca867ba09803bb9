"""The aligned face crop the appearance network works on (training and runtime share it).

A 2-D similarity takes a few landmarks that expressions barely move (eye corners, nose
bridge and tip) to their places on MediaPipe's canonical face, scaled so the crop shows
±:data:`CROP_HALF_IOD` inter-ocular distances around :data:`CROP_CENTRE_IOD`. 128 px is what
design.md §4 budgets for (a ≤ 0.7 GMAC U-Net at 128²); the eyes are then ≈ 38 px apart,
enough for teeth, lids and folds.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from vcam_me.avatar import mesh

CROP_SIZE = 128
#: Landmarks the crop is aligned on: eye corners, nose bridge, nose tip and base.
ALIGN_IDS = (33, 133, 362, 263, 168, 6, 197, 195, 5, 4)
#: Canonical-face box the crop shows, in IOD units around the eye midpoint (the canonical face
#: spans x ±1.23, y −0.89 (forehead top) … 1.91 (chin)): the whole face with a margin.
CROP_CENTRE_IOD = (0.0, 0.55)
CROP_HALF_IOD = 1.7
#: Head pose enters the network's conditioning in units of this many degrees.
POSE_UNIT_DEG = 30.0


@lru_cache(maxsize=4)
def crop_points(size: int = CROP_SIZE) -> np.ndarray:
    """``(len(ALIGN_IDS), 2) float64`` where the alignment landmarks go in a ``size`` crop."""
    v = mesh.canonical_mesh().vertices[list(ALIGN_IDS), :2]
    scale = size / (2 * CROP_HALF_IOD)
    return (v - np.asarray(CROP_CENTRE_IOD)) * scale + size / 2.0


def similarity_transform(points_px: np.ndarray, size: int = CROP_SIZE) -> np.ndarray | None:
    """``(2, 3)`` least-squares similarity taking image pixels to the aligned crop, from
    ``(478, ≥2)`` landmarks; ``None`` if they are degenerate.

    Closed form (no random sampling): the runtime calls it every output frame, and the
    landmarks it gets are a mesh, not noisy detections, so there are no outliers to reject.
    """
    src = np.asarray(points_px, np.float64)[list(ALIGN_IDS), :2]
    dst = crop_points(size)
    sc, dc = src.mean(0), dst.mean(0)
    s, d = src - sc, dst - dc
    norm = float((s * s).sum())
    if norm < 1e-9:
        return None
    a = float((s * d).sum()) / norm
    b = float((s[:, 0] * d[:, 1] - s[:, 1] * d[:, 0]).sum()) / norm
    rot = np.array([[a, -b], [b, a]])
    return np.hstack([rot, (dc - rot @ sc)[:, None]])
