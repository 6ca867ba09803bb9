"""Closed-loop expression fidelity: render, re-track the render, compare with the driver.

For each driving clip the avatar is rendered exactly as ``vcam-me render`` does (60 fps on
the clip's own timeline), every output frame is re-tracked by the same MediaPipe model, and
for every driving frame the output frame at the same instant is compared with it
(``metrics.md``, "Expression fidelity"). The stages are built by the caller
(:mod:`vcam_me.app`), so this module wires nothing itself.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vcam_me.types import FaceObservation, Frame, RenderedFrame

#: Targets of the first avatar version (issue: "the live pipeline end to end").
TARGET_AED_RATIO = 0.4
TARGET_APD_RATIO = 0.4
TARGET_PEARSON_R = 0.7


@dataclass
class Stages:
    """What one clip needs; built fresh per clip so no state leaks between clips."""

    source: object  # VideoFileSource, opened at "fast" pace
    driver_tracker: object
    output_tracker: object
    make_expression: Callable[[list], object]  # observations of the clip → expression stage
    renderer: object
    stamper: object


class RetrackSink:
    """Re-tracks every rendered frame as it arrives (no frames kept in memory)."""

    def __init__(self, tracker) -> None:
        self.tracker = tracker
        self.observations: list[FaceObservation] = []
        self.index = 0

    def send(self, frame: RenderedFrame) -> None:
        image = Frame(frame.image, frame.timestamp_ms, self.index)
        # IMAGE mode: each frame on its own, no temporal filter
        still = getattr(self.tracker, "mode", "video") == "image"
        self.observations.append(self.tracker.track_still(image) if still else self.tracker.track(image))
        self.index += 1

    def close(self) -> None:
        pass


def _stack(observations: list[FaceObservation]) -> tuple[np.ndarray, np.ndarray]:
    """(N, 52) blendshapes and (N, 4, 4) transforms, NaN rows where no face was found."""
    blend = np.full((len(observations), 52), np.nan, np.float64)
    tf = np.full((len(observations), 4, 4), np.nan, np.float64)
    for i, obs in enumerate(observations):
        if obs.has_face and obs.blendshapes is not None and obs.transform is not None:
            blend[i] = obs.blendshapes
            tf[i] = obs.transform
    return blend, tf


def evaluate_clip(stages: Stages, fps: int = 60) -> dict:
    """Render one clip, re-track it, and score it."""
    from vcam_me.evaluation import metrics
    from vcam_me.expression import blendshapes_to_au
    from vcam_me.pipeline import on_timeline, render_offline, track_all
    from vcam_me.types import AU_CHANNELS

    sink = RetrackSink(stages.output_tracker)
    t0 = time.perf_counter()
    driver = track_all(on_timeline(stages.source.iter_timed()), stages.driver_tracker)
    written = render_offline(driver, stages.make_expression(driver), stages.renderer, stages.stamper, sink, fps)
    elapsed = time.perf_counter() - t0
    out_times = np.array([round(i * 1000.0 / fps) for i in range(len(sink.observations))])
    paired_out = []
    for obs in driver:
        i = int(np.argmin(np.abs(out_times - obs.timestamp_ms))) if out_times.size else 0
        paired_out.append(sink.observations[i] if sink.observations else FaceObservation.empty(0, (0, 0)))
    drv_b, drv_t = _stack(driver)
    out_b, out_t = _stack(paired_out)
    drv_au = np.where(np.isnan(drv_b[:, :1]), np.nan, blendshapes_to_au(np.nan_to_num(drv_b)))
    out_au = np.where(np.isnan(out_b[:, :1]), np.nan, blendshapes_to_au(np.nan_to_num(out_b)))
    report = metrics.closed_loop_report(drv_b, drv_t, out_b, out_t, drv_au, out_au, list(AU_CHANNELS))
    row = report.to_dict()
    row.update(
        driving_frames=len(driver),
        output_frames=written,
        render_and_retrack_s=round(elapsed, 1),
    )
    return row


def judge(row: dict) -> dict:
    """Which targets a clip meets."""
    rs = row.get("pearson_r", {}) or {}
    moving = {k: v for k, v in rs.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}
    return {
        f"aed_ratio <= {TARGET_AED_RATIO}": row.get("aed_ratio") is not None and row["aed_ratio"] <= TARGET_AED_RATIO,
        f"apd_ratio <= {TARGET_APD_RATIO}": row.get("apd_ratio") is not None and row["apd_ratio"] <= TARGET_APD_RATIO,
        f"pearson_r >= {TARGET_PEARSON_R} for every moving AU": all(v >= TARGET_PEARSON_R for v in moving.values()),
    }


def run_clips(clips: list[Path], make_stages: Callable[[Path], Stages], fps: int = 60,
              log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> dict:
    rows = {}
    for clip in clips:
        stages = make_stages(clip)
        try:
            row = evaluate_clip(stages, fps)
        finally:
            for name in ("source", "driver_tracker", "output_tracker"):
                closer = getattr(getattr(stages, name), "close", None)
                if closer:
                    closer()
        row["targets"] = judge(row)
        rows[clip.name] = row
        worst = min(((k, v) for k, v in (row.get("pearson_r") or {}).items() if v is not None), key=lambda kv: kv[1], default=None)
        log(f"{clip.name:<36} AED ratio {row.get('aed_ratio')!s:<6} APD ratio {row.get('apd_ratio')!s:<6} "
            f"lowest r {worst[0] + ' ' + format(worst[1], '.2f') if worst else '-'}  "
            f"{'PASS' if all(row['targets'].values()) else 'FAIL'}")
    return {"clips": rows, "all_targets_met": bool(rows) and all(all(r["targets"].values()) for r in rows.values())}
