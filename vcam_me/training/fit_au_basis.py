"""Fit the AU → face-mesh displacement basis from real driving videos.

    python -m vcam_me.training.fit_au_basis --data ../shared/data/driving --out models/au_basis.npz

What it does, per clip:
  1. track every frame with MediaPipe (:class:`~vcam_me.tracking.FaceTracker`, video mode);
  2. pose-normalise the 478 landmarks: a weighted 3-D similarity onto MediaPipe's canonical
     face on its own 33 head-pose landmarks (the points MediaPipe itself uses to solve pose),
     so the result is in the canonical frame with the canonical inter-ocular distance = 1;
  3. features = driving AU channels (blendshape crosswalk) above the clip's 5th percentile,
     plus gaze relative to the clip median.
Then one ridge regression for all clips, with a free (unpenalised) intercept per clip that
absorbs each person's identity and rest shape: aligned(t) = c_clip + features(t) @ basis.
Each feature may only move the part of the face it belongs to (:func:`allowed_features`):
the clips are small and their actions co-occur (a wink with the other brow raised, a
look down with a blink), and an unrestricted fit would copy those coincidences into the
basis (a blink that raises the brows).
Every clip is also used mirrored (landmarks flipped left↔right, L/R channels swapped), which
makes the basis symmetric and doubles the data for one-sided actions (winks, smirks).

Output ``.npz`` (float32): ``basis (n_features, 478, 3)`` in canonical IOD units per unit
feature, ``feature_names``, ``clips``, ``ridge_lambda``, ``r2`` (in-sample, per clip).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from vcam_me.avatar import mesh
from vcam_me.training.features import (
    FEATURE_NAMES,
    blendshapes_to_au_and_gaze,
    features_from,
    mirror_features,
)

log = logging.getLogger(__name__)

#: Clips used by default: frontal, one face throughout, each covering different AUs
#: (see ../shared/data/MANIFEST.md). Wide-framed or face-loss clips add nothing here.
DEFAULT_CLIPS = (
    "liveportrait_d0.mp4", "liveportrait_d1.mp4", "liveportrait_d2.mp4", "liveportrait_d5.mp4",
    "liveportrait_d6.mp4", "liveportrait_d7.mp4", "liveportrait_d8.mp4", "liveportrait_d14.mp4",
    "liveportrait_d18.mp4", "liveportrait_d19.mp4", "pyfeat_WolfgangLanger_Pexels.mp4",
    "pyfeat_single_face.mp4",
)


def read_frames(path: Path, max_frames: int, stride: int):
    """Yield ``(index, timestamp_ms, rgb)`` for every ``stride``-th frame, at most ``max_frames``."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SystemExit(f"cannot open video {path}")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    i = n = 0
    try:
        while n < max_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            if i % stride == 0:
                yield i, round(i * 1000.0 / fps) + 1, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                n += 1
            i += 1
    finally:
        cap.release()


