"""Output faults in the live session (app.LiveSession), on the real stages: the bundled clip
through MediaPipe into the avatar, out through pyvirtualcam's own Camera class to a test
device that vanishes mid-call, or is busy at start, and comes back."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import ClassVar

import numpy as np
import pytest
import pyvirtualcam

from vcam_me.app import LiveSession
from vcam_me.config import load_config
from vcam_me.ui.bridge import PipelineBridge, StreamStatus

pytestmark = pytest.mark.slow

BACKEND = "vcam-me-session-flaky"


class FlakyDevice:
    """A device that can be busy (opening raises), vanish (sending raises) and come back."""

    busy = False
    present = True
    instances: ClassVar[list] = []

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        if type(self).busy:
            raise RuntimeError("device is in use by another program")
        if not type(self).present:
            raise RuntimeError("no such device")
        self.shape = (height, width, 3)
        self.frames = 0
        type(self).instances.append(self)

    def send(self, frame):
        if not type(self).present:
            raise OSError(19, "No such device")
        assert frame.size == np.prod(self.shape)
        self.frames += 1

    def close(self):
        pass

    def device(self):
        return "flaky session camera"

    def native_fourcc(self):
        return None


class Listener(PipelineBridge):
    """What the tray hears (the real bridge), plus every status name and notice in order."""

    def __init__(self):
        super().__init__()
        self.names, self.notices, self.errors, self.frames = [], [], [], 0
        self._count_lock = threading.Lock()

    def status(self, name):
        self.names.append(name)
        super().status(name)

    def notice(self, title, text):
        self.notices.append((title, text))
        super().notice(title, text)

    def error(self, text):
        self.errors.append(text)
        super().error(text)

    def frame(self, frame, state, stats=None):
        with self._count_lock:
            self.frames += 1
        super().frame(frame, state, stats)


@pytest.fixture
def flaky():
    pyvirtualcam.register_backend(BACKEND, FlakyDevice)
    FlakyDevice.busy, FlakyDevice.present, FlakyDevice.instances = False, True, []
    yield FlakyDevice
    pyvirtualcam.camera.BACKENDS.pop(BACKEND, None)


def config(clip):
    cfg = load_config(use_user_config=False)
    if hasattr(cfg.avatar, "appearance"):  # the mesh warp alone: outputs are under test, not the network
        cfg = dataclasses.replace(cfg, avatar=dataclasses.replace(cfg.avatar, appearance="warp"))
    return dataclasses.replace(
        cfg,
        capture=dataclasses.replace(cfg.capture, source=str(clip), loop=True, pace="realtime"),
        output=dataclasses.replace(cfg.output, width=320, height=180, fps=30, virtualcam_backend=BACKEND,
                                   virtualcam_retry_s=0.2),
    )


def wait_until(condition, timeout_s=30.0):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_a_vanished_virtual_camera_is_told_retried_and_the_stream_goes_on(private_user_dirs, bundled_clip_cut, flaky):
    listener = Listener()
    session = LiveSession(config(bundled_clip_cut(60, 24)), listener, hotkeys=False, microphone=False)
    session.start()
    try:
        assert wait_until(lambda: flaky.instances and flaky.instances[0].frames >= 10), listener.errors
        flaky.present = False  # the device goes away mid-call
        assert wait_until(lambda: "output_lost" in listener.names)
        assert wait_until(lambda: listener.take() is not None and listener.stream_status is StreamStatus.NO_VIRTUAL_CAMERA)
        shown = listener.frames
        assert wait_until(lambda: listener.frames >= shown + 15)  # the preview keeps getting the avatar
        assert len(flaky.instances) == 1 and session.running
        flaky.present = True
        assert wait_until(lambda: len(flaky.instances) == 2 and flaky.instances[1].frames >= 10)
        listener.take()
        assert listener.stream_status in (StreamStatus.LIVE, StreamStatus.IDLE)
    finally:
        session.stop()
    assert listener.errors == []
    assert listener.names == ["starting", "streaming", "output_lost", "output_back", "stopped"]
    assert [title for title, _ in listener.notices] == ["Virtual camera lost", "Virtual camera back"]
    lost = listener.notices[0][1]
    assert lost.startswith("Virtual camera lost: [Errno 19] No such device; retrying every 0.2 s.") and "\n" not in lost


def test_a_busy_virtual_camera_at_start_does_not_stop_the_session(private_user_dirs, bundled_clip_cut, flaky):
    flaky.busy = True
    listener = Listener()
    session = LiveSession(config(bundled_clip_cut(60, 24)), listener, hotkeys=False, microphone=False)
    session.start()
    try:
        assert wait_until(lambda: listener.frames >= 10), listener.errors
        listener.take()
        assert listener.stream_status is StreamStatus.NO_VIRTUAL_CAMERA and flaky.instances == []
        flaky.busy = False  # the other program lets go of the device
        assert wait_until(lambda: flaky.instances and flaky.instances[0].frames >= 10)
    finally:
        session.stop()
    assert listener.errors == []
    assert listener.names == ["starting", "output_lost", "streaming", "output_back", "stopped"]
    assert "in use by another program" in listener.notices[0][1]
