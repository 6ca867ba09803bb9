"""Closed-loop gains of the AU basis: make MediaPipe read back on the render what it read on the driver.

    python -m vcam_me.training.calibrate_gains --basis models/au_basis.npz \\
        --avatar ../shared/data/avatars/fdtflite_iris-detection-ex1.jpg --iterations 3

A warped photo under-reads in MediaPipe for some channels (small lid and lip motions,
gaze) and over-reads for others. For each feature this drives the renderer from real
clips, re-tracks the output, and fits the slope of the output's rest-relative value on the
driver's (pooled over clips; AU channels from the blendshape crosswalk, gaze from eyeLook*,
head pose from the transformation matrix). The gain is then divided by that slope
(each step limited to ×0.6..×2, the total to 0.3..3), a few times over. Features the clips do
not move keep gain 1. The gains are written into the basis file (``gain``, ``pose_gain``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from vcam_me.avatar import AUBasis, AvatarRenderer
from vcam_me.evaluation import metrics
from vcam_me.training import closed_loop as cl
from vcam_me.training.features import FEATURE_NAMES, blendshapes_to_au_and_gaze, features_from

DEFAULT_CLIPS = ("d0", "d5", "d7", "d8", "d18", "d19", "WolfgangLanger", "d6", "d14")
STEP_LIMITS = (0.6, 2.0)
GAIN_LIMITS = (0.3, 3.0)
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
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--max-frames", type=int, default=200)
    p.add_argument("--cache", type=Path, default=None, help="folder to cache driver tracking in")
    p.add_argument("--reset", action="store_true", help="start from gains of 1")
    args = p.parse_args(argv)

    import cv2

    cv2.setNumThreads(1)
    with np.load(args.basis) as data:
        stored = {k: data[k] for k in data.files}
    basis = AUBasis.load(args.basis)
    gain = np.ones(len(FEATURE_NAMES)) if args.reset else basis.gain.astype(np.float64)
    pose_gain = np.ones(3) if args.reset else basis.pose_gain.astype(np.float64)
    avatar = cl.make_avatar(args.avatar)
    for it in range(args.iterations):
        t0 = time.monotonic()
        renderer = AvatarRenderer.create(avatar, basis=AUBasis(basis.basis, gain.astype(np.float32), pose_gain.astype(np.float32)))
        fd, fo, pd, po, ratios = [], [], [], [], []
        for name in args.clips:
            rep, drv_b, drv_t, out_b, out_t = cl.run_clip_data(
                renderer, name, cl.DATA / "driving" / cl.CLIPS.get(name, name), args.max_frames, args.cache, None)
            ratios.append((name, rep.aed_ratio, rep.apd_ratio, rep.min_pearson_r))
            fd.append(rest_relative_features(drv_b))
            fo.append(rest_relative_features(out_b))
            dp, op = metrics.head_pose(drv_t), metrics.head_pose(out_t)
            pd.append(dp - np.nanmedian(dp, 0))
            po.append(op - np.nanmedian(op, 0))
        summary = " ".join(f"{n}:{a:.2f}/{b:.2f}/{r:.2f}" for n, a, b, r in ratios)
        print(f"iteration {it}: AEDr/APDr/min r  {summary}  ({time.monotonic() - t0:.0f} s)", flush=True)
        slope, std = slopes(fd, fo)
        use = std > MIN_STD
        step = np.clip(1.0 / np.maximum(slope, 1e-3), *STEP_LIMITS)
        gain = np.where(use, np.clip(gain * step, *GAIN_LIMITS), gain)
        pslope, _ = slopes(pd, po)
        pose_gain = np.clip(pose_gain * np.clip(1.0 / np.maximum(pslope, 1e-3), *STEP_LIMITS), *GAIN_LIMITS)
        print("  gains:", " ".join(f"{n}={g:.2f}" for n, g, u in zip(FEATURE_NAMES, gain, use) if u),
              "| pose", np.round(pose_gain, 2), flush=True)
    stored["gain"] = gain.astype(np.float32)
    stored["pose_gain"] = pose_gain.astype(np.float32)
    stored["gain_calibration"] = np.array(f"closed loop on {args.avatar.name}; clips {' '.join(args.clips)}; "
                                          f"{args.iterations} iterations, {args.max_frames} frames per clip")
    np.savez_compressed(args.basis, **stored)
    print(f"wrote gains into {args.basis}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