def track_clip(path: Path, max_frames: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Aligned landmarks ``(n, 478, 3)`` and raw blendshapes ``(n, 52)`` of the face frames."""
    from vcam_me.models import verified_model_path
    from vcam_me.tracking.mediapipe_tracker import FaceTracker
    from vcam_me.types import Frame

    aligned, blend = [], []
    with FaceTracker.create(verified_model_path("face_landmarker"), mode="video") as tracker:
        for i, ts, rgb in read_frames(path, max_frames, stride):
            obs = tracker.track(Frame(rgb, ts, i))
            if not obs.has_face or obs.blendshapes is None:
                continue
            px = mesh.landmarks_to_pixels(obs.landmarks, obs.image_size)
            aligned.append(mesh.normalise_pose(px)[0])
            blend.append(obs.blendshapes)
    return np.asarray(aligned, np.float64), np.asarray(blend, np.float64)


def clip_features(blend: np.ndarray) -> np.ndarray:
    """Rest-relative features ``(n, n_features)`` of one clip's blendshapes ``(n, 52)``."""
    au, gaze = blendshapes_to_au_and_gaze(blend)
    f = features_from(au, gaze).astype(np.float64)
    n_au = len(FEATURE_NAMES) - 4
    f[:, :n_au] = np.clip(f[:, :n_au] - np.percentile(f[:, :n_au], 5, axis=0), 0.0, 1.0)
    f[:, n_au:] -= np.median(f[:, n_au:], axis=0)
    return f


def mirror_clip(aligned: np.ndarray, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    perm = mesh.mirror_index()
    m = aligned[:, perm, :] * np.array([-1.0, 1.0, 1.0])
    mf = mirror_features()
    return m, feats[:, mf[0].astype(int)] * mf[1]


#: Sided features that move the whole mouth or jaw sideways (mouthLeft/Right, jawLeft/Right),
#: not one side of it: they may move the whole lower face.
WHOLE_MOUTH_SHIFTS = ("MOUTH", "AU30")


def allowed_features(vertices: np.ndarray) -> np.ndarray:
    """``(n_features, n_vertices) bool``: which features may move which vertex.

    One-sided actions stay on their side of the face, up to a band 0.15 IOD past the
    midline (the lips are one piece). Without that, a mouth action of one side learns the
    other side's motion too, because in the clips the two sides mostly move together: the
    fitted left lip-corner puller moved the right corner half as much, the left dimpler
    both corners alike, and a one-sided smile, dimpler or sneer read back as two-sided.

    ``vertices``: ``(n, 3)`` a rest face in the canonical frame (IOD units, eyes at y = 0,
    the subject's right eye at x ≈ −0.5, y down).
    """
    x, y = vertices[:, 0], vertices[:, 1]
    eye = {"R": np.hypot(x + 0.5, y) < 0.42, "L": np.hypot(x - 0.5, y) < 0.42}
    eye_wide = {"R": np.hypot(x + 0.5, y) < 0.6, "L": np.hypot(x - 0.5, y) < 0.6}
    side = {"R": x < 0.15, "L": x > -0.15}
    upper, lower = y < 0.3, y > 0.4
    out = np.ones((len(FEATURE_NAMES), len(vertices)), bool)
    for f, name in enumerate(FEATURE_NAMES):
        s = name[-1] if name[-2:] in ("_L", "_R") else None
        base = name.split("_")[0]
        if name.startswith("gaze_"):
            out[f] = eye["L" if "_left_" in name else "R"]
        elif base == "AU43":
            out[f] = eye[s]
        elif base in ("AU7", "AU6"):
            out[f] = eye_wide[s]
        elif base in ("AU1", "AU2", "AU4", "AU5"):
            out[f] = upper & (side[s] if s else True)
        elif base == "AU9":
            out[f] = y > 0.0
        elif s is None or base in WHOLE_MOUTH_SHIFTS:  # both sides, or the whole mouth/jaw sideways
            out[f] = lower
        else:  # one side of the mouth: that half of the lower face (and a band past the midline)
            out[f] = lower & side[s]
    return out


def fit_ridge(groups: list[tuple[np.ndarray, np.ndarray]], lam: float, allowed: np.ndarray | None = None) -> np.ndarray:
    """Ridge with a free intercept per group: returns ``(n_features, n_outputs)``.

    ``groups``: list of (features ``(n_i, k)``, targets ``(n_i, m)``). Centring each group
    on its own mean is exactly the unpenalised per-group intercept. ``allowed``:
    optional ``(k, m // 3) bool`` (per vertex, 3 outputs each): features left out of a
    vertex's regression get 0 there.
    """
    xs, ys = [], []
    for x, y in groups:
        xs.append(x - x.mean(0))
        ys.append(y - y.mean(0))
    x, y = np.concatenate(xs), np.concatenate(ys)
    k = x.shape[1]
    # λ per unit of data so the strength does not depend on how many frames were used
    a = x.T @ x + lam * len(x) / 1000.0 * np.eye(k)
    b = x.T @ y
    if allowed is None:
        return np.linalg.solve(a, b)
    w = np.zeros((k, y.shape[1]))
    # vertices sharing one allowed set share one solve
    patterns = {}
    for v in range(allowed.shape[1]):
        patterns.setdefault(allowed[:, v].tobytes(), []).append(v)
    for key, verts in patterns.items():
        use = np.frombuffer(key, dtype=bool)
        cols = np.concatenate([[3 * v, 3 * v + 1, 3 * v + 2] for v in verts])
        if use.any():
            w[np.ix_(use, cols)] = np.linalg.solve(a[np.ix_(use, use)], b[np.ix_(use, cols)])
    return w


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, required=True, help="folder with the driving videos")
    p.add_argument("--out", type=Path, required=True, help="output .npz")
    p.add_argument("--clips", nargs="*", default=list(DEFAULT_CLIPS), help="file names inside --data")
    p.add_argument("--max-frames", type=int, default=400, help="frames per clip at most (after stride)")
    p.add_argument("--stride", type=int, default=1, help="use every n-th frame")
    p.add_argument("--ridge", type=float, default=1.0, help="ridge strength per 1000 frames")
    p.add_argument("--cache", type=Path, default=None, help="optional .npz cache of the tracking results")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t0 = time.monotonic()

    tracked: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if args.cache and args.cache.is_file():
        data = np.load(args.cache)
        for name in args.clips:
            if f"{name}/aligned" in data:
                tracked[name] = (data[f"{name}/aligned"], data[f"{name}/blend"])
    for name in args.clips:
        if name in tracked:
            continue
        path = args.data / name
        if not path.is_file():
            print(f"skipping missing clip {path}", file=sys.stderr)
            continue
        aligned, blend = track_clip(path, args.max_frames, args.stride)
        log.info("%s: %d face frames (%.0f s so far)", name, len(aligned), time.monotonic() - t0)
        if len(aligned) >= 10:
            tracked[name] = (aligned, blend)
    if args.cache:
        np.savez_compressed(args.cache, **{f"{n}/{k}": v for n, (a, b) in tracked.items() for k, v in (("aligned", a), ("blend", b))})
    if not tracked:
        print("no usable clips", file=sys.stderr)
        return 1

    groups, plain = [], []
    for name, (aligned, blend) in tracked.items():
        f = clip_features(blend)
        y = aligned.reshape(len(aligned), -1)
        groups.append((f, y))
        plain.append((name, f, y))
        ma, mf = mirror_clip(aligned, f)
        groups.append((mf, ma.reshape(len(ma), -1)))
    rest = np.concatenate([a.mean(0)[None] for a, _ in tracked.values()]).mean(0)
    w = fit_ridge(groups, args.ridge, allowed_features(rest))

    r2 = []
    for name, f, y in plain:
        pred = (f - f.mean(0)) @ w
        yc = y - y.mean(0)
        score = 1.0 - np.sum((yc - pred) ** 2) / max(np.sum(yc**2), 1e-12)
        r2.append(score)
        log.info("  %-40s R² %.3f", name, score)
    basis = w.reshape(len(FEATURE_NAMES), 478, 3).astype(np.float32)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        basis=basis,
        feature_names=np.array(FEATURE_NAMES),
        clips=np.array([n for n, *_ in plain]),
        ridge_lambda=np.float32(args.ridge),
        r2=np.array(r2, np.float32),
    )
    norms = np.linalg.norm(basis, axis=2).max(axis=1)
    for n, v in zip(FEATURE_NAMES, norms):
        log.info("  %-14s max vertex displacement %.3f IOD", n, v)
    log.info("wrote %s (%d bytes) in %.0f s", args.out, args.out.stat().st_size, time.monotonic() - t0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
