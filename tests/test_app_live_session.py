"""The desktop app's live session (app.LiveSession) on the real stages: the bundled clip
through MediaPipe into the avatar, out through pyvirtualcam's own Camera class with a test
backend, steered while it streams."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from vcam_me.app import LiveSession

from .helpers import (
    KeepingBackend,
    clip_session_config,
    mirrored_avatar,
    registered_backend,
    wait_until,
)

pytestmark = pytest.mark.slow


class Recorder:
    """The session's listener: what a tray would hear."""

    def __init__(self):
        self.statuses, self.notices, self.errors, self.frames = [], [], [], 0

    def status(self, name):
        self.statuses.append(name)

    def notice(self, title, text):
        self.notices.append((title, text))

    def error(self, text):
        self.errors.append(text)

    def frame(self, frame, state, stats):
        self.frames += 1


def second_avatar(folder, days=365):
    """An avatar of the user's own (the sample photo mirrored) with an attested licence."""
    return mirrored_avatar(folder, folder / "mirrored", days=days)


def session_config(clip, backend="vcam-me-session-test"):
    return clip_session_config(clip, virtualcam_backend=backend)


@pytest.fixture
def camera_backend():
    with registered_backend("vcam-me-session-test", KeepingBackend) as backend:
        yield backend


def test_switching_avatar_changes_the_frames_within_half_a_second_on_the_same_camera(
        private_user_dirs, bundled_clip_cut, camera_backend):
    avatar = second_avatar(private_user_dirs)
    listener = Recorder()
    session = LiveSession(session_config(bundled_clip_cut(60, 24)), listener, hotkeys=False, microphone=False)
    session.start()
    try:
        assert wait_until(lambda: camera_backend.instances and len(camera_backend.instances[0].frames) >= 20), (
            listener.statuses, listener.errors)
        camera = camera_backend.instances[0]
        asked = time.monotonic()
        future = session.switch_avatar(avatar)
        assert future.result(timeout=30) == "mirrored"
        handed = time.monotonic()  # the new renderer is with the pipeline from here on
        assert wait_until(lambda: camera.sent_at[-1] > handed + 1.0)
    finally:
        session.stop()
    assert listener.errors == [] and listener.statuses == ["starting", "streaming", "stopped"]
    assert camera_backend.instances == [camera]  # the virtual camera was never reopened
    times = np.array(camera.sent_at)
    images = [img.astype(np.int16) for img in camera.frames]
    before = [img for t, img in zip(times, images) if t < asked]  # surely the old avatar
    after = [img for t, img in zip(times, images) if t > handed + 0.5]
    # frame-to-frame change while one avatar streams, and the jump between the two avatars
    motion = max(np.abs(a - b).mean() for a, b in zip(before[-10:], before[-9:]))
    jump = np.abs(after[0] - before[-1]).mean()
    assert jump > 4 * motion + 2, (jump, motion)
    # every frame sent 0.5 s after the hand-over shows the new avatar: closer to it than to the old one
    old, new = before[-1], after[-1]
    for img in after:
        assert np.abs(img - new).mean() < np.abs(img - old).mean()


def test_a_missing_virtual_camera_is_one_line_and_a_notice(private_user_dirs, bundled_clip_cut):
    listener = Recorder()
    session = LiveSession(session_config(bundled_clip_cut(60, 24), backend="no-such-backend"), listener,
                          hotkeys=False, microphone=False)
    session.start()
    assert wait_until(lambda: "error" in listener.statuses)
    session.stop()
    assert len(listener.errors) == 1 and "\n" not in listener.errors[0] and "virtual camera" in listener.errors[0]
    assert listener.notices and listener.notices[0][0] == "Virtual camera missing"


class _Webcam:
    """The part of cv2.VideoCapture a CameraSource uses, for a webcam that can be unplugged."""

    plugged = True

    def __init__(self, index):
        self.open = type(self).plugged

    def isOpened(self):
        return self.open

    def set(self, prop, value):
        return True

    def get(self, prop):
        import cv2

        return {cv2.CAP_PROP_FRAME_WIDTH: 64, cv2.CAP_PROP_FRAME_HEIGHT: 48, cv2.CAP_PROP_FPS: 30.0}.get(prop, 0.0)

    def read(self):
        time.sleep(1 / 30)
        if not (self.open and type(self).plugged):
            return False, None
        image = np.full((48, 64, 3), 90, np.uint8)
        image[0, 0, 0] = int(time.monotonic() * 1000) % 256  # a real sensor never repeats a picture
        return True, image

    def release(self):
        self.open = False


def test_a_lost_camera_is_a_notice_and_the_stream_goes_on(private_user_dirs, bundled_clip_cut):
    """The real CameraSource (reconnect logic and all) over a fake device: unplugged, the user
    is told and the avatar keeps streaming (idle); plugged back, told again."""
    from vcam_me.capture import CameraSource
    from vcam_me.output import MemorySink

    cfg = session_config(bundled_clip_cut(60, 24))
    cfg = dataclasses.replace(cfg, capture=dataclasses.replace(cfg.capture, source="camera", reconnect_interval_s=0.1))
    sink, listener = MemorySink(max_frames=10), Recorder()
    _Webcam.plugged = True
    session = LiveSession(cfg, listener, sinks=[sink], hotkeys=False, microphone=False,
                          open_source=lambda options: CameraSource.open(options, capture_factory=_Webcam))
    session.start()
    try:
        assert wait_until(lambda: sink.count >= 10), listener.errors
        _Webcam.plugged = False
        assert wait_until(lambda: any(t == "Camera lost" for t, _ in listener.notices))
        sent = sink.count
        assert wait_until(lambda: sink.count >= sent + 10)  # no frozen stream: the avatar idles on
        _Webcam.plugged = True
        assert wait_until(lambda: any(t == "Camera back" for t, _ in listener.notices))
    finally:
        session.stop()
    assert [t for t, _ in listener.notices] == ["Camera lost", "Camera back"] and listener.errors == []


def test_consent_that_expires_within_a_week_is_a_notice(private_user_dirs, bundled_clip_cut, camera_backend):
    avatar = second_avatar(private_user_dirs, days=3)
    listener = Recorder()
    session = LiveSession(session_config(bundled_clip_cut(60, 24)), listener, avatar=avatar, hotkeys=False,
                          microphone=False)
    session.start()
    try:
        assert wait_until(lambda: listener.frames >= 5), listener.errors
    finally:
        session.stop()
    assert [t for t, _ in listener.notices] == ["Consent expiring"]
    assert "expires in 3 days" in listener.notices[0][1] or "expires in 2 days" in listener.notices[0][1]
