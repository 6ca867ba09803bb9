"""`vcam-me eval` end to end on a real clip: render, re-track, score (figures judged elsewhere)."""

import json

import pytest

from vcam_me.app import main

pytestmark = pytest.mark.slow


def test_eval_scores_a_real_clip(shared_file, private_user_dirs):
    tmp_path = private_user_dirs
    clip = shared_file("driving/pyfeat_single_face.mp4")
    out = tmp_path / "eval.json"
    rc = main(["eval", "--driving", str(clip), "--size", "640x360", "--out", str(out)])
    result = json.loads(out.read_text())
    row = result["clips"]["pyfeat_single_face.mp4"]
    assert rc == (0 if result["all_targets_met"] else 1)
    assert row["driving_frames"] == 72 and row["output_face_frames"] >= 60
    # the avatar moves with the driver: better than a frozen avatar, with real per-AU correlations
    assert 0 < row["aed_ratio"] < 1.0
    assert any(r is not None and r > 0.7 for r in row["pearson_r"].values())
    assert set(row["targets"]) == {"aed_ratio <= 0.4", "apd_ratio <= 0.4", "pearson_r >= 0.7 for every moving AU"}
