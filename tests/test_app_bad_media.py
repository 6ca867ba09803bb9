"""Bad images and videos from the user, through the command line: each is refused with one
line on stderr and exit code 2, and no output is left behind. stderr is captured at the file
descriptor (``capfd``), so a native library printing there (libpng does) would show up too.

The files are made here: damaged by cutting real files short, a PNG whose header claims a
huge size (a real 1x1 PNG with its IHDR rewritten, CRC and all), an audio-only MP4 encoded
with PyAV (FFmpeg)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from vcam_me.app import BUNDLED_AVATAR, BUNDLED_DRIVING, main


def _png_claiming(width: int, height: int) -> bytes:
    _, png = cv2.imencode(".png", np.zeros((1, 1, 3), np.uint8))
    data = bytearray(png.tobytes())
    struct.pack_into(">II", data, 16, width, height)  # IHDR: after the 8-byte signature, length and type
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _jpeg_of_the_sample() -> bytes:
    _, jpg = cv2.imencode(".jpg", cv2.imread(str(BUNDLED_AVATAR / "reference.png")))
    return jpg.tobytes()


def _audio_only(path: Path) -> Path:
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=44100)
        tone = (0.2 * np.sin(np.arange(44100) * 2 * np.pi * 440 / 44100)).astype(np.float32)[None, :]
        for start in range(0, tone.shape[1], 1024):
            frame = av.AudioFrame.from_ndarray(tone[:, start:start + 1024], format="fltp", layout="mono")
            frame.sample_rate = 44100
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _one_line_refusal(capfd, argv: list[str], expected: str) -> str:
    capfd.readouterr()
    assert main(argv) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and err.startswith("vcam-me: error: "), err
    assert "Traceback" not in err and expected in err, err
    return err


PHOTOS = {
    "not_an_image.jpg": (lambda: b"a letter, not a photo\n", "not a readable image"),
    "empty.jpg": (lambda: b"", "is empty"),
    "truncated.jpg": (lambda: _jpeg_of_the_sample()[:2000], "not a readable image"),
    "truncated.png": (lambda: (BUNDLED_AVATAR / "reference.png").read_bytes()[:300_000], "not a readable image"),
    "huge.png": (lambda: _png_claiming(60_000, 60_000), "more than 100 megapixels"),
    "large.png": (lambda: _png_claiming(11_000, 11_000), "is 11000x11000 pixels"),
}


@pytest.mark.parametrize("name", PHOTOS)
def test_avatar_create_refuses_a_bad_photo_in_one_line(tmp_path: Path, private_user_dirs, capfd, name: str) -> None:
    make, expected = PHOTOS[name]
    photo = tmp_path / name
    photo.write_bytes(make())
    out = tmp_path / "avatar"
    _one_line_refusal(capfd, ["avatar", "create", "--photo", str(photo), "--out", str(out)], expected)
    assert not out.exists()


def test_the_good_jpeg_the_bad_ones_are_cut_from_is_accepted(tmp_path: Path, private_user_dirs) -> None:
    photo = tmp_path / "portrait.jpg"
    photo.write_bytes(_jpeg_of_the_sample())
    assert main(["avatar", "create", "--photo", str(photo), "--out", str(tmp_path / "avatar")]) == 0


@pytest.fixture(scope="module")
def bad_videos(tmp_path_factory) -> dict[str, tuple[Path, str]]:
    folder = tmp_path_factory.mktemp("bad_videos")
    clip = BUNDLED_DRIVING.read_bytes()
    files = {
        "empty.mp4": (b"", "not a video file"),
        "not_a_video.mp4": (b"minutes of the meeting\n" * 20, "not a video file"),
        "cut_short.mp4": (clip[:30_000], "no decodable frames"),
        "no_header.mp4": (clip[2000:200_000], "not a video file"),
    }
    out = {}
    for name, (data, expected) in files.items():
        (folder / name).write_bytes(data)
        out[name] = (folder / name, expected)
    out["audio_only.m4a"] = (_audio_only(folder / "audio_only.m4a"), "no video stream")
    return out


VIDEOS = ["empty.mp4", "not_a_video.mp4", "cut_short.mp4", "no_header.mp4", "audio_only.m4a"]


@pytest.mark.parametrize("name", VIDEOS)
def test_render_refuses_a_bad_driving_video_in_one_line(tmp_path, private_user_dirs, capfd, bad_videos, name) -> None:
    video, expected = bad_videos[name]
    out = tmp_path / "out.mp4"
    _one_line_refusal(capfd, ["render", "--avatar", str(BUNDLED_AVATAR), "--driving", str(video), "--out", str(out),
                               "--fps", "30", "--size", "320x180"], expected)
    assert not out.exists()


@pytest.mark.parametrize("name", VIDEOS)
def test_run_refuses_a_bad_video_in_one_line(tmp_path, private_user_dirs, capfd, bad_videos, name) -> None:
    video, expected = bad_videos[name]
    out = tmp_path / "out.mp4"
    _one_line_refusal(capfd, ["run", "--video", str(video), "--record", str(out), "--duration", "1", "--fast",
                               "--no-hotkeys", "--size", "320x180"], expected)
    assert not out.exists()


@pytest.mark.parametrize("name", ["truncated.png", "huge.png", "not_an_image.jpg", "empty.jpg"])
def test_run_refuses_a_bad_still_image_in_one_line(tmp_path, private_user_dirs, capfd, name: str) -> None:
    make, _ = PHOTOS[name]
    image = tmp_path / name
    image.write_bytes(make())
    out = tmp_path / "out.mp4"
    expected = {"huge.png": "more than 100 megapixels", "empty.jpg": "is empty"}.get(name, "not a readable image")
    _one_line_refusal(capfd, ["run", "--image", str(image), "--record", str(out), "--duration", "1", "--no-hotkeys",
                              "--size", "320x180"], expected)
    assert not out.exists()


def test_setup_refuses_a_file_that_is_not_a_video_in_one_line(tmp_path, private_user_dirs, bad_videos) -> None:
    """In a child process: FFmpeg's log level is set once per process, when OpenCV first
    opens a video, so only a fresh ``vcam-me`` shows what a user sees."""
    import subprocess
    import sys

    pytest.importorskip("torch", reason="vcam-me setup needs the [train] extra")
    video, _ = bad_videos["not_a_video.mp4"]
    run = subprocess.run([sys.executable, "-m", "vcam_me", "setup", "--from-video", str(video), "--out",
                          str(tmp_path / "mine")], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 2
    lines = [line for line in run.stderr.splitlines() if not line.startswith("checking the capture")]
    assert lines == [f"vcam-me: error: {video} is not a readable video"], run.stderr
    assert not (tmp_path / "mine").exists()


@pytest.mark.parametrize("name", VIDEOS)
def test_verify_and_consent_record_refuse_a_bad_video_in_one_line(tmp_path, private_user_dirs, capfd, bad_videos,
                                                                  name) -> None:
    video, expected = bad_videos[name]
    _one_line_refusal(capfd, ["verify", str(video)], expected)
    _one_line_refusal(capfd, ["consent", "record", "--avatar", str(BUNDLED_AVATAR), "--name", "Jane Doe",
                              "--recording", str(video), "--challenge", "RIVER-4821"], expected)
