"""Per-frame cost of the visible label at 1280×720 (run by hand; not a unit test).

    .venv/bin/python tests/consent/bench_label.py [--frames 1000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from vcam_me.consent import LabelStamper, render_label_sprites
from vcam_me.types import RenderedFrame


def _stats(ms):
    a = np.asarray(ms)
    return f"median {np.median(a):.3f} ms, p99 {np.percentile(a, 99):.3f} ms, max {a.max():.3f} ms (n={a.size})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--size", type=int, nargs=2, default=(1280, 720))
    args = parser.parse_args()
    size = tuple(args.size)
    t0 = time.perf_counter()
    render_label_sprites(size, consent_code="7KQ4M2XD", display_name="Jane Doe")
    print(f"sprites for {size[0]}x{size[1]}: {(time.perf_counter() - t0) * 1000:.1f} ms (once per output size)")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (size[1], size[0], 3), np.uint8) for _ in range(4)]
    stamper = LabelStamper.create(size, consent_code="7KQ4M2XD", display_name="Jane Doe", banner_repeat_s=10**9)
    # banner off: frames long after the start banner (the repeat is pushed out of reach)
    stamper.restart_banner(-10**8)
    ms = []
    for i in range(args.frames):
        frame = RenderedFrame(images[i % 4], 10**7 + i * 16)
        t1 = time.perf_counter()
        stamper.stamp(frame)
        ms.append((time.perf_counter() - t1) * 1000)
    print(f"stamp, badge + corner (every frame): {_stats(ms)}")
    # banner on: frames inside the banner window
    stamper.restart_banner(0)
    ms = []
    for i in range(args.frames):
        frame = RenderedFrame(images[i % 4], (i * 16) % 2000)
        t1 = time.perf_counter()
        stamper.stamp(frame)
        ms.append((time.perf_counter() - t1) * 1000)
    print(f"stamp, badge + corner + banner (first seconds): {_stats(ms)}")


if __name__ == "__main__":
    main()
