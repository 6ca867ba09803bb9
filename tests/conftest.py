"""Fixtures shared by the whole test suite.

Real media (faces, videos, upstream expected outputs) live outside the repository in
``../shared/data`` next to the checkout. Tests that need it either take the
``shared_data`` / ``shared_file`` fixtures or carry ``@pytest.mark.shared_data``; all of
them skip with a clear reason when the folder is absent, so the suite passes on a fresh
machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
_SKIP_REASON = f"real media folder {SHARED_DATA} is absent (it sits beside the checkout as ../shared/data)"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "shared_data: needs the real media in ../shared/data (skipped when absent)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("shared_data") is not None and not SHARED_DATA.is_dir():
        pytest.skip(_SKIP_REASON)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` as a Path; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(_SKIP_REASON)
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_file(shared_data: Path) -> Callable[[str], Path]:
    """``shared_file("driving/x.mp4")`` → the path; skips the test when that file is absent."""

    def _get(relative: str) -> Path:
        path = shared_data / relative
        if not path.is_file():
            pytest.skip(f"real media file {path} is absent")
        return path

    return _get


@pytest.fixture
def private_user_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the user's home, data, config, state and cache folders into ``tmp_path`` (returned), so
    a test never reads or writes the real user's avatars, consent records or settings."""
    for var in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.fixture
def spoken_speech(tmp_path: Path) -> Callable[[str], tuple]:
    """``spoken_speech("some words")`` → ``(samples, sample_rate)``: real synthetic speech from
    espeak-ng (float32 mono in [-1, 1]); skips the test when espeak-ng is not installed."""
    import shutil
    import subprocess
    import wave

    import numpy as np

    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("espeak-ng is not installed (scripts/setup.sh installs it: apt-get install espeak-ng)")

    def _speak(text: str) -> tuple:
        path = tmp_path / f"speech-{abs(hash(text))}.wav"
        subprocess.run([exe, "-w", str(path), text], check=True, capture_output=True, timeout=30)
        with wave.open(str(path), "rb") as wav:
            assert wav.getsampwidth() == 2 and wav.getnchannels() == 1, "espeak-ng writes 16-bit mono"
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), np.int16)
            return pcm.astype(np.float32) / 32768.0, wav.getframerate()

    return _speak


def encode_h264(frames, out: Path, rate: int = 24) -> Path:
    """Write ``(H, W, 3) uint8 RGB`` frames as an H.264 MP4 at ``rate`` fps (PyAV); returns ``out``."""
    import av

    with av.open(str(out), "w") as dst:
        stream = None
        for i, image in enumerate(frames):
            if stream is None:
                stream = dst.add_stream("libx264", rate=rate)
                stream.width, stream.height, stream.pix_fmt = image.shape[1], image.shape[0], "yuv420p"
            new = av.VideoFrame.from_ndarray(image, format="rgb24")
            new.pts = i
            for packet in stream.encode(new):
                dst.mux(packet)
        if stream is not None:
            for packet in stream.encode():
                dst.mux(packet)
    return out


@pytest.fixture(scope="session")
def write_video() -> Callable:
    """``write_video(frames, out, rate=24)``: real H.264 MP4 from RGB frames (see :func:`encode_h264`)."""
    return encode_h264


@pytest.fixture(scope="session")
def bundled_clip_cut(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int, int], Path]:
    """``cut(frames, rate)``: the first ``frames`` frames of the bundled real clip, re-encoded
    (H.264) at ``rate`` fps so that short renders in tests stay quick; made once per session."""
    import av

    from vcam_me.app import BUNDLED_DRIVING

    made: dict[tuple[int, int], Path] = {}

    def cut(frames: int, rate: int) -> Path:
        if (frames, rate) in made:
            return made[frames, rate]
        out = tmp_path_factory.mktemp("clip") / "short.mp4"
        with av.open(str(BUNDLED_DRIVING)) as src:
            images = (f.to_ndarray(format="rgb24") for i, f in zip(range(frames), src.decode(video=0)))
            encode_h264(images, out, rate)
        made[frames, rate] = out
        return out

    return cut
