"""The virtual-camera sink drives pyvirtualcam's real ``Camera`` through a registered test backend."""

from __future__ import annotations

import numpy as np
import pytest
import pyvirtualcam

from vcam_me.config import OutputOptions
from vcam_me.errors import OutputError
from vcam_me.output import VirtualCameraSink, driver_hint, virtual_camera_status
from vcam_me.output import virtualcam as vc
from vcam_me.types import RenderedFrame

from ..helpers import KeepingBackend, registered_backend

TEST_BACKEND = "vcam-me-test"
BROKEN_BACKEND = "vcam-me-test-broken"


class RecordingBackend(KeepingBackend):
    """Keeps what it is sent, and checks it gets what the Backend protocol promises: a flat,
    C-contiguous uint8 buffer (pyvirtualcam's Camera makes it so)."""

    def send(self, frame):
        assert frame.ndim == 1 and frame.flags.c_contiguous and frame.dtype == np.uint8
        super().send(frame)


class BrokenBackend:
    def __init__(self, **kw):
        raise RuntimeError("device not found\n(second line of driver noise)")


@pytest.fixture(autouse=True)
def _backends():
    with registered_backend(TEST_BACKEND, RecordingBackend), registered_backend(BROKEN_BACKEND, BrokenBackend):
        yield


def _frame(i: int, size=(64, 48)) -> RenderedFrame:
    w, h = size
    image = np.zeros((h, w, 3), np.uint8)
    image[..., 0] = i
    image[..., 1] = np.arange(w, dtype=np.uint8)[None, :]
    image[..., 2] = np.arange(h, dtype=np.uint8)[:, None]
    return RenderedFrame(image, 1000 + i * 16)


def test_frames_arrive_intact_and_in_order():
    options = OutputOptions(virtualcam_backend=TEST_BACKEND)
    sent = [_frame(i) for i in range(20)]
    with VirtualCameraSink.open((64, 48), 60, options) as sink:
        assert sink.backend == TEST_BACKEND
        assert sink.device == "test camera"
        for frame in sent:
            sink.send(frame)
        assert sink.frames_sent == 20
    (backend,) = RecordingBackend.instances
    assert (backend.width, backend.height, backend.fps) == (64, 48, 60)
    assert backend.fourcc == pyvirtualcam.util.encode_fourcc(pyvirtualcam.PixelFormat.RGB.value)
    assert len(backend.frames) == 20
    for got, want in zip(backend.frames, sent):
        np.testing.assert_array_equal(got.reshape(48, 64, 3), want.image)
    assert backend.closed == 1


def test_close_is_idempotent_and_send_after_close_fails():
    sink = VirtualCameraSink.open((64, 48), 30, OutputOptions(virtualcam_backend=TEST_BACKEND))
    sink.close()
    sink.close()
    assert RecordingBackend.instances[0].closed == 1
    with pytest.raises(OutputError, match="closed"):
        sink.send(_frame(0))


def test_device_option_is_passed_through():
    options = OutputOptions(virtualcam_backend=TEST_BACKEND, virtualcam_device="/dev/video42")
    with VirtualCameraSink.open((64, 48), 30, options) as sink:
        assert sink.device == "/dev/video42"


def test_non_contiguous_frame_is_sent_correctly():
    big = _frame(7, (128, 48)).image
    view = big[:, ::2]  # strided view: pyvirtualcam makes it contiguous
    with VirtualCameraSink.open((64, 48), 30, OutputOptions(virtualcam_backend=TEST_BACKEND)) as sink:
        sink.send(RenderedFrame(view, 0))
    np.testing.assert_array_equal(RecordingBackend.instances[0].frames[0].reshape(48, 64, 3), view)


@pytest.mark.parametrize("image, error", [
    (np.zeros((48, 64, 3), np.float32), TypeError),
    (np.zeros((48, 64), np.uint8), ValueError),
    (np.zeros((50, 64, 3), np.uint8), ValueError),
])
def test_wrong_frames_are_refused(image, error):
    with VirtualCameraSink.open((64, 48), 30, OutputOptions(virtualcam_backend=TEST_BACKEND)) as sink, \
            pytest.raises(error):
        sink.send(RenderedFrame(image, 0))


