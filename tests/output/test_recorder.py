"""MP4 recorder: round trip through PyAV, no clobbering, clear errors, atomic finish."""

from __future__ import annotations

import os
from fractions import Fraction

import av
import numpy as np
import pytest

from vcam_me.config import OutputOptions
from vcam_me.errors import OutputError
from vcam_me.output import RecorderSink
from vcam_me.types import RenderedFrame

SIZE = (160, 96)


def _image(i: int) -> np.ndarray:
    """Frame i: a flat grey level that steps by 20 per frame, plus a moving bright square."""
    w, h = SIZE
    image = np.full((h, w, 3), 20 + (i * 20) % 200, np.uint8)
    x = (i * 12) % (w - 24)
    image[30:54, x:x + 24] = (250, 30, 30)
    return image


def _read(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        info = {
            "codec": stream.codec_context.name,
            "pix_fmt": stream.codec_context.pix_fmt,
            "size": (stream.codec_context.width, stream.codec_context.height),
            "rate": stream.average_rate,
        }
        frames = [(f.to_ndarray(format="rgb24"), f.time) for f in container.decode(video=0)]
    return info, frames


def _partials(folder):
    return [p for p in os.listdir(folder) if p.endswith(".partial")]


@pytest.mark.parametrize("fps", [30, 60, 29.97])
def test_round_trip(tmp_path, fps):
    path = tmp_path / "out.mp4"
    n = 24
    with RecorderSink.open(path, SIZE, fps, OutputOptions(record_crf=18)) as sink:
        for i in range(n):
            sink.send(RenderedFrame(_image(i), 5000 + i * 7))  # wall-clock jitter must not matter
        assert not path.exists()  # written under a temporary name until closed
        assert len(_partials(tmp_path)) == 1
    assert sink.frames_written == n and sink.frames_dropped == 0
    assert _partials(tmp_path) == []
    info, frames = _read(path)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert info["size"] == SIZE
    assert info["rate"] == Fraction(fps).limit_denominator(1001)
    assert len(frames) == n
    for i, (image, t) in enumerate(frames):
        assert t == pytest.approx(i / fps, abs=1e-3)  # timestamps from the frame index
        want = _image(i)
        assert abs(float(image[70:90].mean()) - float(want[70:90].mean())) < 4  # flat grey level
        sq = image[34:50, :, 0].astype(int) - image[34:50, :, 1].astype(int)
        profile = sq.mean(axis=0)
        cols = np.nonzero(profile > profile.max() / 2)[0]
        centre = float(cols.mean())  # centroid of the red square's columns
        assert abs(centre - ((i * 12) % (SIZE[0] - 24) + 12)) <= 6  # red square where it was drawn


def test_refuses_to_overwrite(tmp_path):
    path = tmp_path / "taken.mp4"
    path.write_bytes(b"precious")
    with pytest.raises(OutputError, match="refusing to overwrite") as info:
        RecorderSink.open(path, SIZE, 30)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert path.read_bytes() == b"precious"
    assert _partials(tmp_path) == []


def test_overwrite_when_asked(tmp_path):
    path = tmp_path / "taken.mp4"
    path.write_bytes(b"old")
    with RecorderSink.open(path, SIZE, 30, overwrite=True) as sink:
        for i in range(3):
            sink.send(RenderedFrame(_image(i), i))
    _, frames = _read(path)
    assert len(frames) == 3


def test_file_appearing_during_recording_is_not_clobbered(tmp_path):
    path = tmp_path / "race.mp4"
    sink = RecorderSink.open(path, SIZE, 30)
    sink.send(RenderedFrame(_image(0), 0))
    path.write_bytes(b"someone else")
    with pytest.raises(OutputError, match="kept as"):
        sink.close()
    assert path.read_bytes() == b"someone else"
    assert len(_partials(tmp_path)) == 1  # the recording survives under its temporary name
    sink.close()  # idempotent


def test_missing_folder(tmp_path):
    path = tmp_path / "nope" / "out.mp4"
    with pytest.raises(OutputError, match="does not exist") as info:
        RecorderSink.open(path, SIZE, 30)
    assert "\n" not in str(info.value) and "nope" in str(info.value)


@pytest.mark.skipif(os.name == "nt" or (hasattr(os, "geteuid") and os.geteuid() == 0),
                    reason="permission bits do not stop root (or work differently on Windows)")
def test_unwritable_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="not writable"):
            RecorderSink.open(folder / "out.mp4", SIZE, 30)
    finally:
        folder.chmod(0o700)


def test_unwritable_folder_by_access_check(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "access", lambda *a, **k: False)
    with pytest.raises(OutputError, match="not writable") as info:
        RecorderSink.open(tmp_path / "out.mp4", SIZE, 30)
    assert "\n" not in str(info.value)


def test_path_is_a_folder(tmp_path):
    with pytest.raises(OutputError, match="is a folder"):
        RecorderSink.open(tmp_path, SIZE, 30)


def test_odd_size_is_refused(tmp_path):
    with pytest.raises(ValueError, match="even"):
        RecorderSink.open(tmp_path / "odd.mp4", (161, 96), 30)


def test_wrong_frame_size_is_refused_and_close_still_finishes(tmp_path):
    path = tmp_path / "out.mp4"
    with RecorderSink.open(path, SIZE, 30) as sink:
        sink.send(RenderedFrame(_image(0), 0))
        with pytest.raises(ValueError, match="frame size"):
            sink.send(RenderedFrame(np.zeros((10, 10, 3), np.uint8), 1))
    _, frames = _read(path)
    assert len(frames) == 1


def test_no_frames_leaves_no_file(tmp_path):
    path = tmp_path / "empty.mp4"
    RecorderSink.open(path, SIZE, 30).close()
    assert not path.exists() and _partials(tmp_path) == []


def test_caller_may_reuse_its_buffer(tmp_path):
    path = tmp_path / "reuse.mp4"
    buffer = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    with RecorderSink.open(path, SIZE, 30) as sink:
        for i in range(6):
            buffer[:] = 30 * i + 20
            sink.send(RenderedFrame(buffer, i))
    _, frames = _read(path)
    levels = [float(image.mean()) for image, _ in frames]
    assert all(abs(level - (30 * i + 20)) < 4 for i, level in enumerate(levels))
