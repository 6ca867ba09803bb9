"""Does the idle life show? The idle avatar rendered, re-tracked by MediaPipe, and compared
with what the idle animator commanded.

    .venv/bin/python benchmarks/idle_closed_loop.py            # writes benchmarks/results/idle_closed_loop.json
    .venv/bin/python benchmarks/idle_closed_loop.py --seconds 20 --out /tmp/idle_loop.json

Two renders of the bundled sample avatar, as ``vcam-me render`` draws it (the app's builders,
``render_offline``, the label and the consent mark), every output frame re-tracked on its own
(MediaPipe in IMAGE mode: no smoothing lag in the measurement):

* **face lost** for ``--seconds``: the driver has no face at all, so the idle layer owns the
  avatar throughout. Blinks: each commanded blink (AU43 peak ≥ 0.5) counts as seen when the
  re-tracked eye closure (mean of eyeBlinkLeft/Right) rises ≥ 0.15 above its median inside
  the blink (±1 frame); re-tracked closures with no commanded blink are false blinks.
  Glances and sway: Pearson r between commanded and re-tracked horizontal gaze, yaw, pitch
  and roll, and the standard deviation of each;
* **hand-over**: the bundled real clip drives the avatar, with its face removed for 3 s in
  the middle (empty observations), so the idle layer takes over and hands back. The largest
  frame-to-frame change of the re-tracked head pose and of the AUs within 0.5 s of each
  hand-over is set against the same figure over the rest of the clip (real motion): a jump
  would stand out.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FPS = 30
BLINK_RISE = 0.15


def _render(cfg, avatar, consent, size, driver: list, seed: int):
    """Render ``driver`` with an idle layer whose commands are recorded; re-track every frame."""
    from vcam_me.app import (
        build_expression,
        build_idle,
        build_renderer,
        build_stamper,
        build_tracker,
    )
    from vcam_me.evaluation.closed_loop import RetrackSink
    from vcam_me.pipeline import render_offline

    expression = build_expression(cfg, offline=True, observations=driver, micro="none")
    idle = build_idle(cfg, seed=seed)
    commanded: dict[int, tuple] = {}
    sample = idle.sample

    def recording_sample(t_ms, face_present):
        s = sample(t_ms, face_present)
        commanded[int(t_ms)] = (s.au.copy(), s.gaze.copy(), s.pose.copy(), s.weight)
        return s

    idle.sample = recording_sample
    expression.idle = idle
    with build_tracker(cfg, "image") as tracker:
        sink = RetrackSink(tracker)
        render_offline(driver, expression, build_renderer(avatar, size, cfg), build_stamper(cfg, size, consent), sink, FPS)
    times = sorted(commanded)
    return times, [commanded[t] for t in times], sink.observations


def _retracked(observations: list) -> dict[str, np.ndarray]:
    from vcam_me.expression import blendshapes_to_au, gaze_from_blendshapes
    from vcam_me.geometry import pose_from_transform
    from vcam_me.types import BLENDSHAPE_INDEX

    n = len(observations)
    closure = np.full(n, np.nan)
    gaze_x = np.full(n, np.nan)
    pose = np.full((n, 3), np.nan)
    au = np.full((n, 45), np.nan)
    for i, o in enumerate(observations):
        if o.has_face and o.blendshapes is not None:
            b = o.blendshapes
            closure[i] = 0.5 * (b[BLENDSHAPE_INDEX["eyeBlinkLeft"]] + b[BLENDSHAPE_INDEX["eyeBlinkRight"]])
            gaze_x[i] = float(np.mean(gaze_from_blendshapes(b)[:, 0]))
            au[i] = blendshapes_to_au(b)
            if o.transform is not None:
                pose[i] = pose_from_transform(o.transform)
    return {"closure": closure, "gaze_x": gaze_x, "pose": pose, "au": au}


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def _r(a: np.ndarray, b: np.ndarray) -> float | None:
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 10 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return None
    return round(float(np.corrcoef(a[ok], b[ok])[0, 1]), 3)


def face_lost(cfg, avatar, consent, size, seconds: float) -> dict:
    from vcam_me.types import AU_INDEX, FaceObservation

    driver = [FaceObservation.empty(round(i * 1000 / FPS), (640, 360)) for i in range(int(seconds * FPS) + 1)]
    _, commands, observations = _render(cfg, avatar, consent, size, driver, seed=1)
    got = _retracked(observations)
    n = min(len(commands), len(observations))
    ordered = np.array([c[0][AU_INDEX["AU43_L"]] for c in commands[:n]])
    closure = got["closure"][:n]
    baseline = float(np.nanmedian(closure))
    seen_closed = closure > baseline + BLINK_RISE
    commanded_blinks = [(s, e) for s, e in _runs(ordered > 0.05) if ordered[s:e].max() >= 0.5]
    seen = [any(seen_closed[max(0, s - 1):e + 1]) for s, e in commanded_blinks]
    detected = _runs(seen_closed)
    false_blinks = [(s, e) for s, e in detected if not any(cs - 1 <= e and s <= ce + 1 for cs, ce in commanded_blinks)]
    minutes = n / FPS / 60
    gaze_cmd = np.array([c[1][0, 0] for c in commands[:n]])
    pose_cmd = np.array([c[2] for c in commands[:n]])
    pose_got = got["pose"][:n] - np.nanmedian(got["pose"][:n], axis=0)
    return {
        "seconds": round(n / FPS, 1),
        "frames": n,
        "frames_with_a_face_retracked": int(np.isfinite(closure).sum()),
        "blinks_commanded": len(commanded_blinks),
        "blinks_commanded_per_min": round(len(commanded_blinks) / minutes, 1),
        "blinks_seen": int(sum(seen)),
        "blinks_seen_fraction": round(sum(seen) / max(len(seen), 1), 3),
        "false_blinks": len(false_blinks),
        "retracked_closure_median": round(baseline, 3),
        "retracked_closure_peak_median": round(float(np.median([np.nanmax(closure[s:e + 1]) for s, e in commanded_blinks])), 3)
        if commanded_blinks else None,
        "gaze_x_r": _r(gaze_cmd, got["gaze_x"][:n]),
        "gaze_x_std": {"commanded": round(float(np.std(gaze_cmd)), 3), "retracked": round(float(np.nanstd(got["gaze_x"][:n])), 3)},
        "pose_r": {axis: _r(pose_cmd[:, k], pose_got[:, k]) for k, axis in enumerate(("yaw", "pitch", "roll"))},
        "pose_std_deg": {axis: {"commanded": round(float(np.std(pose_cmd[:, k])), 2),
                                "retracked": round(float(np.nanstd(pose_got[:, k])), 2)}
                         for k, axis in enumerate(("yaw", "pitch", "roll"))},
    }


def hand_over(cfg, avatar, consent, size, clip: Path) -> dict:
    from vcam_me.app import track_recording
    from vcam_me.capture import VideoFileSource
    from vcam_me.types import FaceObservation

    with VideoFileSource.open(clip, pace="fast") as source:
        tracked = track_recording(source, cfg, label=f"tracking {clip.name}")
    end = tracked[-1].timestamp_ms
    gap = (end / 2 - 1500, end / 2 + 1500)
    driver = [FaceObservation.empty(o.timestamp_ms, o.image_size) if gap[0] <= o.timestamp_ms < gap[1] else o
              for o in tracked]
    times, commands, observations = _render(cfg, avatar, consent, size, driver, seed=2)
    got = _retracked(observations)
    n = min(len(times), len(observations))
    t = np.array(times[:n], np.float64)
    weight = np.array([c[3] for c in commands[:n]])
    pose_step = np.nanmax(np.abs(np.diff(got["pose"][:n], axis=0)), axis=1)
    au_step = np.nanmax(np.abs(np.diff(got["au"][:n], axis=0)), axis=1)
    switch = [float(t[i + 1]) for i in range(n - 1) if (weight[i] == 0) != (weight[i + 1] == 0)]
    near = np.zeros(n - 1, bool)
    for s in switch:
        near |= np.abs(t[1:] - s) <= 500
    ramp = np.flatnonzero((weight > 0) & (weight < 1))
    ramps = _runs((weight > 0) & (weight < 1))
    return {
        "clip": str(clip.relative_to(ROOT)) if clip.is_relative_to(ROOT) else str(clip),
        "seconds": round(n / FPS, 1),
        "face_removed_ms": [round(gap[0]), round(gap[1])],
        "hand_overs": len(switch),
        "hand_over_ms": [round(float(t[e - 1] - t[s] + 1000 / FPS)) for s, e in ramps] if len(ramp) else [],
        "retracked_pose_step_deg_max": {"near_hand_over": round(float(np.nanmax(pose_step[near])), 2) if near.any() else None,
                                        "rest_of_clip": round(float(np.nanmax(pose_step[~near])), 2)},
        "retracked_pose_step_deg_p99_rest_of_clip": round(float(np.nanpercentile(pose_step[~near], 99)), 2),
        "retracked_au_step_max": {"near_hand_over": round(float(np.nanmax(au_step[near])), 3) if near.any() else None,
                                  "rest_of_clip": round(float(np.nanmax(au_step[~near])), 3)},
        "retracked_au_step_p99_rest_of_clip": round(float(np.nanpercentile(au_step[~near], 99)), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the face-lost render (default 60)")
    parser.add_argument("--size", default="640x360", help="render size (default 640x360)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "idle_closed_loop.json")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from vcam_me.app import (
        BUNDLED_AVATAR,
        BUNDLED_DRIVING,
        require_consent,
        resolve_avatar,
    )
    from vcam_me.bench import machine_info, write_results
    from vcam_me.config import load_config

    cfg = load_config(use_user_config=False)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    avatar = resolve_avatar(str(BUNDLED_AVATAR), cfg)
    consent = require_consent(avatar, "evaluation")
    result = {
        "command": "python benchmarks/idle_closed_loop.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "avatar": str(BUNDLED_AVATAR.relative_to(ROOT)),
        "size": list(size),
        "fps": FPS,
        "idle_options": {k: v for k, v in vars(cfg.idle).items() if not isinstance(v, tuple)},
        "face_lost": face_lost(cfg, avatar, consent, size, args.seconds),
        "hand_over": hand_over(cfg, avatar, consent, size, BUNDLED_DRIVING),
    }
    write_results(result, args.out, prefix="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