@pytest.mark.parametrize("system, driver", [
    ("Linux", "v4l2loopback"), ("Windows", "OBS Studio 26"), ("Darwin", "OBS Studio 26.1"),
])
def test_missing_driver_is_one_line_naming_the_driver(monkeypatch, system, driver):
    monkeypatch.setattr(vc, "_system", lambda: system)
    monkeypatch.setitem(vc.DEFAULT_BACKENDS, system, (BROKEN_BACKEND,))
    with pytest.raises(OutputError) as info:
        VirtualCameraSink.open((64, 48), 30, OutputOptions())
    message = str(info.value)
    assert "\n" not in message
    assert driver in message
    assert "device not found" in message  # the backend's own reason, flattened
    if system == "Linux":
        assert "sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=vcam-me" in message
    if system == "Windows":
        assert "UnityCapture" in message


def test_auto_never_tries_test_backends(monkeypatch):
    monkeypatch.setattr(vc, "_system", lambda: "Linux")
    monkeypatch.setitem(vc.DEFAULT_BACKENDS, "Linux", (BROKEN_BACKEND,))
    with pytest.raises(OutputError):
        VirtualCameraSink.open((64, 48), 30, OutputOptions())
    assert RecordingBackend.instances == []  # registered, but not a system driver


def test_unknown_backend_names_what_is_available():
    with pytest.raises(OutputError, match="'nope' is not available") as info:
        VirtualCameraSink.open((64, 48), 30, OutputOptions(virtualcam_backend="nope"))
    assert TEST_BACKEND in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.skipif(vc._system() != "Linux", reason="the real driver probe below is Linux's")
def test_real_default_backend_without_driver_says_what_to_install():
    ok, _ = virtual_camera_status(OutputOptions())
    if ok:
        pytest.skip("a v4l2loopback device is present on this machine")
    with pytest.raises(OutputError) as info:
        VirtualCameraSink.open((64, 48), 30, OutputOptions())
    assert "v4l2loopback" in str(info.value) and "\n" not in str(info.value)


# -- status without opening ----------------------------------------------------------------
def _fake_sysfs(tmp_path, *, loaded=True, devices=("video10",)):
    sysfs = tmp_path / "sys"
    dev = tmp_path / "dev"
    dev.mkdir()
    if loaded:
        (sysfs / "module" / "v4l2loopback").mkdir(parents=True)
    v4l = sysfs / "devices" / "virtual" / "video4linux"
    v4l.mkdir(parents=True)
    for name in devices:
        (v4l / name).mkdir()
        (v4l / name / "name").write_text("Dummy video device (0x0000)\n")
        (dev / name).write_text("")
    return str(sysfs), str(dev)


def test_status_linux_module_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(vc, "_system", lambda: "Linux")
    sysfs, dev = _fake_sysfs(tmp_path, loaded=False)
    ok, message = virtual_camera_status(OutputOptions(), _sysfs=sysfs, _dev=dev)
    assert not ok and "v4l2loopback" in message and "modprobe" in message and "\n" not in message


def test_status_linux_no_devices(monkeypatch, tmp_path):
    monkeypatch.setattr(vc, "_system", lambda: "Linux")
    sysfs, dev = _fake_sysfs(tmp_path, devices=())
    ok, message = virtual_camera_status(OutputOptions(), _sysfs=sysfs, _dev=dev)
    assert not ok and "no devices" in message


def test_status_linux_device_found(monkeypatch, tmp_path):
    monkeypatch.setattr(vc, "_system", lambda: "Linux")
    sysfs, dev = _fake_sysfs(tmp_path)
    ok, message = virtual_camera_status(OutputOptions(), _sysfs=sysfs, _dev=dev)
    assert ok and "video10" in message and "Dummy video device" in message
    ok, message = virtual_camera_status(OutputOptions(virtualcam_device="/dev/video3"), _sysfs=sysfs, _dev=dev)
    assert not ok and "/dev/video3" in message


def test_status_reports_registered_test_backend():
    ok, message = virtual_camera_status(OutputOptions(virtualcam_backend=TEST_BACKEND))
    assert ok and TEST_BACKEND in message
    ok, message = virtual_camera_status(OutputOptions(virtualcam_backend="nope"))
    assert not ok


@pytest.mark.parametrize("system", ["Linux", "Windows", "Darwin", "Plan9"])
def test_driver_hint_is_one_line(system):
    hint = driver_hint(system)
    assert hint and "\n" not in hint
