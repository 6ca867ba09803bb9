"""Closed-loop gains of the AU basis: make MediaPipe read back on the render what it read on the driver.

    python -m vcam_me.training.calibrate_gains --basis models/au_basis.npz \\
        --avatar ../shared/data/avatars/fdtflite_iris-detection-ex1.jpg --iterations 3

A warped photo under-reads in MediaPipe for some channels (small lid and lip motions,
gaze) and over-reads for others. For each feature this drives the renderer from real
clips, re-tracks the output, and fits the slope of the output's rest-relative value on the
driver's (pooled over clips; AU channels from the blendshape crosswalk, gaze from eyeLook*,
head pose from the transformation matrix). The gain is then divided by that slope
(each step limited to ×0.6..×2, the total to 0.5..2; left/right pairs share one gain), a
few times over. Features the clips do not move, or that MediaPipe does not read back on a
warped photo at all (slope < 0.15: more gain only distorts), keep their gain.

Head pose: the output's pose change is regressed on the rotation the renderer applied and
on the features (``out = a · applied + C · f + c`` per axis). ``1 / a`` is the pose gain;
``C`` is the pose MediaPipe reads from the expression alone, which the driver's pose
already contains, so the renderer subtracts it (``pose_coupling``).

Everything is written into the basis file (``gain``, ``pose_gain``, ``pose_coupling``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from vcam_me.avatar import AUBasis, AvatarRenderer
from vcam_me.evaluation import metrics
from vcam_me.training import closed_loop as cl
from vcam_me.training.features import (
    FEATURE_NAMES,
    blendshapes_to_au_and_gaze,
    features_from,
)

DEFAULT_CLIPS = ("d0", "d5", "d7", "d8", "d18", "d19", "WolfgangLanger", "d6", "d14")
STEP_LIMITS = (0.6, 2.0)
GAIN_LIMITS = (0.5, 2.0)
#: Below this closed-loop slope a feature is treated as not read back at all.
MIN_SLOPE = 0.15
#: Ridge strength (per frame) of the pose-coupling regression.
COUPLING_RIDGE = 0.05


def _pair_index() -> np.ndarray:
    """Index of each feature's left/right partner (itself when unsided)."""
    names = list(FEATURE_NAMES)
    out = np.arange(len(names))
    for i, n in enumerate(names):
        for a, b in (("_L", "_R"), ("_R", "_L")):
            if n.endswith(a) and n[: -2] + b in names:
                out[i] = names.index(n[: -2] + b)
    for a, b in (("gaze_left_h", "gaze_right_h"), ("gaze_left_v", "gaze_right_v")):
        out[names.index(a)], out[names.index(b)] = names.index(b), names.index(a)
    return out


def fit_pose(applied: np.ndarray, feats: np.ndarray, out: np.ndarray,
             ridge: float = COUPLING_RIDGE) -> tuple[np.ndarray, np.ndarray]:
    """Per axis ``out ≈ a · applied + C · feats + c``: returns ``a (3,)``, ``C (3, n_features)``."""
    ok = np.isfinite(out).all(1) & np.isfinite(applied).all(1) & np.isfinite(feats).all(1)
    applied, feats, out = applied[ok], feats[ok], out[ok]
    a = np.zeros(3)
    c = np.zeros((3, feats.shape[1]))
    for axis in range(3):
        x = np.column_stack([applied[:, axis], feats, np.ones(len(feats))])
        reg = ridge * len(x) * np.eye(x.shape[1])
        reg[0, 0] = reg[-1, -1] = 0.0
        w = np.linalg.solve(x.T @ x + reg, x.T @ out[:, axis])
        a[axis], c[axis] = w[0], w[1:-1]
    return a, c
#: A feature takes part when its driver std over the pooled clips exceeds this.
MIN_STD = 0.03


def rest_relative_features(blend: np.ndarray) -> np.ndarray:
    """``(N, 52)`` (NaN rows = no face) → rest-relative features ``(N, n_features)``."""
    rows = np.isfinite(blend).all(1)
    out = np.full((len(blend), len(FEATURE_NAMES)), np.nan)
    if rows.sum() < 2:
        return out
    au, gaze = blendshapes_to_au_and_gaze(blend[rows])
    f = features_from(au, gaze).astype(np.float64)
    n_au = len(FEATURE_NAMES) - 4
    f[:, :n_au] -= np.percentile(f[:, :n_au], 5, axis=0)
    f[:, n_au:] -= np.median(f[:, n_au:], axis=0)
    out[rows] = f
    return out


