"""Median time of AvatarRenderer.render at 1280x720 on one thread (the render budget is 6 ms).

    python scripts/bench_render.py [--avatar FOLDER] [--frames 600] [--size 1280x720]

Prints wall time and this thread's CPU time per frame: on a shared machine the wall time
includes waiting for a core, the CPU time is the work itself.

States are a smooth synthetic performance (every driving AU, gaze and head turns of up to
±12° yaw, ±8° pitch, ±6° roll), so every frame warps the whole head region, as in live use.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vcam_me.avatar import Avatar, AvatarRenderer  # noqa: E402
from vcam_me.types import AU_CHANNELS, ExpressionState  # noqa: E402


def performance(n: int, seed: int = 0) -> list[ExpressionState]:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 60.0
    freq = rng.uniform(0.1, 0.6, size=len(AU_CHANNELS))
    phase = rng.uniform(0, 2 * np.pi, size=len(AU_CHANNELS))
    au = np.clip(np.sin(t[:, None] * 2 * np.pi * freq + phase), 0, 1).astype(np.float32) * 0.8
    gaze = 0.5 * np.sin(t[:, None] * np.array([1.1, 0.7, 1.1, 0.7]) + np.array([0, 1, 0, 1]))
    pose = np.stack([12 * np.sin(t * 0.9), 8 * np.sin(t * 1.3 + 1), 6 * np.sin(t * 0.5 + 2)], 1)
    return [ExpressionState(int(1000 * ti), au[i], gaze[i].reshape(2, 2).astype(np.float32), pose[i].astype(np.float32))
            for i, ti in enumerate(t)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--avatar", default=str(ROOT / "assets" / "avatars" / "sample"))
    p.add_argument("--frames", type=int, default=600)
    p.add_argument("--size", default="1280x720")
    args = p.parse_args(argv)
    cv2.setNumThreads(1)
    w, h = (int(v) for v in args.size.split("x"))
    renderer = AvatarRenderer.create(Avatar.load(args.avatar), (w, h))
    states = performance(args.frames)
    for s in states[:30]:
        renderer.render(s)
    times, cpu = [], []
    for s in states:
        t0, c0 = time.perf_counter(), time.thread_time()
        renderer.render(s)
        times.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
    ms = 1000 * np.array(times)
    cpu_ms = 1000 * np.array(cpu)
    x0, y0, x1, y1 = renderer.bbox
    print(f"render {w}x{h}, warped box {x1 - x0}x{y1 - y0}, 1 thread: median {np.median(ms):.2f} ms, "
          f"p90 {np.percentile(ms, 90):.2f} ms, min {ms.min():.2f} ms over {len(ms)} frames; "
          f"thread CPU time median {np.median(cpu_ms):.2f} ms (wall time includes waiting for a "
          f"core on a busy machine)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
