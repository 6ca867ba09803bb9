"""ImageSource and the open_source factory."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from vcam_me.capture import CameraSource, ImageSource, VideoFileSource, open_source, read_image_rgb
from vcam_me.config import CaptureOptions
from vcam_me.errors import CaptureError


@pytest.fixture
def png(tmp_path) -> Path:
    rgb = np.zeros((30, 40, 3), np.uint8)
    rgb[..., 0] = 200  # red
    rgb[5, 7] = (1, 2, 3)
    path = tmp_path / "still.png"
    assert cv2.imwrite(str(path), rgb[:, :, ::-1])
    return path


def test_read_image_rgb_gives_rgb_order(png):
    rgb = read_image_rgb(png)
    assert rgb.shape == (30, 40, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == (200, 0, 0)
    assert tuple(rgb[5, 7]) == (1, 2, 3)


def test_unreadable_and_missing_images(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    with pytest.raises(CaptureError, match=r"^not a readable image: .*bad\.png$"):
        ImageSource.open(bad)
    with pytest.raises(CaptureError, match=r"^image file not found: "):
        ImageSource.open(tmp_path / "missing.jpg")


def test_still_image_repeats_at_the_given_rate(png):
    with ImageSource.open(png, fps=100, max_frames=11) as still:
        assert still.size == (40, 30)
        t0 = time.monotonic()
        frames = list(still)
        elapsed = time.monotonic() - t0
    assert [f.index for f in frames] == list(range(11))
    assert all(f.image is frames[0].image for f in frames)  # one shared, read-only array
    assert not frames[0].image.flags.writeable
    stamps = [f.timestamp_ms for f in frames]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))
    assert elapsed == pytest.approx(0.1, abs=0.05)


def test_still_image_live_interface(png):
    with ImageSource.open(png, fps=200) as still:
        first = still.wait_newer(-1, timeout_s=1.0)
        second = still.wait_newer(first.index, timeout_s=1.0)
        assert second.index > first.index and second.timestamp_ms > first.timestamp_ms
        np.testing.assert_array_equal(second.image, first.image)


def test_image_source_checks_its_input():
    with pytest.raises(TypeError, match="uint8"):
        ImageSource(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="fps"):
        ImageSource(np.zeros((4, 4, 3), np.uint8), fps=0)


# -- open_source -----------------------------------------------------------------------------
def test_open_source_camera_uses_the_given_factory(fakecam):
    factory = fakecam.factory({0: fakecam.Device()})
    with open_source(CaptureOptions(source="camera"), capture_factory=factory) as src:
        assert isinstance(src, CameraSource)
        assert src.wait_newer(-1, timeout_s=1.0) is not None


def test_open_source_image_by_suffix_and_by_content(png, tmp_path):
    with open_source(CaptureOptions(source=str(png), fps=25)) as src:
        assert isinstance(src, ImageSource) and src.fps == 25
    no_suffix = tmp_path / "photo"
    no_suffix.write_bytes(png.read_bytes())
    with open_source(CaptureOptions(source=str(no_suffix))) as src:
        assert isinstance(src, ImageSource)


def test_open_source_video(tmp_path, make_video):
    path = make_video(tmp_path / "clip.mp4", [0, 33, 66])
    with open_source(CaptureOptions(source=str(path), pace="fast", loop=True)) as src:
        assert isinstance(src, VideoFileSource)
        assert src.pace == "fast" and src.loop


def test_open_source_errors(tmp_path):
    with pytest.raises(CaptureError, match="capture source not found"):
        open_source(CaptureOptions(source=str(tmp_path / "nothing.mp4")))
    with pytest.raises(CaptureError, match="capture.source is empty"):
        open_source(CaptureOptions(source=""))
    text = tmp_path / "notes.txt"
    text.write_text("hello\n" * 50)
    with pytest.raises(CaptureError, match="not a video file, or corrupt"):
        open_source(CaptureOptions(source=str(text)))


def test_public_surface():
    import vcam_me.capture as capture

    assert sorted(capture.__all__) == sorted([
        "CameraFormat", "CameraInfo", "CameraSource", "ImageSource", "LiveSource", "VideoFileSource",
        "default_capture_factory", "find_cameras", "list_cameras", "looks_like_image", "open_source", "read_image_rgb",
    ])
    for name in ("wait_newer", "latest", "finished", "reconnects", "close", "start"):
        for cls in (capture.CameraSource, capture.VideoFileSource, capture.ImageSource):
            assert hasattr(cls, name), f"{cls.__name__}.{name}"
