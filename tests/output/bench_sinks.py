"""Per-frame cost of the sinks at 1280×720 on the calling (render) thread (run by hand).

    .venv/bin/python tests/output/bench_sinks.py [--frames 600]

* virtual camera: ``VirtualCameraSink.send`` through the real ``pyvirtualcam.Camera`` with
  (a) a backend that drops the frame (our overhead: checks + pyvirtualcam's own) and
  (b) a backend that converts RGB → I420 like the drivers do, then drops it;
* recorder: ``RecorderSink.send`` (copy into an encoder frame + queue; x264 runs on its
  own thread) and the encoder's sustained rate;
* memory sink (copy) and fan-out overhead.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import cv2
import numpy as np
import pyvirtualcam

from vcam_me.config import OutputOptions
from vcam_me.output import FanOutSink, MemorySink, RecorderSink, VirtualCameraSink
from vcam_me.types import RenderedFrame


class _Drop:
    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        self._shape = (height, width, 3)

    def send(self, frame):
        pass

    def close(self):
        pass

    def device(self):
        return "drop"

    def native_fourcc(self):
        return None


class _I420(_Drop):
    def __init__(self, *, width, height, **kw):
        super().__init__(width=width, height=height, **kw)
        self._out = np.empty((height * 3 // 2, width), np.uint8)

    def send(self, frame):
        cv2.cvtColor(frame.reshape(self._shape), cv2.COLOR_RGB2YUV_I420, dst=self._out)


def _stats(ms):
    a = np.asarray(ms)
    return f"median {np.median(a):.3f} ms, p99 {np.percentile(a, 99):.3f} ms (n={a.size})"


def _time_sends(sink, frames, pace_s=0.0):
    ms = []
    for frame in frames:
        t = time.perf_counter()
        sink.send(frame)
        ms.append((time.perf_counter() - t) * 1000)
        if pace_s:
            time.sleep(pace_s)
    return ms


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=600)
    args = parser.parse_args()
    w, h = 1280, 720
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), np.uint8) for _ in range(4)]
    frames = [RenderedFrame(images[i % 4], i * 16) for i in range(args.frames)]
    pyvirtualcam.register_backend("bench-drop", _Drop)
    pyvirtualcam.register_backend("bench-i420", _I420)
    for name in ("bench-drop", "bench-i420"):
        with VirtualCameraSink.open((w, h), 60, OutputOptions(virtualcam_backend=name)) as sink:
            print(f"VirtualCameraSink.send, backend {name}: {_stats(_time_sends(sink, frames))}")
    with MemorySink(max_frames=8) as sink:
        print(f"MemorySink.send (copy): {_stats(_time_sends(sink, frames))}")
    with FanOutSink([MemorySink(max_frames=1, copy=False)]) as sink:
        print(f"FanOutSink.send (one no-copy sink): {_stats(_time_sends(sink, frames))}")
    # Recorder on talking-head-like content (smooth, slowly moving), not noise.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    smooth = [np.clip(np.dstack([128 + 90 * np.sin((xx + 6 * i) / 97), 128 + 70 * np.cos((yy + 3 * i) / 61),
                                 np.full((h, w), 120.0)]), 0, 255).astype(np.uint8) for i in range(30)]
    rec_frames = [RenderedFrame(smooth[i % 30], i * 16) for i in range(min(args.frames, 300))]
    with tempfile.TemporaryDirectory() as tmp:
        # live settings: paced at 60 fps, ultrafast, one x264 thread, drop when busy
        path = os.path.join(tmp, "live.mp4")
        with RecorderSink.open(path, (w, h), 60, OutputOptions(), preset="ultrafast", threads=1, block=False) as sink:
            ms = _time_sends(sink, rec_frames, pace_s=1 / 60)
        print(f"RecorderSink.send, live (60 fps paced, ultrafast, 1 thread, block=False): {_stats(ms)}; "
              f"{sink.frames_dropped} of {len(rec_frames)} dropped")
        # offline settings: as fast as possible, veryfast, x264 picks its threads, never drops
        path = os.path.join(tmp, "offline.mp4")
        t0 = time.perf_counter()
        with RecorderSink.open(path, (w, h), 60, OutputOptions()) as sink:
            ms = _time_sends(sink, rec_frames)
        done = time.perf_counter()
        print(f"RecorderSink.send, offline (veryfast, blocking): {_stats(ms)}; "
              f"encoder sustained {len(rec_frames) / (done - t0):.1f} fps; {os.path.getsize(path) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
