"""CameraSource: opening, format read-back, latest-wins, reconnect, close — with a fake device,
plus one real OpenCV test (this machine has no camera at a high index)."""

from __future__ import annotations

import logging
import time

import cv2
import numpy as np
import pytest

from vcam_me.capture import CameraInfo, CameraSource, find_cameras, list_cameras
from vcam_me.config import CaptureOptions
from vcam_me.errors import CaptureError

from ..helpers import wait_until

FAST_RECONNECT = CaptureOptions(reconnect_interval_s=0.05)


def test_missing_index_is_one_line_capture_error_listing_found_cameras(fakecam):
    devices = {0: fakecam.Device(), 2: fakecam.Device()}
    with pytest.raises(CaptureError) as info:
        CameraSource.open(CaptureOptions(camera_index=5), capture_factory=fakecam.factory(devices))
    assert str(info.value) == "no camera at index 5 (found: 0, 2)"


def test_missing_index_with_no_cameras_at_all(fakecam):
    with pytest.raises(CaptureError, match=r"^no camera at index 1 \(found: none\)$"):
        CameraSource.open(CaptureOptions(camera_index=1), capture_factory=fakecam.factory({}))


def test_real_opencv_nonexistent_index_raises_capture_error():
    index = 63  # no machine this runs on has 64 cameras
    with pytest.raises(CaptureError) as info:
        CameraSource.open(CaptureOptions(camera_index=index))
    message = str(info.value)
    assert message.startswith(f"no camera at index {index} (found: ")
    assert "\n" not in message


def test_find_cameras_probes_with_the_factory(fakecam):
    assert find_cameras(fakecam.factory({1: fakecam.Device(), 3: fakecam.Device()}), indices=range(5)) == [1, 3]


def test_factory_exception_becomes_capture_error():
    def broken(index):
        raise RuntimeError("backend exploded\nlong native trace")

    with pytest.raises(CaptureError, match=r"^cannot open camera 0: backend exploded$"):
        CameraSource.open(CaptureOptions(), capture_factory=broken)


def test_opened_but_no_frame_is_capture_error_and_releases(fakecam):
    device = fakecam.Device(gives_frames=False)
    with pytest.raises(CaptureError, match="opened but gave no frame"):
        CameraSource.open(CaptureOptions(), capture_factory=fakecam.factory({0: device}))
    assert device.releases == device.opens == 1


def test_asks_for_size_and_rate_and_reads_back_what_the_device_gave(caplog, fakecam):
    device = fakecam.Device(size=(64, 48), fps=15.0)
    captures = []

    def factory(index):
        cap = fakecam.Capture(device)
        captures.append(cap)
        return cap

    options = CaptureOptions(width=1280, height=720, fps=30)
    with caplog.at_level(logging.INFO, logger="vcam_me.capture.camera"), \
            CameraSource.open(options, capture_factory=factory) as cam:
        assert captures[0].asked[cv2.CAP_PROP_FRAME_WIDTH] == 1280
        assert captures[0].asked[cv2.CAP_PROP_FRAME_HEIGHT] == 720
        assert captures[0].asked[cv2.CAP_PROP_FPS] == 30
        assert captures[0].asked[cv2.CAP_PROP_FOURCC] == cv2.VideoWriter_fourcc(*"MJPG")
        assert cam.format.requested_size == (1280, 720)
        assert cam.size == (64, 48)
        assert cam.fps == 15.0
    assert "asked 1280x720 @ 30 fps, got 64x48 @ 15 fps" in caplog.text


def test_frames_are_rgb_with_increasing_timestamps_and_only_the_newest_is_kept(fakecam):
    device = fakecam.Device(period_s=0.002)
    with CameraSource.open(FAST_RECONNECT, capture_factory=fakecam.factory({0: device})) as cam:
        first = cam.wait_newer(-1, timeout_s=1.0)
        assert first is not None
        assert first.image.shape == (48, 64, 3) and first.image.dtype == np.uint8
        assert tuple(first.image[1, 1]) == (255, 0, 0)  # BGR red → RGB red
        assert not first.image.flags.writeable and first.image.flags.c_contiguous
        time.sleep(0.1)  # a slow consumer: ~50 frames are produced meanwhile
        newer = cam.wait_newer(first.index, timeout_s=1.0)
        assert newer is not None
        assert newer.index > first.index + 5, "frames were queued instead of skipped"
        assert newer.timestamp_ms > first.timestamp_ms
        assert cam.latest().index >= newer.index
        # Asking for something newer than the newest waits for the next frame only.
        nxt = cam.wait_newer(cam.latest().index, timeout_s=1.0)
        assert nxt is not None and nxt.index > newer.index


