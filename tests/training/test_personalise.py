"""Personalisation on a real capture: checks, fine-tuning with cancel and resume, the avatar folder."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from vcam_me.avatar import Avatar
from vcam_me.errors import AvatarError, SetupError
from vcam_me.training import personalise as P
from vcam_me.training.transfer_net import NetConfig, TransferNet

ROOT = Path(__file__).resolve().parents[2]
CLIP = ROOT / "assets" / "driving" / "pyfeat_WolfgangLanger_Pexels.mp4"


@pytest.fixture(autouse=True, scope="module")
def _one_thread(torch_one_thread):
    yield


@pytest.fixture(scope="module")
def prior(tmp_path_factory) -> Path:
    """A prior with the shipped architecture (freshly initialised: these tests check the set-up's
    plumbing; the trained prior's quality is measured by ``vcam-me eval renderers``)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("prior") / "prior.pt"
    torch.save(TransferNet(NetConfig()).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def short_capture(bundled_clip_cut) -> Path:
    # 240 frames of a real person talking and smiling: enough faces and expression range
    return bundled_clip_cut(240, 24)


@pytest.mark.slow
def test_setup_writes_an_avatar_with_its_own_network_and_resumes_after_cancel(short_capture, prior, tmp_path):
    cache = tmp_path / "cache"
    out = tmp_path / "me"
    stages: list[tuple[str, int, int]] = []
    cancel = threading.Event()

    def progress(stage: str, done: int, total: int) -> None:
        stages.append((stage, done, total))
        if stage == "training" and done == 6:
            cancel.set()

    with pytest.raises(P.Cancelled, match="run it again to resume"):
        P.personalise(short_capture, out, prior=prior, steps=10, progress=progress, cancel=cancel, cache_root=cache,
                      threads=1)
    assert not out.exists(), "a cancelled set-up leaves no half-made avatar"
    assert ("training", 6, 10) in stages
    preparing = [(d, t) for s, d, t in stages if s == "preparing"]
    assert preparing and preparing[-1][0] == preparing[-1][1], "the basis-drawn frames are made with a progress bar"

    stages.clear()
    result = P.personalise(short_capture, out, prior=prior, steps=10, progress=progress, cache_root=cache, threads=1)
    trained = [d for s, d, _ in stages if s == "training"]
    assert trained[0] == 6 and trained[-1] == 10, f"resumed at the cancelled step: {trained}"
    assert "tracking" not in {s for s, _, _ in stages}, "the tracked capture is reused from the cache"
    assert result.avatar_folder == out and result.checks["face_frames"] >= P.MIN_FACE_FRAMES
    assert len(result.checks["moving_aus"]) >= P.MIN_MOVING_AUS

    avatar = Avatar.load(out)
    net = avatar.network_files()
    assert net is not None and net["fp32"].is_file() and net["int8"].is_file() and net["geometry"].is_file()
    from vcam_me.avatar.geometry_refiner import GeometryRefiner

    assert GeometryRefiner.load(net["geometry"])(np.zeros((1, 50), np.float32)).shape == (478, 3)
    cal = json.loads((out / "calibration.json").read_text())
    assert np.all(np.array(cal["maximum"]) > np.array(cal["baseline"]))

    # The network is bound by hash: a changed file is refused with a clear error.
    data = bytearray(net["int8"].read_bytes())
    data[-1] ^= 0xFF
    net["int8"].write_bytes(bytes(data))
    with pytest.raises(AvatarError, match="does not match its hash"):
        Avatar.load(out)

    with pytest.raises(SetupError, match="already exists"):
        P.personalise(short_capture, out, prior=prior, steps=1, cache_root=cache)


@pytest.mark.slow
def test_a_capture_without_expression_is_refused(short_capture, prior, tmp_path, write_video):
    import av

    with av.open(str(short_capture)) as src:
        first = next(src.decode(video=0)).to_ndarray(format="rgb24")
    still = write_video([first] * 90, tmp_path / "still.mp4")
    with pytest.raises(SetupError, match="too little expression"):
        P.personalise(still, tmp_path / "out", prior=prior, steps=1, cache_root=tmp_path / "cache")


def test_a_capture_without_a_face_is_refused(prior, tmp_path, write_video):
    blank = write_video([np.full((240, 320, 3), 90, np.uint8)] * 30, tmp_path / "blank.mp4")
    with pytest.raises(SetupError, match="no face"):
        P.personalise(blank, tmp_path / "out", prior=prior, steps=1, cache_root=tmp_path / "cache")


def test_missing_capture_is_a_clear_error(prior, tmp_path):
    with pytest.raises(SetupError, match="capture not found"):
        P.personalise(tmp_path / "nope.mp4", tmp_path / "out", prior=prior, steps=1)


def test_capture_checks_report_what_is_wrong():
    from vcam_me.training.reenact_data import N_CONDITION

    flat = type("S", (), {"clip": Path("cap.mp4"), "condition": np.zeros((100, N_CONDITION), np.float32),
                          "__len__": lambda self: 100})()
    with pytest.raises(SetupError, match="too little expression"):
        P.check_capture(flat, 120.0)
    moving = type("S", (), {"clip": Path("cap.mp4"), "condition": np.random.default_rng(0).random((100, N_CONDITION)).astype(np.float32),
                            "__len__": lambda self: 100})()
    with pytest.raises(SetupError, match="too dark"):
        P.check_capture(moving, 20.0)
    with pytest.raises(SetupError, match="too bright"):
        P.check_capture(moving, 240.0)
    short = type("S", (), {"clip": Path("cap.mp4"), "condition": np.zeros((5, N_CONDITION), np.float32),
                           "__len__": lambda self: 5})()
    with pytest.raises(SetupError, match="only 6 frames with a face"):
        P.check_capture(short, 120.0)
    assert P.check_capture(moving, 120.0)["face_frames"] == 101


def test_a_damaged_checkpoint_is_set_aside_and_training_starts_afresh(prior, tmp_path, caplog):
    from vcam_me.training.reenact_data import load_clip
    from vcam_me.training.train_prior import CHECKPOINT, TrainData

    data = TrainData.stack([load_clip(CLIP, max_frames=6, stride=12, size=64, cache_dir=tmp_path / "cache")])
    work = tmp_path / "work"
    work.mkdir()
    (work / CHECKPOINT).write_bytes(b"half a checkpoint")
    stages: list[tuple[str, int, int]] = []
    with caplog.at_level("WARNING"):
        history = P.fine_tune(P.load_prior(prior), data, steps=2, work=work, settings={"test": 1}, batch=2,
                              progress=lambda *stage: stages.append(stage))
    assert stages[0] == ("training", 0, 2) and len(history) == 2, "started from step 0, not from the junk"
    assert "is damaged" in caplog.text
    assert (work / (CHECKPOINT + ".damaged")).read_bytes() == b"half a checkpoint", "set aside, not deleted"


@pytest.fixture(scope="module")
def few_tracked(tmp_path_factory):
    """Six tracked frames of the bundled clip and their self-reenactment samples."""
    from vcam_me.training.reenact_data import load_tracked, samples_from_tracked

    tracked = load_tracked(CLIP, max_frames=6, stride=12, cache_dir=tmp_path_factory.mktemp("reenact"))
    return tracked, samples_from_tracked(CLIP, tracked)


def test_the_owner_is_fine_tuned_on_the_true_mesh_and_on_the_basis_drawn_one(few_tracked):
    from vcam_me.avatar import AUBasis

    tracked, samples = few_tracked
    assert P.training_samples(samples, tracked, basis_warped=False) == [samples]
    true_mesh, drawn = P.training_samples(samples, tracked, basis_warped=True)
    assert true_mesh is samples
    np.testing.assert_array_equal(drawn.target, samples.target)
    np.testing.assert_array_equal(drawn.condition, samples.condition)
    assert np.abs(drawn.warped.astype(int) - samples.warped).mean() > 0.5
    # drawn as the app draws an owner's avatar: the shipped basis as measured, no gains
    from vcam_me.training.reenact_data import warped_by_basis

    again = warped_by_basis(samples, tracked, AUBasis.load().as_measured().basis)
    np.testing.assert_array_equal(drawn.warped, again.warped)


def test_cancel_while_preparing_the_training_frames_stops_there(few_tracked):
    tracked, samples = few_tracked
    cancel = threading.Event()
    seen: list[int] = []

    def progress(stage: str, done: int, total: int) -> None:
        seen.append(done)
        if done == 2:
            cancel.set()

    with pytest.raises(P.Cancelled, match="cancelled before the fine-tuning"):
        P.training_samples(samples, tracked, basis_warped=True, progress=progress, cancel=cancel)
    assert seen == [1, 2]


def test_the_evaluation_fine_tunes_as_many_steps_as_the_set_up():
    """`vcam-me eval renderers` scores the avatar `vcam-me setup` makes: both parse the same default."""
    from vcam_me.cli import SETUP_STEPS, build_parser

    parser = build_parser()
    assert SETUP_STEPS == P.DEFAULT_STEPS
    assert parser.parse_args(["setup", "--from-video", "x.mp4"]).steps == P.DEFAULT_STEPS
    assert parser.parse_args(["eval", "renderers"]).steps == P.DEFAULT_STEPS
