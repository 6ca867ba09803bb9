"""``vcam-me bench --soak``: a long call, watched for leaks and creeping latency.

The whole live pipeline streams a looping real video (paced like a webcam) to pyvirtualcam's
real ``Camera`` class with the benchmark backend, with micro-expressions in automatic mode
and the idle animator on, exactly as a call would run. Every ``window`` seconds one row is
taken: resident memory, OS threads, Python threads, open file handles, and the window's
output rate, latency and render time. The verdict compares the rows after a warm-up (the
allocators, caches and MediaPipe's graph settle in the first minute or so) with the last
ones:

* memory: growth from the median of the first three rows after warm-up to the median of the
  last three (medians, because one row can catch a transient buffer);
* latency: the median of the window medians in the last third over the first third;
* threads and file handles: the median of the last three rows against that of the first
  three after warm-up (a leak climbs steadily; one row may catch a short-lived thread).
"""

from __future__ import annotations

import datetime
import sys
import threading
import time

import numpy as np

from vcam_me.config import AppConfig

#: Leak limits (issue 7): memory growth after warm-up, and how far latency may creep.
MAX_GROWTH_MB = 20.0
MAX_LATENCY_CREEP = 1.25


def _fds(proc) -> int:
    try:
        return proc.num_fds()
    except AttributeError:  # Windows: handles, not descriptors
        return proc.num_handles()


