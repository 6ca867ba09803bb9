"""What does looking for a second face cost? MediaPipe Face Landmarker with ``num_faces`` = 1 and 2.

With ``num_faces=1`` MediaPipe stops running its face detector once it tracks a face; with 2 it
keeps looking for the second face while it sees only one. The figure decides the default of
``[tracking] follow_one_of`` (see ``vcam_me/tracking/selector.py``).

Each setting tracks the same frames of real one-face clips in VIDEO mode, in alternating
rounds (1, 2, 1, 2, ...) so that a busy neighbour on the machine hits both alike; the whole
process is pinned to one CPU core (``taskset``) where the platform allows it. The per-frame
wall time of ``FaceTracker.track`` is recorded; medians and p90 per setting, and the median
ratio. A two-face clip (two clips side by side) is timed with ``num_faces=2`` too.

    nice -n 5 .venv/bin/python benchmarks/tracking_faces.py --out benchmarks/results/tracking_faces.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import av
import cv2
import numpy as np

from vcam_me.app import build_tracker
from vcam_me.config import load_config
from vcam_me.types import Frame

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "driving"
CLIPS = ("liveportrait_d6.mp4", "pyfeat_WolfgangLanger_Pexels.mp4")


def read_frames(path: Path, count: int, width: int = 640) -> list[np.ndarray]:
    frames = []
    with av.open(str(path)) as src:
        for frame in src.decode(video=0):
            image = frame.to_ndarray(format="rgb24")
            h, w = image.shape[:2]
            frames.append(cv2.resize(image, (width, round(h * width / w)), interpolation=cv2.INTER_AREA))
            if len(frames) >= count:
                break
    return frames


def time_tracking(frames: list[np.ndarray], num_faces: int, cfg) -> tuple[list[float], int]:
    """Per-frame ms of one pass, and how many frames had at least one face."""
    times, faces = [], 0
    with build_tracker(cfg, "video", num_faces=num_faces) as tracker:
        for i, image in enumerate(frames):
            t0 = time.perf_counter()
            observations = tracker.track_all_faces(Frame(image, int(i * 1000 / 30), i))
            times.append((time.perf_counter() - t0) * 1000)
            faces += bool(observations)
    return times[5:], faces  # the first frames include graph warm-up


def summary(times: list[float]) -> dict:
    a = np.asarray(times)
    return {"frames": int(a.size), "median_ms": round(float(np.median(a)), 2), "p90_ms": round(float(np.percentile(a, 90)), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    pinned = False
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        pinned = True
    cfg = load_config(None)
    results: dict = {"machine": platform.processor() or platform.machine(), "pinned_to_one_core": pinned,
                     "frames_per_pass": args.frames, "rounds": args.rounds, "clips": {}}
    for name in CLIPS:
        frames = read_frames(SHARED / name, args.frames)
        series: dict[int, list[float]] = {1: [], 2: []}
        faces: dict[int, int] = {}
        for _ in range(args.rounds):
            for n in (1, 2):
                times, faces[n] = time_tracking(frames, n, cfg)
                series[n] += times
        one, two = summary(series[1]), summary(series[2])
        results["clips"][name] = {
            "size": f"{frames[0].shape[1]}x{frames[0].shape[0]}",
            "num_faces_1": one | {"frames_with_face": faces[1]},
            "num_faces_2": two | {"frames_with_face": faces[2]},
            "median_ratio_2_over_1": round(two["median_ms"] / one["median_ms"], 3),
            "median_extra_ms": round(two["median_ms"] - one["median_ms"], 2),
        }
        print(name, json.dumps(results["clips"][name]))
    left = read_frames(SHARED / CLIPS[0], args.frames // 2, 320)
    right = read_frames(SHARED / "liveportrait_d14.mp4", args.frames // 2, 320)
    pairs = [np.ascontiguousarray(np.hstack([a[: min(a.shape[0], b.shape[0])], b[: min(a.shape[0], b.shape[0])]]))
             for a, b in zip(left, right)]
    times, faces_seen = time_tracking(pairs, 2, cfg)
    results["two_faces_side_by_side"] = summary(times) | {"size": f"{pairs[0].shape[1]}x{pairs[0].shape[0]}",
                                                          "frames_with_face": faces_seen}
    print("two faces", json.dumps(results["two_faces_side_by_side"]))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