def test_wait_newer_times_out_with_none_when_nothing_new(fakecam):
    device = fakecam.Device(period_s=0.002)
    with CameraSource.open(FAST_RECONNECT, capture_factory=fakecam.factory({0: device}), start=False) as cam:
        first = cam.latest()  # the frame taken at open
        assert first is not None and first.index == 0
        device.gives_frames = False
        t0 = time.monotonic()
        assert cam.wait_newer(first.index, timeout_s=0.05) is None
        assert time.monotonic() - t0 < 0.5


def test_reconnects_after_the_camera_disappears_and_signals_it(fakecam):
    device = fakecam.Device(period_s=0.002)
    calls = []
    with CameraSource.open(FAST_RECONNECT, capture_factory=fakecam.factory({0: device}),
                           on_reconnect=calls.append) as cam:
        before = cam.wait_newer(-1, timeout_s=1.0)
        device.present = False  # unplugged
        assert wait_until(lambda: not cam.connected, timeout_s=2.0)
        assert cam.reconnect_count == 0
        time.sleep(0.15)  # several reopen attempts fail while it is gone
        assert cam.reconnect_count == 0
        device.present = True  # plugged back in
        assert cam.wait_reconnected(timeout_s=2.0)
        assert cam.connected and cam.reconnect_count == cam.reconnects == 1 and calls == [1]
        after = cam.wait_newer(cam.latest().index, timeout_s=1.0)
        assert after is not None
        assert after.index > before.index and after.timestamp_ms > before.timestamp_ms
    assert device.releases == device.opens  # every handle given back, including the lost one


def test_a_failing_reconnect_listener_does_not_stop_the_camera(fakecam):
    device = fakecam.Device(period_s=0.002)

    def listener(count):
        raise ValueError("bug in the app")

    with CameraSource.open(FAST_RECONNECT, capture_factory=fakecam.factory({0: device}), on_reconnect=listener) as cam:
        device.present = False
        while cam.connected:
            time.sleep(0.01)
        device.present = True
        assert cam.wait_reconnected(timeout_s=2.0)
        last = cam.latest().index
        assert cam.wait_newer(last, timeout_s=1.0) is not None


def test_close_is_idempotent_stops_the_thread_and_releases_the_device(fakecam):
    device = fakecam.Device(period_s=0.002)
    cam = CameraSource.open(FAST_RECONNECT, capture_factory=fakecam.factory({0: device}))
    cam.wait_newer(-1, timeout_s=1.0)
    thread = cam._thread
    cam.close()
    cam.close()
    assert not thread.is_alive()
    assert device.releases == device.opens == 1
    assert cam.finished
    assert cam.wait_newer(cam.latest().index, timeout_s=0.01) is None
    with pytest.raises(RuntimeError, match="closed"):
        cam.start()


def test_a_frozen_camera_is_held_back_reopened_once_and_resumes(fakecam, monkeypatch):
    """Byte-identical pictures (a hung driver) stop being passed on after FROZEN_AFTER_S, so
    the tracker sees no new frame and the avatar idles; the camera is reopened once."""
    from vcam_me.capture import camera as camera_module

    monkeypatch.setattr(camera_module, "FROZEN_AFTER_S", 0.1)
    monkeypatch.setattr(camera_module, "FROZEN_REOPEN_AFTER_S", 0.3)
    device = fakecam.Device(period_s=0.005)
    with CameraSource.open(FAST_RECONNECT, capture_factory=fakecam.factory({0: device})) as cam:
        cam.wait_newer(-1, timeout_s=1.0)
        device.frozen = True
        assert wait_until(lambda: cam.frozen, timeout_s=2.0)
        held = cam.latest().index
        time.sleep(0.6)  # frozen past the reopen point
        assert cam.latest().index == held  # nothing new was published
        assert cam.reconnects == 1 and device.opens == 2 and cam.dropped_repeats > 0
        time.sleep(0.4)
        assert cam.reconnects == 1  # once per freeze, not in a loop
        device.frozen = False
        after = cam.wait_newer(held, timeout_s=1.0)
        assert after is not None and not cam.frozen


def test_black_pictures_are_passed_on_and_flagged(fakecam):
    device = fakecam.Device(period_s=0.005)
    with CameraSource.open(FAST_RECONNECT, capture_factory=fakecam.factory({0: device})) as cam:
        first = cam.wait_newer(-1, timeout_s=1.0)
        assert not cam.dark
        device.black = True
        frame = cam.wait_newer(first.index, timeout_s=1.0)
        for _ in range(20):  # black pictures repeat exactly, yet each is published
            frame = cam.wait_newer(frame.index, timeout_s=1.0)
        assert frame is not None and cam.dark and not cam.frozen and frame.image.max() == 0


