"""The real thing, end to end: real video in, real MediaPipe, the shipped avatar and basis,
the label, and real outputs (an H.264 file read back, pyvirtualcam's own Camera class)."""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import numpy as np
import pytest

from vcam_me.app import main

from .helpers import KeepingBackend, registered_backend

pytestmark = pytest.mark.slow


@pytest.fixture
def private_dirs(private_user_dirs):
    return private_user_dirs


@pytest.fixture(scope="module")
def short_clip(bundled_clip_cut) -> Path:
    """The first 2.5 s of the bundled real clip (re-encoded, so the test is quick)."""
    return bundled_clip_cut(60, 24)


def _read(path: Path) -> tuple[list[np.ndarray], float]:
    with av.open(str(path)) as c:
        rate = float(c.streams.video[0].average_rate)
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)], rate


def test_render_writes_the_avatar_on_the_driving_timeline(short_clip, private_dirs, capsys):
    out = private_dirs / "out.mp4"
    assert main(["render", "--avatar", str(Path(__file__).parents[1] / "assets/avatars/sample"),
                 "--driving", str(short_clip), "--out", str(out), "--fps", "60", "--size", "640x360"]) == 0
    frames, rate = _read(out)
    assert rate == pytest.approx(60)
    # 60 driving frames at 24 fps span 0..2458 ms → output frames at i/60 s up to that
    assert len(frames) == 148
    assert frames[0].shape == (360, 640, 3)
    stack = np.stack(frames).astype(np.float32)
    motion = stack.std(axis=0).mean(axis=2)
    h, w = motion.shape
    assert motion[: h // 6, : w // 10].mean() < 1.5  # background corner stays still
    assert motion[h // 4: 3 * h // 4, w // 3: 2 * w // 3].mean() > motion[: h // 6, : w // 10].mean() + 0.5  # the face moves
    assert "wrote 148 frames" in capsys.readouterr().out
    # every frame carries the invisible mark with the sample's consent ID, readable after H.264
    import json

    from vcam_me.consent.disclosure import PUBLIC_MARK_KEY
    from vcam_me.consent.mark_decoder import decode_video
    from vcam_me.consent.records import parse_consent_code

    record = json.loads((Path(__file__).parents[1] / "assets/avatars/sample/consent.json").read_text())
    found = decode_video(out, PUBLIC_MARK_KEY, max_seconds=3)
    assert found.found and found.consent_id == parse_consent_code(record["cid"])


def test_demo_never_overwrites(private_dirs, monkeypatch, short_clip):
    from vcam_me import app

    monkeypatch.setattr(app, "BUNDLED_DRIVING", short_clip)
    monkeypatch.chdir(private_dirs)
    (private_dirs / "vcam-me-demo.mp4").write_bytes(b"mine")
    assert main(["--config", str(_small_output_config(private_dirs)), "demo"]) == 0
    assert (private_dirs / "vcam-me-demo.mp4").read_bytes() == b"mine"
    assert (private_dirs / "vcam-me-demo-1.mp4").stat().st_size > 10_000


def _small_output_config(folder: Path) -> Path:
    cfg = folder / "small.toml"
    cfg.write_text("[output]\nwidth = 640\nheight = 360\nfps = 30\n", encoding="utf-8")
    return cfg


def test_run_streams_a_paced_video_into_pyvirtualcam(short_clip, private_dirs):
    cfg = private_dirs / "vc.toml"
    cfg.write_text('[output]\nvirtualcam_backend = "vcam-e2e"\nwidth = 640\nheight = 360\n', encoding="utf-8")
    with registered_backend("vcam-e2e", KeepingBackend):
        assert main(["--config", str(cfg), "run", "--video", str(short_clip), "--virtualcam", "--duration", "2"]) == 0
    (camera,) = KeepingBackend.instances
    frames = camera.frames
    # ~120 at 60 fps; speed is measured by `vcam-me bench`, not here (the machine may be busy)
    assert 20 <= len(frames) <= 125
    assert frames[0].shape == (360, 640, 3)
    diffs = [np.abs(a.astype(int) - b).mean() for a, b in itertools.pairwise(frames[20:])]
    assert max(diffs) > 0.05  # the avatar moves with the video


def test_run_records_a_live_session(short_clip, private_dirs):
    out = private_dirs / "live.mp4"
    assert main(["run", "--video", str(short_clip), "--record", str(out), "--duration", "2", "--size", "640x360", "--fps", "30"]) == 0
    frames, rate = _read(out)
    assert rate == pytest.approx(30)
    assert 15 <= len(frames) <= 62  # ~60 at 30 fps; speed is the benchmark's business
