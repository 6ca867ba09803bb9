"""The wizard's plain-Python logic: the face-quality maths, the prompted session and its
re-asks, the recorder, the training job's cancel and time left."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from vcam_me.errors import SetupError, VcamError
from vcam_me.types import AU_CHANNELS, AU_INDEX, FaceObservation
from vcam_me.ui import setup_flow as F


def _observation(x0, y0, x1, y1, transform=None) -> FaceObservation:
    landmarks = np.zeros((478, 3), np.float32)
    landmarks[:, 0] = np.linspace(x0, x1, 478)
    landmarks[:, 1] = np.linspace(y0, y1, 478)
    return FaceObservation(0, (200, 100), landmarks, np.zeros(52, np.float32),
                           np.eye(4, dtype=np.float32) if transform is None else transform)


def _yaw_transform(deg: float) -> np.ndarray:
    t = np.eye(4, dtype=np.float32)
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    t[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    return t


def test_lighting_is_the_face_box_mean_grey_and_size_its_height_fraction():
    image = np.zeros((100, 200, 3), np.uint8)
    image[20:70, 50:100] = 120  # the face box: grey 120; the rest black
    q = F.face_quality(image, _observation(0.25, 0.2, 0.5, 0.7))
    assert q.lighting == pytest.approx(120, abs=0.5)
    assert q.size == pytest.approx(0.5)
    assert q.lighting_ok and q.size_ok and q.frontal_ok and q.ok and q.hints() == []


def test_dark_small_turned_faces_are_reported_with_what_to_do():
    image = np.full((100, 200, 3), 20, np.uint8)
    q = F.face_quality(image, _observation(0.4, 0.4, 0.5, 0.5, _yaw_transform(30)))
    assert not q.lighting_ok and not q.size_ok and not q.frontal_ok
    assert abs(q.yaw_deg) == pytest.approx(30, abs=0.5)
    hints = " ".join(q.hints())
    assert "dark" in hints and "closer" in hints and "straight" in hints
    assert not F.face_quality(image, FaceObservation.empty(0, (200, 100))).ok


def _au(**channels) -> np.ndarray:
    au = np.zeros(len(AU_CHANNELS), np.float32)
    for name, v in channels.items():
        au[AU_INDEX[name]] = v
    return au


def test_a_prompt_that_did_not_move_is_asked_again_at_most_twice():
    prompts = (F.Prompt("neutral", "n", seconds=1), F.Prompt("smile", "s", ("AU12_L", "AU12_R"), seconds=1))
    session = F.ExpressionSession(prompts, fps=10, countdown_s=0.5)
    recorded = sum(session.feed(_au(AU12_L=0.1)) for _ in range(15))  # countdown 5 + neutral 10
    assert recorded == 10 and session.prompt.key == "smile"
    while not session.done:
        session.feed(_au(AU12_L=0.12))  # barely above the neutral
    smiles = [r for r in session.results if r.prompt.key == "smile"]
    assert [r.attempt for r in smiles] == [0, 1, 2] and not any(r.moved for r in smiles)
    assert [p.key for p in session.missed()] == ["smile"]


def test_a_prompt_that_moved_goes_on_and_head_turns_count_degrees():
    prompts = (F.Prompt("neutral", "n", seconds=1), F.Prompt("smile", "s", ("AU12_L", "AU12_R"), seconds=1),
               F.Prompt("turn", "t", yaw_deg=12, seconds=1))
    session = F.ExpressionSession(prompts, fps=10, countdown_s=0)
    for _ in range(10):
        session.feed(_au(), 2.0)
    for _ in range(10):
        session.feed(_au(AU12_R=0.6), 2.0)
    for k in range(10):
        session.feed(_au(), 2.0 - 2.0 * k)  # turns to -16°: 18° from the neutral
    assert session.done and [r.moved for r in session.results] == [True, True, True]
    assert session.results[2].rise == pytest.approx(18)


def test_frames_without_a_face_do_not_count_as_moving():
    session = F.ExpressionSession((F.Prompt("neutral", "n", seconds=1),), fps=10, countdown_s=0, max_retries=1)
    for _ in range(20):
        session.feed(None)
    assert session.done and [r.moved for r in session.results] == [False, False]


def test_the_recorder_writes_a_real_mp4_and_never_overwrites(tmp_path):
    import av

    path = tmp_path / "capture.mp4"
    with F.CaptureWriter(path, fps=24) as writer:
        for k in range(12):
            writer.write(np.full((61, 81, 3), k * 20, np.uint8))
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 12 and frames[0].shape == (60, 80, 3)
    assert abs(int(frames[5].mean()) - 100) <= 3
    with pytest.raises(SetupError, match="already exists"):
        F.CaptureWriter(path)


def test_training_job_reports_progress_time_left_and_cancel():
    release = threading.Event()

    def personalise(capture, out, *, progress, cancel, steps):
        for k in range(steps + 1):
            progress("training", k, steps)
            if k == 2:
                release.wait(5)
            if cancel.is_set():
                raise VcamError("cancelled")
        return "done"

    job = F.TrainingJob(personalise, "c.mp4", "out", steps=10)
    job.start()
    while job.state().done < 2:
        threading.Event().wait(0.01)
    state = job.state()
    assert state.stage == "training" and state.total == 10 and state.seconds_left is not None
    job.cancel()
    release.set()
    job.join(5)
    assert job.state().cancelled and job.state().result is None and job.state().error is None


def test_discard_removes_only_the_given_paths(tmp_path):
    mine, kept = tmp_path / "avatar", tmp_path / "other"
    (mine / "sub").mkdir(parents=True)
    kept.mkdir()
    (tmp_path / "capture.mp4").write_bytes(b"x")
    F.discard([mine, tmp_path / "capture.mp4", tmp_path / "missing"])
    assert not mine.exists() and not (tmp_path / "capture.mp4").exists() and kept.is_dir()
