"""Recorded consent end to end: a real face video with real (synthesised) speech → a signed record.

The recording is built here: the bundled real clip (a woman, Pexels licence) with the
statement spoken by espeak-ng muxed in by ffmpeg. The matching avatar is made from a frame
of that clip; the mismatching one from the bundled sample portrait, another woman.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from vcam_me.app import main

REPO = Path(__file__).resolve().parent.parent
CLIP = REPO / "assets" / "driving" / "pyfeat_WolfgangLanger_Pexels.mp4"
SAMPLE_PHOTO = REPO / "assets" / "avatars" / "sample" / "reference.png"
STATEMENT = ("I, Jane Doe, agree that vcam-me may show an AI-generated avatar of my face in live video calls "
             "and rendered videos, always labelled as AI-generated, until 21 February 2027. "
             "My one-time code is RIVER-4821.")

pytestmark = pytest.mark.slow


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True, timeout=60)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Recordings and avatars shared by the tests (built once; tests copy what they change)."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.skip("espeak-ng is not installed (scripts/setup.sh installs it: apt-get install espeak-ng)")
    root = tmp_path_factory.mktemp("consent-media")
    speech = root / "speech.wav"
    subprocess.run([espeak, "-w", str(speech), STATEMENT], check=True, timeout=60)
    video = ["-i", str(CLIP)]
    h264 = ["-c:v", "libx264", "-preset", "ultrafast"]
    _ffmpeg(*video, "-i", str(speech), "-map", "0:v", "-map", "1:a", "-t", "8", *h264, "-c:a", "aac", str(root / "statement.mp4"))
    _ffmpeg(*video, "-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-map", "0:v", "-map", "1:a", "-t", "8", *h264,
            "-c:a", "aac", str(root / "silent.mp4"))
    _ffmpeg(*video, "-t", "8", "-an", *h264, str(root / "no-audio.mp4"))
    _ffmpeg(*video, "-i", str(speech), "-map", "0:v", "-map", "1:a", "-t", "2", *h264, "-c:a", "aac", str(root / "short.mp4"))
    _ffmpeg(*video, "-t", "1", *h264, "-an", str(root / "driving-1s.mp4"))
    _ffmpeg("-ss", "2", *video, "-frames:v", "1", str(root / "her-frame.png"))
    import cv2

    cv2.imwrite(str(root / "someone-else.png"), cv2.imread(str(SAMPLE_PHOTO))[:, ::-1])  # not byte-identical to the sample
    home = root / "avatar-home"
    env = {**os.environ, "XDG_DATA_HOME": str(home), "XDG_CONFIG_HOME": str(home), "HOME": str(home)}
    for photo, name in (("her-frame.png", "her"), ("someone-else.png", "someone-else")):
        subprocess.run([sys.executable, "-m", "vcam_me", "avatar", "create", "--photo", str(root / photo),
                        "--out", str(root / name)], check=True, env=env, capture_output=True, timeout=120)
    return root


@pytest.fixture
def user(private_user_dirs, media):
    """A fresh user with their own copies of the two avatars."""
    for name in ("her", "someone-else"):
        shutil.copytree(media / name, private_user_dirs / name)
    return private_user_dirs


def _record(avatar: Path, recording: Path, challenge: str = "RIVER-4821") -> int:
    return main(["consent", "record", "--avatar", str(avatar), "--name", "Jane Doe", "--recording", str(recording),
                 "--challenge", challenge])


def _evidence_dir(user: Path) -> Path:
    return user / "xdg_data_home" / "vcam-me" / "consent" / "evidence"


def test_her_own_face_and_voice_sign_a_record_that_render_and_run_accept(user, media, capsys):
    recording = media / "statement.mp4"
    before = hashlib.sha256(recording.read_bytes()).hexdigest()
    assert _record(user / "her", recording) == 0
    out = capsys.readouterr().out
    assert "recorded consent" in out and "face distance" in out
    code = out.split("recorded consent ")[1].split()[0]

    record = json.loads((user / "her" / "consent.json").read_text())
    assert record["kind"] == "recorded" and record["challenge"] == "RIVER-4821"
    assert record["statement"].startswith("I, Jane Doe, agree") and "RIVER-4821" in record["statement"]
    assert record["evidence_sha256"] == before == hashlib.sha256(recording.read_bytes()).hexdigest()
    stored = _evidence_dir(user) / f"{before}.mp4"
    assert stored.read_bytes() == recording.read_bytes()
    if os.name == "posix":
        assert stat.S_IMODE(stored.stat().st_mode) == 0o600
        assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o700

    assert main(["consent", "show", code]) == 0
    shown = capsys.readouterr().out
    assert "kind:           recorded" in shown and "face match:     median distance" in shown
    assert "s of voice" in shown
    checks = json.loads((_evidence_dir(user) / f"{code.replace('-', '')}.checks.json").read_text())
    assert checks["face_match"]["median_distance"] < 0.6 and checks["speech"]["voiced_s"] >= 3

    assert main(["render", "--avatar", str(user / "her"), "--driving", str(media / "driving-1s.mp4"),
                 "--out", str(user / "out.mp4"), "--size", "320x180", "--fps", "30"]) == 0
    assert (user / "out.mp4").stat().st_size > 1000
    from vcam_me.app import require_consent
    from vcam_me.avatar import Avatar

    assert require_consent(Avatar.load(user / "her"), "live_call").verdict.kind == "recorded"

    # the same clip or the same code cannot back a second record
    assert _record(user / "someone-else", recording, "RIVER-1111") == 2
    assert "already backs consent record" in capsys.readouterr().err
    assert _record(user / "someone-else", media / "short.mp4") == 2
    assert "already used" in capsys.readouterr().err


def test_another_persons_face_is_refused_with_the_distance(user, media, capsys):
    assert _record(user / "someone-else", media / "statement.mp4") == 2
    err = capsys.readouterr().err
    assert "does not match the avatar (distance 0." in err and "limit 0.50" in err
    assert len(err.strip().splitlines()[-1]) < 200
    assert not (user / "someone-else" / "consent.json").exists()
    assert list(_evidence_dir(user).glob("*.mp4")) == []  # the refused copy is not kept


@pytest.mark.parametrize(("clip", "message"), [
    ("silent.mp4", "no speech found: 0.0 s of voice"),
    ("no-audio.mp4", "no-audio.mp4 has no audio track"),
    ("short.mp4", "s of voice in 2.0 s of audio, at least 3 s needed"),
])
def test_recordings_without_enough_speech_are_refused(user, media, capsys, clip, message):
    assert _record(user / "her", media / clip) == 2
    assert message in capsys.readouterr().err
    assert not (user / "her" / "consent.json").exists()


def test_a_valid_record_is_never_overwritten(user, media, capsys):
    assert main(["consent", "attest", "--avatar", str(user / "her"), "--licence", "my own face"]) == 0
    before = (user / "her" / "consent.json").read_bytes()
    assert _record(user / "her", media / "statement.mp4") == 2
    assert "already holds valid consent record" in capsys.readouterr().err
    assert (user / "her" / "consent.json").read_bytes() == before


def test_live_capture_with_a_video_for_camera_and_speech_for_microphone(user, media):
    """The live path (capture_consent) with its two seams: frames from the recording paced in
    real time, audio from its sound track fed block by block through the Microphone class."""
    import threading
    import time

    from vcam_me.app import capture_consent
    from vcam_me.avatar import Avatar
    from vcam_me.capture import VideoFileSource
    from vcam_me.capture.microphone import Microphone
    from vcam_me.config import load_config
    from vcam_me.consent.evidence import read_audio

    sound = read_audio(media / "statement.mp4", 16_000)

    class PlayedMicrophone(Microphone):
        def __init__(self, on_block):
            super().__init__(None, 16_000, on_block=on_block)
            self.thread = threading.Thread(target=self.play, daemon=True)
            self.stopped = threading.Event()
            self.thread.start()

        def play(self):
            start = time.monotonic()
            for i in range(0, sound.size, 320):
                if self.stopped.is_set():
                    return
                self.feed(sound[i:i + 320])
                time.sleep(max(0.0, start + (i + 320) / 16_000 - time.monotonic()))

        def close(self):
            self.stopped.set()
            self.thread.join()
            super().close()

    shown: list[str] = []
    record, figures = capture_consent(
        Avatar.load(user / "her"), subject_name="Jane Doe", days=30, cfg=load_config(None, use_user_config=False),
        seconds=5.5, open_frames=lambda: VideoFileSource.open(media / "statement.mp4", pace="realtime"),
        open_audio=PlayedMicrophone, on_statement=shown.append,
    )
    assert record.kind == "recorded" and record.challenge in shown[0] and record.statement == shown[0]
    assert figures["face_match"]["median_distance"] < 0.6 and figures["speech"]["voiced_s"] >= 3
    stored = _evidence_dir(user) / f"{record.evidence_sha256}.mp4"
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == record.evidence_sha256
    assert not list(_evidence_dir(user).glob(".take-*"))  # the take is kept only under its hash


def test_bad_command_lines_give_one_line_and_exit_2(user, media):
    env = {**os.environ, "XDG_DATA_HOME": str(user / "xdg_data_home"), "HOME": str(user / "home")}
    cases = [
        (["--recording", str(media / "statement.mp4")], "--recording needs --challenge CODE"),
        (["--recording", str(user / "missing.mp4"), "--challenge", "RIVER-4821"], "consent recording not found"),
        (["--recording", str(media / "statement.mp4"), "--challenge", "banana"], "not a vcam-me challenge code"),
    ]
    for extra, message in cases:
        done = subprocess.run([sys.executable, "-m", "vcam_me", "consent", "record", "--avatar", str(user / "her"),
                               "--name", "Jane Doe", *extra], check=False, capture_output=True, text=True, env=env,
                              timeout=120)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert lines[-1].startswith("vcam-me: error: ") and message in lines[-1], done.stderr
        assert "Traceback" not in done.stderr


def test_live_recording_without_a_camera_is_one_line(user, capsys):
    from vcam_me.capture import find_cameras

    if find_cameras():
        pytest.skip("this machine has a camera; the no-camera message cannot be checked here")
    assert main(["consent", "record", "--avatar", str(user / "her"), "--name", "Jane Doe", "--seconds", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vcam-me: error: ") and "camera" in err[0]
    assert not (user / "her" / "consent.json").exists()
