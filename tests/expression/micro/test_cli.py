"""`vcam-me render|run --micro … --events-out …` for real: the bundled avatar driven by a short
cut of the bundled real clip, the engine's log checked against the script and the video."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from vcam_me.app import BUNDLED_AVATAR, main

# Far enough apart (micro-expressions last ≤ 500 ms) that each one's difference peak is its own.
SCRIPT = [
    {"t_ms": 150, "type": "suppressed_smile", "side": "left", "peak": 0.4},
    {"t_ms": 700, "type": "brow_lowerer", "peak": 0.3},
    {"t_ms": 1250, "type": "duchenne_smile", "hold_ms": 250, "peak": 0.5},
]


@pytest.fixture(scope="module")
def short_clip(bundled_clip_cut) -> Path:
    """The first 2 s of the bundled real clip (60 frames at 30 fps)."""
    return bundled_clip_cut(60, 30)


@pytest.fixture
def script(private_user_dirs) -> Path:
    path = private_user_dirs / "script.json"
    path.write_text(json.dumps(SCRIPT), encoding="utf-8")
    return path


def _render(clip, out, *extra) -> int:
    lossless = out.parent / "lossless.toml"  # so that two renders differ only where the faces do
    lossless.write_text("[output]\nrecord_crf = 0\n", encoding="utf-8")
    return main(["--config", str(lossless), "render", "--avatar", str(BUNDLED_AVATAR), "--driving", str(clip), "--out", str(out),
                 "--size", "320x240", "--fps", "60", *extra])


@pytest.mark.slow
def test_render_with_a_script_logs_the_scripted_events_on_the_output_timeline(short_clip, script, private_user_dirs, capsys):
    out = private_user_dirs / "out.mp4"
    plain = private_user_dirs / "plain.mp4"
    assert _render(short_clip, out, "--micro", str(script)) == 0
    log = out.with_suffix(".events.json")  # beside the video by default
    doc = json.loads(log.read_text())
    assert "3 micro-expressions injected" in capsys.readouterr().out
    events = doc["events"]
    assert [(e["type"], e["start_ms"], e["source"]) for e in events] == [
        ("suppressed_smile", 150.0, "script"), ("brow_lowerer", 700.0, "script"), ("duchenne_smile", 1250.0, "script")]
    # a suppressed smile is AU12 on the chosen side, now and then with optional AUs (random
    # variants of the library), all on that side
    assert events[0]["side"] == "left" and events[0]["aus"]["AU12_L"] == 1.0 and events[0]["peak"] == 0.4
    assert not any(ch.endswith("_R") for ch in events[0]["aus"])
    assert events[2]["held"] and events[2]["end_ms"] == pytest.approx(1500.0 + 600.0)  # released at 1250 + 250
    assert all(e["start_ms"] < e["apex_ms"] < e["end_ms"] for e in events)
    assert doc["fps"] == 60 and doc["video"] == str(out) and isinstance(doc["seed"], int)
    # The output's timeline is the log's: frame i shows t = i × 1000 / 60 ms. Against the same
    # render without injection (both lossless), nothing differs before the first start, and the
    # difference peaks at each logged apex.
    assert _render(short_clip, plain, "--micro", "none") == 0
    assert not plain.with_suffix(".events.json").exists()
    with av.open(str(out)) as a, av.open(str(plain)) as b:
        fa = [f.to_ndarray(format="rgb24").astype(np.int16) for f in a.decode(video=0)]
        fb = [f.to_ndarray(format="rgb24").astype(np.int16) for f in b.decode(video=0)]
    assert len(fa) == len(fb) == 119
    diff = np.array([np.abs(x - y).mean() for x, y in zip(fa, fb)])
    first = int(np.ceil(150 * 60 / 1000))
    assert diff[:first + 1].max() == 0.0  # frame 9 is t = 150 ms: the envelope is still 0 there
    peaks = [i for i in range(1, len(diff) - 1) if diff[i] >= diff[i - 1] and diff[i] >= diff[i + 1] and diff[i] > 0.05]
    for e in events[:2]:
        apex_frame = e["apex_ms"] * 60 / 1000
        assert min(abs(p - apex_frame) for p in peaks) <= 2, (e["type"], apex_frame, peaks)
    held = events[2]
    assert diff[int(held["apex_ms"] * 60 / 1000)] > 0.05


def test_render_refuses_an_existing_event_log_before_any_work(short_clip, script, private_user_dirs, capsys):
    log = private_user_dirs / "mine.json"
    log.write_text("keep me")
    assert _render(short_clip, private_user_dirs / "o.mp4", "--micro", str(script), "--events-out", str(log)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "event log exists" not in err and f"output file exists: {log}" in err
    assert log.read_text() == "keep me" and not (private_user_dirs / "o.mp4").exists()


@pytest.mark.parametrize("micro,message", [("sometimes", "expected auto, none or a scripted sequence"),
                                           ("missing.json", "script not found")])
def test_a_bad_micro_option_is_one_line(short_clip, private_user_dirs, capsys, micro, message):
    assert _render(short_clip, private_user_dirs / "o.mp4", "--micro", micro) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.slow
def test_run_writes_the_log_when_it_stops(short_clip, private_user_dirs):
    out = private_user_dirs / "live.mp4"
    log = private_user_dirs / "live-events.json"
    cfg = private_user_dirs / "fast.toml"
    cfg.write_text("[micro]\nrate_per_min = 60.0\nseed = 3\n", encoding="utf-8")
    assert main(["--config", str(cfg), "run", "--video", str(short_clip), "--loop", "--record", str(out),
                 "--duration", "3", "--size", "320x240", "--fps", "30", "--micro", "auto", "--events-out", str(log)]) == 0
    doc = json.loads(log.read_text())
    assert doc["mode"] == "auto" and doc["seed"] == 3 and doc["video"] == str(out)
    for e in doc["events"]:  # times from the first output frame of the live stream
        assert e["source"] == "auto" and 0 <= e["start_ms"] < 3500


USER_TYPE = """
[type.half_smile]
description = "one corner up, slowly"
source = "my own"
aus = { AU12 = 1.0 }
laterality = { left = 0.5, right = 0.5 }
onset_ms = { median = 200, q1 = 150, q3 = 250 }
offset_ms = { median = 200, q1 = 150, q3 = 250 }
total_ms = { median = 400, q1 = 320, q3 = 480 }
"""


def test_the_users_own_types_come_from_their_config_folder(private_user_dirs):
    from vcam_me.app import build_micro
    from vcam_me.config import load_config, user_config_path

    user = user_config_path().parent / "micro_expressions.toml"
    user.parent.mkdir(parents=True)
    user.write_text(USER_TYPE, encoding="utf-8")
    engine, triggers = build_micro(load_config(), "auto")
    assert "half_smile" in engine.library and "suppressed_smile" in engine.library
    assert len(triggers) == 1
    assert engine.trigger("half_smile", 0.0).side in ("left", "right")


def test_a_malformed_user_type_stops_render_with_file_and_line(short_clip, private_user_dirs, capsys):
    from vcam_me.config import user_config_path

    user = user_config_path().parent / "micro_expressions.toml"
    user.parent.mkdir(parents=True)
    user.write_text(USER_TYPE.replace("AU12 = 1.0", "AU12 = 2.0"), encoding="utf-8")
    assert _render(short_clip, private_user_dirs / "o.mp4", "--micro", "auto") == 2
    err = capsys.readouterr().err
    assert f"{user}, line 5: [type.half_smile] AU12 = 2.0: a relative peak is in (0, 1]" in err
    assert err.count("\n") == 1 and not (private_user_dirs / "o.mp4").exists()
