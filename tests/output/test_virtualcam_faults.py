"""A virtual camera that vanishes or is busy: frames are dropped, the user is told, the device
is reopened on a worker thread, and everything else keeps streaming. The device is a
pyvirtualcam test backend driven through pyvirtualcam's own ``Camera`` class."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from vcam_me.config import CaptureOptions, OutputOptions
from vcam_me.errors import OutputError
from vcam_me.output import FanOutSink, MemorySink, RetryingVirtualCamera
from vcam_me.output import virtualcam as vc
from vcam_me.types import ExpressionState, FaceObservation, RenderedFrame

from ..helpers import FlakyBackend, registered_backend, wait_until

BACKEND = "vcam-me-flaky"
RETRY_S = 0.05


class StatusLog:
    def __init__(self):
        self.events: list[tuple[bool, str]] = []

    def __call__(self, available, message):
        self.events.append((available, message))


@pytest.fixture(autouse=True)
def flaky_backend():
    with registered_backend(BACKEND, FlakyBackend) as backend:
        yield backend


def options(retry_s=RETRY_S) -> OutputOptions:
    return OutputOptions(virtualcam_backend=BACKEND, virtualcam_retry_s=retry_s)


def frame(i: int, size=(32, 24)) -> RenderedFrame:
    return RenderedFrame(np.full((size[1], size[0], 3), i % 256, np.uint8), i * 16)


def test_a_vanished_device_is_reported_once_dropped_and_reopened():
    status = StatusLog()
    camera = RetryingVirtualCamera.open((32, 24), 30, options(), on_status=status)
    with camera:
        for i in range(5):
            camera.send(frame(i))
        first = FlakyBackend.instances[0]
        assert len(first.frames) == 5 and camera.available
        FlakyBackend.present = False
        for i in range(5, 10):
            camera.send(frame(i))  # the first raises inside the backend; none reaches the caller
        assert not camera.available and camera.frames_dropped == 5
        assert status.events == [(False, "virtual camera lost: [Errno 19] No such device; retrying every 0.05 s")]
        assert wait_until(lambda: first.closed)  # the dead device is let go (on the worker)
        assert wait_until(lambda: camera.reopen_attempts >= 2)  # it keeps trying while the device is gone
        assert not camera.available
        FlakyBackend.present = True
        assert wait_until(lambda: camera.available)
        camera.send(frame(99))
        assert status.events[1:] == [(True, "virtual camera back")]  # said once a frame got through
        second = FlakyBackend.instances[-1]
        assert second is not first and int(second.frames[-1][0, 0, 0]) == 99
    assert second.closed and camera.outages == 1
    # the first open happens in the factory; reopening only ever on the worker thread
    assert FlakyBackend.opened_on[0] == threading.current_thread().name
    assert set(FlakyBackend.opened_on[1:]) == {"vcam-virtualcam-retry"}


def test_a_busy_device_at_start_streams_anyway_and_is_picked_up_when_freed():
    FlakyBackend.busy = True
    status = StatusLog()
    with RetryingVirtualCamera.open((32, 24), 30, options(), on_status=status) as camera:
        assert not camera.available
        (lost,) = status.events
        assert lost[0] is False and "in use by another program" in lost[1] and "\n" not in lost[1]
        camera.send(frame(1))
        assert camera.frames_dropped == 1
        FlakyBackend.busy = False
        assert wait_until(lambda: camera.available)
        camera.send(frame(2))
    assert [e[0] for e in status.events] == [False, True]
    assert len(FlakyBackend.instances) == 1 and len(FlakyBackend.instances[0].frames) == 1


def test_a_device_that_reopens_but_refuses_frames_is_one_outage(monkeypatch):
    status = StatusLog()
    with RetryingVirtualCamera.open((32, 24), 30, options(), on_status=status) as camera:
        FlakyBackend.present = False
        camera.send(frame(0))
        for _ in range(3):  # it opens again, but the first frame fails again
            monkeypatch.setattr(FlakyBackend, "present", True)
            assert wait_until(lambda: camera.available)
            monkeypatch.setattr(FlakyBackend, "present", False)
            camera.send(frame(1))
            assert not camera.available
        FlakyBackend.present = True
        assert wait_until(lambda: camera.available)
        camera.send(frame(2))
    assert [available for available, _ in status.events] == [False, True] and camera.outages == 1
    assert len(FlakyBackend.instances) == 5


def test_wrong_frames_are_still_refused_while_the_device_is_gone():
    FlakyBackend.busy = True
    with RetryingVirtualCamera.open((32, 24), 30, options(retry_s=60)) as camera:
        with pytest.raises(ValueError, match="frame size"):
            camera.send(frame(0, size=(16, 12)))
        with pytest.raises(TypeError):
            camera.send(RenderedFrame(np.zeros((24, 32, 3), np.float32), 0))


def test_closing_during_an_outage_stops_retrying():
    FlakyBackend.busy = True
    camera = RetryingVirtualCamera.open((32, 24), 30, options())
    assert wait_until(lambda: camera.reopen_attempts >= 1)
    camera.close()
    attempts = camera.reopen_attempts
    FlakyBackend.busy = False
    time.sleep(4 * RETRY_S)
    assert camera.reopen_attempts == attempts and FlakyBackend.instances == []
    camera.close()  # idempotent


def test_an_unknown_backend_is_a_setup_error_not_a_retry():
    with pytest.raises(OutputError, match="'nope' is not available"):
        RetryingVirtualCamera.open((32, 24), 30, OutputOptions(virtualcam_backend="nope"))


def test_no_driver_installed_fails_at_once_with_what_to_install(monkeypatch):
    class NoDriver:
        def __init__(self, **kw):
            raise RuntimeError("no v4l2loopback device found")

    monkeypatch.setattr(vc, "_system", lambda: "Linux")
    monkeypatch.setitem(vc.DEFAULT_BACKENDS, "Linux", ("vcam-me-nodriver",))
    monkeypatch.setattr(vc, "virtual_camera_status", lambda options: (False, "v4l2loopback is not loaded"))
    with registered_backend("vcam-me-nodriver", NoDriver), \
            pytest.raises(OutputError, match="sudo modprobe v4l2loopback"):
        RetryingVirtualCamera.open((32, 24), 30, OutputOptions())


def test_a_bad_retry_interval_is_refused():
    with pytest.raises(ValueError, match="retry interval"):
        RetryingVirtualCamera(lambda: None, (32, 24), 0)


def test_a_failing_status_listener_does_not_stop_the_stream():
    def broken(available, message):
        raise RuntimeError("listener bug")

    with RetryingVirtualCamera.open((32, 24), 30, options(), on_status=broken) as camera:
        FlakyBackend.present = False
        camera.send(frame(0))
        FlakyBackend.present = True
        assert wait_until(lambda: camera.available)


# -- the whole live pipeline on a real video --------------------------------------------------
class _NoFace:
    def track(self, f):
        return FaceObservation.empty(f.timestamp_ms, (f.image.shape[1], f.image.shape[0]))


class _Expression:
    def update(self, obs):
        pass

    def state_at(self, t_ms):
        return ExpressionState.neutral(t_ms)


class _Renderer:
    """Draws a counter into the picture so the test can tell frames apart."""

    def __init__(self, size):
        self.size, self.n = size, 0

    def render(self, state):
        self.n += 1
        return np.full((self.size[1], self.size[0], 3), self.n % 256, np.uint8)


def test_the_live_pipeline_keeps_streaming_to_other_sinks_through_an_outage(tmp_path, write_video):
    from vcam_me.capture import open_source
    from vcam_me.consent import LabelStamper
    from vcam_me.pipeline import LivePipeline

    size = (160, 96)
    rng = np.random.default_rng(3)
    clip = write_video((rng.integers(0, 255, (96, 128, 3), np.uint8) for _ in range(24)), tmp_path / "clip.mp4")
    status = StatusLog()
    memory = MemorySink(max_frames=4)
    camera = RetryingVirtualCamera.open(size, 30, options(retry_s=0.1), on_status=status)
    stamper = LabelStamper.create(size, consent_code="7KQ4M2XD")
    with open_source(CaptureOptions(source=str(clip), loop=True, pace="realtime")) as source, \
            FanOutSink([camera, memory]) as sink:
        pipeline = LivePipeline(source, _NoFace(), _Expression(), _Renderer(size), stamper, sink, 30)
        failure: list[BaseException] = []

        def run():
            try:
                pipeline.run(duration_s=30)
            except BaseException as err:  # noqa: BLE001 - handed to the test thread
                failure.append(err)

        runner = threading.Thread(target=run)
        runner.start()
        try:
            first = FlakyBackend.instances[0]
            assert wait_until(lambda: len(first.frames) >= 10)
            FlakyBackend.present = False  # unplugged mid-stream
            assert wait_until(lambda: len(status.events) == 1)
            during = memory.count
            assert wait_until(lambda: memory.count >= during + 15)  # the other sink never stopped
            assert len(FlakyBackend.instances) == 1 and not camera.available
            FlakyBackend.present = True
            assert wait_until(lambda: len(FlakyBackend.instances) == 2 and len(FlakyBackend.instances[1].frames) >= 10)
        finally:
            pipeline.stop()
            runner.join(10)
    assert failure == [] and not runner.is_alive()
    assert [available for available, _ in status.events] == [False, True]
    second = FlakyBackend.instances[1]
    # every output frame went to the first device, was dropped during the outage, or went to the second
    assert camera.frames_dropped >= 15
    assert pipeline.stats.output_frames == len(first.frames) + camera.frames_dropped + len(second.frames)
    assert second.frames[-1].shape == (96, 160, 3)  # labelled avatar frames through pyvirtualcam.Camera


def test_a_busy_system_device_is_not_told_to_install_a_driver(monkeypatch):
    """The driver is there (doctor's check says so) and only the device is taken: the message
    says what the device said, not how to install v4l2loopback."""
    FlakyBackend.busy = True
    monkeypatch.setattr(vc, "_system", lambda: "Linux")
    monkeypatch.setitem(vc.DEFAULT_BACKENDS, "Linux", (BACKEND,))
    monkeypatch.setattr(vc, "virtual_camera_status", lambda options: (True, "v4l2loopback: /dev/video9"))
    status = StatusLog()
    with RetryingVirtualCamera.open((32, 24), 30, OutputOptions(virtualcam_retry_s=60), on_status=status):
        pass
    (lost,) = status.events
    assert "in use by another program" in lost[1] and "modprobe" not in lost[1] and "install" not in lost[1]
