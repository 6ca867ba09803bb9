"""Closed-loop check of the avatar renderer (for iterating on the renderer and basis).

Drives the renderer straight from the driver's tracked blendshapes (crosswalk → AUs minus
the clip's per-channel 5th percentile; gaze as tracked; head pose minus the clip's median),
renders every driving frame, re-tracks the render with the same MediaPipe model and prints
AED ratio, APD ratio and per-AU Pearson r (metrics of vcam_me.evaluation.metrics).

    python scripts/closed_loop_check.py [--avatar PHOTO_OR_FOLDER] [--clips d0 d5 ...]
        [--max-frames 300] [--cache /tmp/cl_cache] [--save-dir DIR]

This is a development aid, not the official ``vcam-me eval`` (which goes through the
expression stage and the 60 fps render clock).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[2]

from vcam_me.avatar import Avatar, AUBasis, AvatarRenderer
from vcam_me.evaluation import metrics
from vcam_me.geometry import pose_from_transform
from vcam_me.training.features import blendshapes_to_au_and_gaze
from vcam_me.types import AU_CHANNELS, DERIVED_AU_CHANNELS, AU_INDEX, ExpressionState, Frame

DATA = ROOT.parent / "shared" / "data"
CLIPS = {
    "d0": "liveportrait_d0.mp4", "d5": "liveportrait_d5.mp4", "d7": "liveportrait_d7.mp4",
    "d8": "liveportrait_d8.mp4", "d18": "liveportrait_d18.mp4", "d19": "liveportrait_d19.mp4",
    "WolfgangLanger": "pyfeat_WolfgangLanger_Pexels.mp4", "d6": "liveportrait_d6.mp4",
    "d14": "liveportrait_d14.mp4",
}


def _tracker():
    from vcam_me.models import verified_model_path
    from vcam_me.tracking.mediapipe_tracker import FaceTracker

    return FaceTracker.create(verified_model_path("face_landmarker"), mode="video")


def track_video(path: Path, max_frames: int) -> tuple[np.ndarray, np.ndarray]:
    blend, tf = [], []
    cap = cv2.VideoCapture(str(path))
    with _tracker() as tracker:
        i = 0
        while i < max_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            obs = tracker.track(Frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), 33 * i + 1, i))
            blend.append(obs.blendshapes if obs.has_face else np.full(52, np.nan))
            tf.append(obs.transform if obs.has_face else np.full((4, 4), np.nan))
            i += 1
    cap.release()
    return np.asarray(blend, np.float64), np.asarray(tf, np.float64)


def driver_states(blend: np.ndarray, tf: np.ndarray) -> list[ExpressionState]:
    rows = np.isfinite(blend).all(1)
    au, gaze = blendshapes_to_au_and_gaze(np.nan_to_num(blend))
    base = np.percentile(au[rows], 5, axis=0)
    au = np.clip(au - base, 0.0, 1.0)
    au[:, [AU_INDEX[c] for c in DERIVED_AU_CHANNELS]] = 0.0
    pose = np.array([pose_from_transform(m) if np.isfinite(m).all() else np.zeros(3) for m in tf])
    pose -= np.median(pose[rows], axis=0)
    states = []
    for i in range(len(blend)):
        if not rows[i]:
            states.append(ExpressionState.neutral(33 * i))
            continue
        states.append(ExpressionState(33 * i, au[i].astype(np.float32), gaze[i].astype(np.float32), pose[i].astype(np.float32)))
    return states


def au_from_blend(blend: np.ndarray) -> np.ndarray:
    return blendshapes_to_au_and_gaze(blend)[0]


def make_avatar(photo: Path) -> Avatar:
    """Track ``photo`` and make an unsaved avatar of it."""
    from vcam_me.avatar import create_avatar, read_photo

    image = read_photo(photo)
    with _tracker_image() as tracker:
        faces = tracker.detect_image(image)
    return create_avatar(image, faces, None, source_name=photo.name)


def _tracker_image():
    from vcam_me.models import verified_model_path
    from vcam_me.tracking.mediapipe_tracker import FaceTracker

    return FaceTracker.create(verified_model_path("face_landmarker"), mode="image", num_faces=4)


def run_clip(renderer: AvatarRenderer, name: str, path: Path, max_frames: int, cache: Path | None,
             save_dir: Path | None) -> metrics.MetricsReport:
    """Render one clip from its tracked driver, re-track it and score it."""
    return run_clip_data(renderer, name, path, max_frames, cache, save_dir)[0]


def run_clip_data(renderer: AvatarRenderer, name: str, path: Path, max_frames: int, cache: Path | None,
                  save_dir: Path | None):
    """:func:`run_clip` plus the raw arrays ``(report, drv_blend, drv_tf, out_blend, out_tf)``."""
    cached = cache / f"{name}_{max_frames}.npz" if cache else None
    if cached and cached.is_file():
        d = np.load(cached)
        drv_b, drv_t = d["blend"], d["tf"]
    else:
        drv_b, drv_t = track_video(path, max_frames)
        if cached:
            cached.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cached, blend=drv_b, tf=drv_t)
    states = driver_states(drv_b, drv_t)
    out_b, out_t = [], []
    writer = None
    if save_dir:
        save_dir.mkdir(parents=True, exist_ok=True)
        w, h = renderer.size
        writer = cv2.VideoWriter(str(save_dir / f"{name}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30, (w // 2, h // 2))
    with _tracker() as tracker:
        for i, st in enumerate(states):
            img = renderer.render(st)
            if writer is not None:
                writer.write(cv2.cvtColor(cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2)), cv2.COLOR_RGB2BGR))
            obs = tracker.track(Frame(img, 33 * i + 1, i))
            out_b.append(obs.blendshapes if obs.has_face else np.full(52, np.nan))
            out_t.append(obs.transform if obs.has_face else np.full((4, 4), np.nan))
    if writer is not None:
        writer.release()
    out_b, out_t = np.asarray(out_b, np.float64), np.asarray(out_t, np.float64)

    def conv(b):
        rows = np.isfinite(b).all(1)
        a = np.full((len(b), len(AU_CHANNELS)), np.nan)
        a[rows] = au_from_blend(b[rows])
        return a

    rep = metrics.closed_loop_report(drv_b, drv_t, out_b, out_t, conv(drv_b), conv(out_b), list(AU_CHANNELS))
    if VERBOSE:
        both = np.isfinite(drv_b).all(1) & np.isfinite(out_b).all(1)
        dp, op = metrics.head_pose(drv_t)[both], metrics.head_pose(out_t)[both]
        dp, op = dp - np.median(dp, 0), op - np.median(op, 0)
        gains = [float(np.sum(dp[:, j] * op[:, j]) / max(np.sum(dp[:, j] ** 2), 1e-9)) for j in range(3)]
        print("   pose gain yaw/pitch/roll", np.round(gains, 2), "driver std", np.round(dp.std(0), 2))
        db, ob = drv_b[both], out_b[both]
        db, ob = db - np.percentile(db, 5, 0), ob - np.percentile(ob, 5, 0)
        from vcam_me.types import BLENDSHAPE_NAMES
        order = np.argsort(-db.std(0))[:12]
        print("   blendshape gain", " ".join(f"{BLENDSHAPE_NAMES[j]}={np.sum(db[:, j] * ob[:, j]) / max(np.sum(db[:, j] ** 2), 1e-9):.2f}" for j in order))
    return rep, drv_b, drv_t, out_b, out_t


VERBOSE = False


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--avatar", default=str(DATA / "avatars" / "fdtflite_iris-detection-ex1.jpg"))
    p.add_argument("--clips", nargs="*", default=["d0", "d5", "d7", "d8", "d18", "d19", "WolfgangLanger"])
    p.add_argument("--max-frames", type=int, default=300)
    p.add_argument("--basis", default=None, help="AU basis .npz (default: the shipped one)")
    p.add_argument("--cache", type=Path, default=None, help="folder to cache driver tracking in")
    p.add_argument("--save-dir", type=Path, default=None, help="write half-size renders here")
    p.add_argument("-v", "--verbose", action="store_true", help="print pose and blendshape gains")
    args = p.parse_args(argv)
    global VERBOSE
    VERBOSE = args.verbose
    cv2.setNumThreads(1)

    spec = Path(args.avatar)
    if (spec / "avatar.json").is_file():
        avatar = Avatar.load(spec)
    else:
        avatar = make_avatar(spec)
    renderer = AvatarRenderer.create(avatar, basis=AUBasis.load(args.basis) if args.basis else None)
    print(f"{'clip':16s} {'frames':>6s} {'AED':>6s} {'AEDr':>6s} {'APDr':>6s} {'min r':>6s} {'r>=.7':>6s}  per-AU r (driver range > 0.2)")
    for name in args.clips:
        t0 = time.monotonic()
        rep = run_clip(renderer, name, DATA / "driving" / CLIPS.get(name, name), args.max_frames, args.cache, args.save_dir)
        rs = " ".join(f"{k}={v:.2f}" for k, v in rep.pearson_r.items())
        ok = sum(v >= 0.7 for v in rep.pearson_r.values())
        print(f"{name:16s} {rep.compared_frames:6d} {rep.aed:6.3f} {rep.aed_ratio:6.3f} {rep.apd_ratio:6.3f} {rep.min_pearson_r:6.2f} {ok:3d}/{len(rep.pearson_r):<2d}  {rs}  ({time.monotonic() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