class _Window:
    """Per-frame figures of the current window, taken on the render thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.frames = 0
        self.latency: list[float] = []
        self.last_source: int | None = None

    def take(self) -> tuple[int, list[float]]:
        with self.lock:
            taken = (self.frames, self.latency)
            self.frames, self.latency = 0, []
        return taken


def judge(rows: list[dict], warmup_s: float) -> dict:
    """The verdict on the rows of a soak (see the module's docstring)."""
    warm = [r for r in rows if r["t_s"] >= warmup_s]
    if len(warm) < 6:
        raise ValueError(f"a soak needs at least 6 rows after the {warmup_s:g} s warm-up, got {len(warm)}")
    rss = [r["rss_mb"] for r in warm]
    growth = float(np.median(rss[-3:]) - np.median(rss[:3]))
    third = max(len(warm) // 3, 2)
    early = [r["latency_ms_p50"] for r in warm[:third] if r["latency_ms_p50"] is not None]
    late = [r["latency_ms_p50"] for r in warm[-third:] if r["latency_ms_p50"] is not None]
    creep = float(np.median(late) / np.median(early)) if early and late else None
    def steady(rows_: list[dict], key: str) -> int:
        return int(np.median([r[key] for r in rows_]))

    head, tail = warm[:3], warm[-3:]
    verdict = {
        "rows_after_warmup": len(warm),
        "rss_mb_start": round(float(np.median(rss[:3])), 1),
        "rss_mb_end": round(float(np.median(rss[-3:])), 1),
        "rss_growth_mb": round(growth, 1),
        "rss_mb_max": round(max(rss), 1),
        "latency_ms_p50_first_third": round(float(np.median(early)), 2) if early else None,
        "latency_ms_p50_last_third": round(float(np.median(late)), 2) if late else None,
        "latency_creep": round(creep, 3) if creep is not None else None,
        "os_threads": [steady(head, "os_threads"), steady(tail, "os_threads")],
        "python_threads": [steady(head, "python_threads"), steady(tail, "python_threads")],
        "open_files": [steady(head, "open_files"), steady(tail, "open_files")],
        "fps_min_window": min(r["fps"] for r in warm),
    }
    verdict["targets"] = {
        f"rss_growth_mb <= {MAX_GROWTH_MB:g}": growth <= MAX_GROWTH_MB,
        f"latency_creep <= {MAX_LATENCY_CREEP:g}": creep is not None and creep <= MAX_LATENCY_CREEP,
        "no thread leak": all(b <= a for a, b in (verdict["os_threads"], verdict["python_threads"])),
        "no file handle leak": verdict["open_files"][1] <= verdict["open_files"][0],
    }
    return verdict


def run_soak(args, cfg: AppConfig, *, progress=None) -> dict:
    """Stream for ``args.seconds``, one row every ``args.window`` seconds; the rows and the verdict."""
    import psutil

    from vcam_me.app import _open_driving, build_expression, build_idle, live_tracker
    from vcam_me.bench import machine_info, prepare_live_bench
    from vcam_me.clock import now_ms
    from vcam_me.output import VirtualCameraSink
    from vcam_me.pipeline import LivePipeline

    setup = prepare_live_bench(args, cfg)
    driving, size, fps, out_cfg = setup.driving, setup.size, setup.fps, setup.output
    renderer, stamper = setup.renderer, setup.stamper
    seconds, window_s = float(args.seconds), float(args.window)
    warmup_s = float(args.warmup) if args.warmup is not None else min(120.0, seconds / 4)
    expression = build_expression(cfg, offline=False, micro="auto", idle=build_idle(cfg, seed=7))
    proc = psutil.Process()
    current = _Window()

    def on_frame(frame, state) -> None:
        with current.lock:
            current.frames += 1
            src = state.source_timestamp_ms
            if state.face_present and src is not None and src != current.last_source:
                current.latency.append(now_ms() - src)  # capture → first output frame showing it
                current.last_source = src

    rows: list[dict] = []
    with _open_driving(driving, pace="realtime", loop=True) as source, live_tracker(cfg) as (tracker, connect), \
            VirtualCameraSink.open(size, fps, out_cfg) as sink:
        pipe = connect(LivePipeline(source, tracker, expression, renderer, stamper, sink, fps, on_frame=on_frame))
        print(f"vcam-me bench --soak: {size[0]}x{size[1]} at {fps} fps for {seconds:.0f} s from {driving.name} "
              f"(looping), a row every {window_s:g} s, warm-up {warmup_s:g} s …", file=sys.stderr)
        failed: list[BaseException] = []

        def stream() -> None:
            try:
                pipe.run()  # stopped below, after the last whole window
            except BaseException as err:  # re-raised on the calling thread below
                failed.append(err)

        runner = threading.Thread(target=stream, name="vcam-soak", daemon=True)
        t0 = time.monotonic()
        runner.start()
        while runner.is_alive() and len(rows) < int(seconds // window_s):
            runner.join(window_s * (len(rows) + 1) - (time.monotonic() - t0))
            if not runner.is_alive():
                break
            frames, latency = current.take()
            renders = list(pipe.stats.render_ms)[-frames:] if frames else []
            rows.append({
                "t_s": round(time.monotonic() - t0, 1),
                "rss_mb": round(proc.memory_info().rss / 2**20, 1),
                "os_threads": proc.num_threads(),
                "python_threads": threading.active_count(),
                "open_files": _fds(proc),
                "fps": round(frames / window_s, 2),
                "latency_ms_p50": round(float(np.median(latency)), 2) if latency else None,
                "latency_ms_p99": round(float(np.percentile(latency, 99)), 2) if latency else None,
                "render_ms_p50": round(float(np.median(renders)), 2) if renders else None,
            })
            if progress is not None:
                progress(rows[-1])
        pipe.stop()
        runner.join()
    if failed:
        raise failed[0]
    summary = pipe.stats.summary(fps)
    return {
        "command": "vcam-me " + " ".join(sys.argv[1:]) if sys.argv and "bench" in sys.argv else "vcam-me bench --soak",
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": machine_info(),
        "driving": driving.name,
        "output": {"width": size[0], "height": size[1], "fps": fps, "sink": "pyvirtualcam.Camera + I420 benchmark backend"},
        "seconds": seconds,
        "window_s": window_s,
        "warmup_s": warmup_s,
        "micro_events": len(expression.events),
        "stream": summary,
        "verdict": judge(rows, warmup_s),
        "rows": rows,
    }
