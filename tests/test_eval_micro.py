"""`vcam-me eval micro` for real: the bundled avatar driven by a short cut of the bundled real
clip and by a still face, events injected, every output frame re-tracked by MediaPipe, the
events spotted and scored (the bookkeeping is unit-tested in tests/evaluation)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vcam_me.app import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def short_clip(bundled_clip_cut) -> Path:
    """The first 2.5 s of the bundled real clip."""
    return bundled_clip_cut(75, 30)


def test_eval_micro_spots_injected_events_in_the_rerendered_output(short_clip, private_user_dirs):
    out = private_user_dirs / "micro.json"
    code = main(["eval", "micro", "--driving", str(short_clip), "--still-seconds", "4", "--size", "640x360",
                 "--peaks", "--seed", "0", "--out", str(out)])
    assert code in (0, 1)  # 1: some target not met, which the results say
    result = json.loads(out.read_text())
    drivers = {d["name"]: d for d in result["drivers"]}
    assert set(drivers) == {"short.mp4", "still neutral face"}
    still = drivers["still neutral face"]
    assert still["logged"] >= 2 and still["natural_events_per_min"] == 0.0
    # the engine's log times lie on the output timeline, inside the 4 s still render
    assert all(0 < e["start_ms"] < e["apex_ms"] < e["end_ms"] <= 4000 for e in still["logged_events"])
    # injected events show in the re-tracked output: found where they were logged
    assert still["true_positives"] >= 1 and still["apex_error_ms_median"] is not None
    summary = result["summary"]
    assert summary["logged"] == sum(d["logged"] for d in result["drivers"])
    assert set(summary["targets"]) == {"f1 >= 0.9", "au_side_accuracy >= 0.9", "apex_error_ms_median <= 33",
                                       "false_events_per_min <= 1 above natural"}
    assert result["sensitivity_on_still_driver"] is None  # --peaks with no values skips the sweep


def test_eval_micro_bad_clip_is_one_line(private_user_dirs, capsys):
    assert main(["eval", "micro", "--driving", str(private_user_dirs / "missing.mp4")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.mp4" in err