def test_a_size_change_is_followed(fakecam):
    device = fakecam.Device(size=(64, 48), period_s=0.005)
    with CameraSource.open(FAST_RECONNECT, capture_factory=fakecam.factory({0: device})) as cam:
        cam.wait_newer(-1, timeout_s=1.0)
        device.size = (32, 24)
        wait_until(lambda: cam.size == (32, 24), timeout_s=2.0)
        frame = cam.wait_newer(cam.latest().index, timeout_s=1.0)
        assert cam.size == (32, 24) and cam.size_changes == 1 and frame.image.shape == (24, 32, 3)


def test_wait_starts_without_the_camera_and_opens_it_when_it_comes(fakecam):
    device = fakecam.Device(period_s=0.005)
    device.present = False
    with pytest.raises(CaptureError):
        CameraSource.open(FAST_RECONNECT, capture_factory=fakecam.factory({0: device}))
    with CameraSource.open(FAST_RECONNECT, capture_factory=fakecam.factory({0: device}), wait=True) as cam:
        assert not cam.connected and "no camera at index 0" in cam.waiting_reason
        assert cam.wait_newer(-1, timeout_s=0.2) is None and not cam.finished
        device.present = True
        assert cam.wait_reconnected(timeout_s=2.0)
        assert cam.connected and cam.wait_newer(-1, timeout_s=1.0) is not None


def _sysfs_node(sysfs, device_dir: str, number: int, name: str, node_index: int = 0) -> None:
    """A /sys/devices/<device_dir>/video4linux/videoN with its /sys/class/video4linux link."""
    node = sysfs / "devices" / device_dir / "video4linux" / f"video{number}"
    node.mkdir(parents=True)
    (node / "name").write_text(name + "\n")
    (node / "index").write_text(f"{node_index}\n")
    links = sysfs / "class" / "video4linux"
    links.mkdir(parents=True, exist_ok=True)
    (links / f"video{number}").symlink_to(node)


def test_linux_cameras_are_read_from_sysfs_by_name_without_opening_any(tmp_path, fakecam):
    usb = "pci0000:00/0000:00:14.0/usb1/1-2/1-2:1.0"
    _sysfs_node(tmp_path, usb, 0, "HD Pro Webcam C920", node_index=0)
    _sysfs_node(tmp_path, usb, 1, "HD Pro Webcam C920", node_index=1)  # its metadata node
    _sysfs_node(tmp_path, "pci0000:00/0000:00:14.0/usb1/1-3/1-3:1.0", 10, "Integrated Camera")
    _sysfs_node(tmp_path, "virtual", 4, "vcam-me")  # v4l2loopback: our own output
    devices = {0: fakecam.Device()}
    cameras = list_cameras(fakecam.factory(devices), _sysfs=str(tmp_path), _platform="linux")
    assert cameras == [CameraInfo(0, "HD Pro Webcam C920", False), CameraInfo(4, "vcam-me", True),
                       CameraInfo(10, "Integrated Camera", False)]
    assert devices[0].opens == 0  # a camera busy in a call is listed all the same


def test_linux_without_video_devices_lists_none(tmp_path):
    (tmp_path / "class").mkdir()
    assert list_cameras(_sysfs=str(tmp_path), _platform="linux") == []


def test_a_node_without_a_name_is_still_listed(tmp_path):
    _sysfs_node(tmp_path, "platform/cam", 2, "")
    assert list_cameras(_sysfs=str(tmp_path), _platform="linux") == [CameraInfo(2, "Camera 2", False)]


@pytest.mark.parametrize("platform", ["win32", "darwin", "linux"])
def test_elsewhere_or_without_sysfs_the_factory_probes_indices(tmp_path, fakecam, platform):
    devices = {0: fakecam.Device(), 3: fakecam.Device()}
    devices[3].present = False  # unplugged: does not open
    devices[5] = fakecam.Device()
    sysfs = tmp_path / "not-mounted"
    cameras = list_cameras(fakecam.factory(devices), _sysfs=str(sysfs), _platform=platform)
    assert cameras == [CameraInfo(0, "Camera 0"), CameraInfo(5, "Camera 5")]
    assert all(d.releases == d.opens for d in devices.values())  # each probe let go of its device


def test_real_list_cameras_on_this_machine():
    cameras = list_cameras()
    assert all(isinstance(c, CameraInfo) and c.index >= 0 and c.name for c in cameras)
    assert [c.index for c in cameras] == sorted({c.index for c in cameras})