def slopes(drv: list[np.ndarray], out: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Pooled least-squares slope out≈slope·drv per column, and the driver's std per column."""
    d = np.concatenate(drv)
    o = np.concatenate(out)
    both = np.isfinite(d).all(1) & np.isfinite(o).all(1)
    d, o = d[both], o[both]
    return np.sum(d * o, 0) / np.maximum(np.sum(d * d, 0), 1e-12), d.std(0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--basis", type=Path, required=True, help="basis .npz to calibrate (rewritten in place)")
    p.add_argument("--avatar", type=Path, default=cl.DATA / "avatars" / "fdtflite_iris-detection-ex1.jpg")
    p.add_argument("--clips", nargs="*", default=list(DEFAULT_CLIPS))
    p.add_argument("--iterations", type=int, default=2)
    p.add_argument("--max-frames", type=int, default=200)
    p.add_argument("--cache", type=Path, default=None, help="folder to cache driver tracking in")
    p.add_argument("--reset", action="store_true", help="start from gains of 1")
    p.add_argument("--pose-only", action="store_true", help="keep the feature gains, refit only the pose terms")
    p.add_argument("--coupling-ridge", type=float, default=COUPLING_RIDGE, help="ridge strength (per frame) of the pose coupling")
    args = p.parse_args(argv)

    import cv2

    cv2.setNumThreads(1)
    with np.load(args.basis) as data:
        stored = {k: data[k] for k in data.files}
    basis = AUBasis.load(args.basis)
    gain = np.ones(len(FEATURE_NAMES)) if args.reset else basis.gain.astype(np.float64)
    pose_gain = np.ones(3) if args.reset else basis.pose_gain.astype(np.float64)
    coupling = np.zeros((3, len(FEATURE_NAMES))) if args.reset else basis.pose_coupling.astype(np.float64)
    pair = _pair_index()
    avatar = cl.make_avatar(args.avatar)
    for it in range(args.iterations):
        t0 = time.monotonic()
        renderer = AvatarRenderer.create(avatar, basis=AUBasis(
            basis.basis, gain.astype(np.float32), pose_gain.astype(np.float32), coupling.astype(np.float32), basis.mixing))
        fd, fo, pd, po, ratios = [], [], [], [], []
        applied, commanded = [], []
        for name in args.clips:
            rep, drv_b, drv_t, out_b, out_t = cl.run_clip_data(
                renderer, name, cl.DATA / "driving" / cl.CLIPS.get(name, name), args.max_frames, args.cache, None)
            ratios.append((name, rep.aed_ratio, rep.apd_ratio, rep.min_pearson_r))
            fd.append(rest_relative_features(drv_b))
            fo.append(rest_relative_features(out_b))
            dp, op = metrics.head_pose(drv_t), metrics.head_pose(out_t)
            pd.append(dp - np.nanmedian(dp, 0))
            po.append(op - np.nanmedian(op, 0))
            states = cl.driver_states(drv_b, drv_t)
            applied.append(np.array([renderer._pose(st) for st in states]))
            # the features as drawn (after the basis's cross-talk mixing): what the renderer
            # multiplies the coupling by
            commanded.append(np.array([renderer._mixed_features(st) for st in states]))
        summary = " ".join(f"{n}:{a:.2f}/{b:.2f}/{r:.2f}" for n, a, b, r in ratios)
        print(f"iteration {it}: AEDr/APDr/min r  {summary}  ({time.monotonic() - t0:.0f} s)", flush=True)
        slope, std = slopes(fd, fo)
        use = (std > MIN_STD) & (slope > MIN_SLOPE)
        step = np.clip(1.0 / np.maximum(slope, 1e-3), *STEP_LIMITS)
        step = np.where(use, step, 1.0)
        step = np.sqrt(step * step[pair])  # one gain per left/right pair
        if not args.pose_only:
            gain = np.clip(gain * step, *GAIN_LIMITS)
        a, coupling = fit_pose(np.concatenate(applied), np.concatenate(commanded), np.concatenate(po), args.coupling_ridge)
        pose_gain = np.clip(1.0 / np.maximum(a, 1e-3), *GAIN_LIMITS)
        print("  gains:", " ".join(f"{n}={g:.2f}" for n, g in zip(FEATURE_NAMES, gain) if abs(g - 1) > 0.01),
              "| pose gain", np.round(pose_gain, 2), "| largest coupling (deg)", np.round(np.abs(coupling).max(1), 2), flush=True)
    stored["gain"] = gain.astype(np.float32)
    stored["pose_gain"] = pose_gain.astype(np.float32)
    stored["pose_coupling"] = coupling.astype(np.float32)
    stored["gain_calibration"] = np.array(f"closed loop on {args.avatar.name}; clips {' '.join(args.clips)}; "
                                          f"{args.iterations} iterations, {args.max_frames} frames per clip")
    np.savez_compressed(args.basis, **stored)
    print(f"wrote gains into {args.basis}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
