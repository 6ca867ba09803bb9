"""The soak (vcam-me bench --soak): its verdict on leaks, and a 2-minute call at 720p60.

The 30-minute run is a benchmark run on demand (results in benchmarks/results/soak.json);
this short one runs in every CI run and holds the leak limits of issue 7. Latency is held
to a looser creep here than in the benchmark's verdict: two minutes on a shared CI machine
are too few windows to judge a 25 % drift fairly, while a real leak shows at any length.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from vcam_me.soak import judge


def _rows(n, rss=300.0, grow=0.0, latency=30.0, creep=0.0, threads=18, thread_step=0, files=10):
    return [{"t_s": 10.0 * (i + 1), "rss_mb": rss + grow * i, "os_threads": threads + thread_step * i,
             "python_threads": 6, "open_files": files, "fps": 60.0,
             "latency_ms_p50": latency + creep * i, "latency_ms_p99": 45.0, "render_ms_p50": 5.0} for i in range(n)]


def test_a_flat_run_passes_every_target():
    verdict = judge(_rows(30), warmup_s=60)
    assert all(verdict["targets"].values()) and verdict["rss_growth_mb"] == 0


@pytest.mark.parametrize("rows, failing", [
    (_rows(30, grow=1.0), "rss_growth_mb <= 20"),  # 1 MB per row: 26 MB over the run
    (_rows(30, creep=1.0), "latency_creep <= 1.25"),  # +1 ms per row
    (_rows(30, thread_step=1), "no thread leak"),
])
def test_each_kind_of_leak_fails_its_target(rows, failing):
    targets = judge(rows, warmup_s=60)["targets"]
    assert not targets[failing] and sum(not ok for ok in targets.values()) == 1


def test_too_few_rows_after_the_warm_up_is_an_error():
    with pytest.raises(ValueError):
        judge(_rows(8), warmup_s=60)


#: The 2-minute soak, run in a process of its own: memory is judged on the soak's own heap, as
#: ``vcam-me bench --soak`` sees it, not on the test runner's (over 1.5 GB after the suite, where
#: what earlier tests freed and left fragmented moves the figure by tens of MB).
SOAK_IN_A_FRESH_PROCESS = """
import argparse, json, sys
from vcam_me.config import load_config
from vcam_me.soak import run_soak
args = argparse.Namespace(driving=None, avatar=None, size=(1280, 720), fps=60, seconds=120.0, window=5.0, warmup=30.0)
json.dump(run_soak(args, load_config(use_user_config=False)), open(sys.argv[1], "w", encoding="utf-8"))
"""


@pytest.mark.slow
def test_a_two_minute_call_at_720p60_leaks_nothing(private_user_dirs, tmp_path):
    out = tmp_path / "soak.json"
    run = subprocess.run([sys.executable, "-c", SOAK_IN_A_FRESH_PROCESS, str(out)], check=False,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(out.read_text(encoding="utf-8"))
    verdict = result["verdict"]
    assert len(result["rows"]) == 24 and verdict["rows_after_warmup"] >= 18
    assert verdict["targets"]["rss_growth_mb <= 20"], verdict
    assert verdict["targets"]["no thread leak"] and verdict["targets"]["no file handle leak"], verdict
    early, late = verdict["latency_ms_p50_first_third"], verdict["latency_ms_p50_last_third"]
    assert late <= 1.5 * early + 5, verdict  # no creep beyond what a busy shared machine adds
    assert all(row["fps"] > 0 for row in result["rows"]), result["rows"]  # it streamed the whole time
