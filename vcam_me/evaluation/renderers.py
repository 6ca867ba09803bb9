"""Three renderers on the same held-back frames: warp only, generic prior, personalised.

Self-reenactment (issue 5, metrics.md): the avatar is made from a clip's own rest frame
(chosen in the first part of the clip), and the rest of the clip drives it. Because the
avatar *is* the person in the clip, each rendered frame can be compared with the real frame
at the same instant, in the aligned face crop (:mod:`vcam_me.avatar.crop`) of each:

- **PSNR and SSIM** over the face (inside the real frame's face oval), the mouth region and
  the eye region (boxes around the real frame's lip and eye landmarks, in the crop);
- the closed-loop expression metrics of ``metrics.md`` (AED, APD ratios, per-AU Pearson r),
  from MediaPipe re-tracking the render;
- **identity distance**: dlib's face descriptor of rendered frames against the avatar's
  reference (and, for cross-identity runs, against the driver).

This module scores what it is given; :mod:`vcam_me.app` builds the renderers, the trackers
and the personalised network (the core never imports the training code).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

from vcam_me.avatar import mesh
from vcam_me.avatar.crop import CROP_SIZE, similarity_transform
from vcam_me.types import FaceObservation, Frame

#: Describe every n-th frame for the identity distance (dlib costs ~15 ms a face).
IDENTITY_EVERY = 5
#: Region boxes are the landmarks' bounding box grown by this fraction on each side.
REGION_MARGIN = 0.25
OUTER_LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
#: Eye region: each eye's contour and the brow above it, so lids, folds and brows all count.
RIGHT_BROW = (70, 63, 105, 66, 107, 46, 53, 52, 65, 55)
LEFT_BROW = (300, 293, 334, 296, 336, 276, 283, 282, 295, 285)


@dataclass
class HeldBack:
    """The real frames a renderer is scored on: their aligned crops and crop landmarks."""

    crops: dict[int, np.ndarray] = field(default_factory=dict)  # driver index → (S, S, 3) uint8
    landmarks: dict[int, np.ndarray] = field(default_factory=dict)  # driver index → (478, 2) crop px


def aligned_crop(image: np.ndarray, points_px: np.ndarray, size: int = CROP_SIZE) -> tuple[np.ndarray, np.ndarray] | None:
    """``(crop, crop landmarks (478, 2))`` of ``image`` by the landmarks ``points_px`` (pixels)."""
    m = similarity_transform(points_px, size)
    if m is None:
        return None
    crop = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    return crop, points_px[:, :2] @ m[:, :2].T + m[:, 2]


def region_masks(crop_landmarks: np.ndarray, size: int = CROP_SIZE) -> dict[str, np.ndarray]:
    """``{"face", "mouth", "eyes"}`` → ``(S, S) bool`` masks from a crop's landmarks."""
    face = np.zeros((size, size), np.uint8)
    cv2.fillPoly(face, [np.round(crop_landmarks[list(mesh.FACE_OVAL)] * 16).astype(np.int32)], 1, shift=4)

    def box(ids) -> np.ndarray:
        p = crop_landmarks[list(ids)]
        lo, hi = p.min(0), p.max(0)
        pad = REGION_MARGIN * (hi - lo)
        (x0, y0), (x1, y1) = np.floor(lo - pad).astype(int), np.ceil(hi + pad).astype(int)
        out = np.zeros((size, size), bool)
        out[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
        return out

    eyes = box(mesh.RIGHT_EYE + RIGHT_BROW) | box(mesh.LEFT_EYE + LEFT_BROW)
    return {"face": face.astype(bool), "mouth": box(OUTER_LIPS), "eyes": eyes}


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB, peak 255) of two uint8 RGB images over ``mask``."""
    d = (a.astype(np.float64) - b.astype(np.float64))[mask]
    mse = float(np.mean(d * d)) if d.size else float("nan")
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0 ** 2 / mse)


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM of the grey levels (Gaussian window σ 1.5, the usual constants)."""
    x = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float64)
    y = cv2.cvtColor(b, cv2.COLOR_RGB2GRAY).astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(z: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(z, (11, 11), 1.5)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def image_quality(render_crop: np.ndarray, real_crop: np.ndarray, real_landmarks: np.ndarray) -> dict[str, tuple[float, float]]:
    """``{region: (psnr, ssim)}`` of a rendered crop against the real one."""
    masks = region_masks(real_landmarks, real_crop.shape[0])
    s = ssim_map(render_crop, real_crop)
    return {name: (psnr(render_crop, real_crop, m), float(s[m].mean()) if m.any() else float("nan"))
            for name, m in masks.items()}


def posed_mesh(renderer) -> np.ndarray:
    """The posed mesh of a renderer's last frame (the warp renderer's, also inside a neural one)."""
    warp = getattr(renderer, "warp", renderer)
    return warp.last_mesh


def score_renderer(
    driver: list[FaceObservation],
    cut: int,
    held: HeldBack,
    renderer,
    expression,
    output_tracker,
    *,
    describe: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    references: dict[str, np.ndarray] | None = None,
    on_frame: Callable[[int, np.ndarray], None] | None = None,
) -> dict:
    """Drive ``renderer`` with ``driver[cut:]`` and score it (see the module doc).

    ``expression`` has already seen ``driver[:cut]`` (its calibration part); ``references``:
    name → descriptor to measure the identity distance of the rendered faces to (e.g.
    ``{"avatar": …, "driver": …}``); ``describe(image, normalised landmarks)``. ``on_frame(driver index, image)`` sees every render.
    """
    from vcam_me.evaluation import metrics
    from vcam_me.evaluation.closed_loop import _stack
    from vcam_me.expression import blendshapes_to_au
    from vcam_me.types import AU_CHANNELS

    quality: dict[str, list[tuple[float, float]]] = {"face": [], "mouth": [], "eyes": []}
    distances: dict[str, list[float]] = {k: [] for k in (references or {})}
    out_obs: list[FaceObservation] = []
    for k in range(cut, len(driver)):
        obs = driver[k]
        expression.update(obs)
        image = renderer.render(expression.state_at(obs.timestamp_ms))
        if on_frame is not None:
            on_frame(k, image)
        seen = output_tracker.track(Frame(image, obs.timestamp_ms, k))
        out_obs.append(seen)
        if k in held.crops:
            got = aligned_crop(image, posed_mesh(renderer))
            if got is not None:
                for name, value in image_quality(got[0], held.crops[k], held.landmarks[k]).items():
                    quality[name].append(value)
        if describe is not None and references and seen.has_face and (k - cut) % IDENTITY_EVERY == 0:
            d = describe(image, seen.landmarks)
            for name, ref in references.items():
                distances[name].append(float(np.linalg.norm(d - ref)))

    held_driver = driver[cut:]
    drv_b, drv_t = _stack(held_driver)
    out_b, out_t = _stack(out_obs)
    drv_au = np.where(np.isnan(drv_b[:, :1]), np.nan, blendshapes_to_au(np.nan_to_num(drv_b)))
    out_au = np.where(np.isnan(out_b[:, :1]), np.nan, blendshapes_to_au(np.nan_to_num(out_b)))
    row = metrics.closed_loop_report(drv_b, drv_t, out_b, out_t, drv_au, out_au, list(AU_CHANNELS)).to_dict()
    row.pop("definitions", None)
    for name, values in quality.items():
        if values:
            arr = np.asarray(values, np.float64)
            finite = np.isfinite(arr[:, 0])
            row[f"{name}_psnr"] = round(float(np.mean(arr[finite, 0])), 3) if finite.any() else None
            row[f"{name}_ssim"] = round(float(np.nanmean(arr[:, 1])), 4)
    row["quality_frames"] = len(quality["face"])
    for name, values in distances.items():
        row.update(identity_fields(values, name))
    return row


def identity_fields(distances: Sequence[float], name: str) -> dict:
    """``identity_to_{name}_mean`` and ``…_max`` of descriptor distances (None when there are none)."""
    return {f"identity_to_{name}_mean": round(float(np.mean(distances)), 4) if len(distances) else None,
            f"identity_to_{name}_max": round(float(np.max(distances)), 4) if len(distances) else None}
