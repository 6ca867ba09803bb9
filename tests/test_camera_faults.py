"""Camera faults injected under a live session (issue 7, point 1): the real CameraSource
(its reconnect and freeze handling) reads a fake device that plays a real face video and
can be unplugged, taken by another app, turned black, frozen, or switched to another
resolution. Throughout, the outputs keep getting whole avatar frames (the idle animation,
never black), the user is told, and tracking comes back by itself when the camera does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time

import av
import cv2
import numpy as np
import pytest

from vcam_me.app import BUNDLED_DRIVING, LiveSession
from vcam_me.capture import CameraSource
from vcam_me.config import load_config
from vcam_me.output import MemorySink

from .helpers import wait_until

pytestmark = pytest.mark.slow

FPS = 30  # output rate: the faults are the subject here, not the speed


class FaultyWebcam:
    """A webcam that plays the bundled real face clip (BGR, looping, paced at its rate) and
    fails on demand. ``fault`` is one of None, "unplugged", "busy", "black", "frozen";
    ``size`` rescales the picture (a resolution change).

    An unplugged or taken device kills the handles open at that moment for good, as the
    real thing does: reading resumes only on a handle opened after the fault ends.
    """

    def __init__(self, frames: list[np.ndarray], rate: float) -> None:
        self.frames = frames
        self.period_s = 1.0 / rate
        self.fault: str | None = None
        self.size: tuple[int, int] | None = None
        self.generation = 0  # bumped when handles die
        self.opens = 0
        self.shown = 0
        self.lock = threading.Lock()

    def set_fault(self, fault: str | None) -> None:
        with self.lock:
            if fault in ("unplugged", "busy"):
                self.generation += 1
            self.fault = fault

    def open(self, index: int) -> FaultyWebcam.Handle:
        return FaultyWebcam.Handle(self)

    class Handle:  # the part of cv2.VideoCapture that CameraSource uses
        def __init__(self, cam: FaultyWebcam) -> None:
            self.cam = cam
            with cam.lock:
                self.generation = cam.generation
                self.opened = cam.fault != "unplugged"  # a busy camera opens but gives nothing
                cam.opens += self.opened
            self.next_at = time.monotonic()
            self.last: np.ndarray | None = None

        def isOpened(self):
            return self.opened

        def set(self, prop, value):
            return True

        def get(self, prop):
            h, w = self.cam.frames[0].shape[:2]
            return {cv2.CAP_PROP_FRAME_WIDTH: w, cv2.CAP_PROP_FRAME_HEIGHT: h, cv2.CAP_PROP_FPS: 24.0}.get(prop, 0.0)

        def read(self):
            cam = self.cam
            self.next_at = max(self.next_at + cam.period_s, time.monotonic() - cam.period_s)
            time.sleep(max(0.0, self.next_at - time.monotonic()))
            with cam.lock:
                dead = not self.opened or self.generation != cam.generation or cam.fault in ("unplugged", "busy")
                fault, size = cam.fault, cam.size
                image = cam.frames[cam.shown % len(cam.frames)]
                cam.shown += 1
            if dead:
                return False, None
            if fault == "frozen" and self.last is not None:
                return True, self.last.copy()
            if fault == "black":
                image = np.zeros_like(image)
            if size is not None:
                image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            self.last = image
            return True, image.copy()

        def release(self):
            self.opened = False


@pytest.fixture(scope="module")
def webcam_frames():
    """The first 4 s of the bundled real clip (BGR), where the face is in view."""
    with av.open(str(BUNDLED_DRIVING)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate)
        frames = [f.to_ndarray(format="bgr24") for _, f in zip(range(96), container.decode(stream))]
    return frames, rate


class Listener:
    """What a tray would hear, with one row per output frame: when, face or idle, and the picture."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rows: list[tuple[float, bool, float, np.ndarray]] = []
        self.notices: list[str] = []
        self.errors: list[str] = []
        self.statuses: list[str] = []

    def status(self, name):
        self.statuses.append(name)

    def notice(self, title, text):
        self.notices.append(title)

    def error(self, text):
        self.errors.append(text)

    def frame(self, frame, state, stats):
        idle = float(np.sum(state.components.get("idle", 0.0)))
        small = cv2.resize(frame.image, (64, 36), interpolation=cv2.INTER_AREA)
        with self.lock:
            self.rows.append((time.monotonic(), bool(state.face_present), idle, small))

    def window(self, start: float, end: float):
        with self.lock:
            return [r for r in self.rows if start <= r[0] < end]


@contextlib.contextmanager
def _live_session(webcam: FaultyWebcam, *, wait_for_face: bool = True):
    """A live session on ``webcam`` through the real CameraSource, started (and, when
    ``wait_for_face``, tracking the face) before the block runs and stopped when it ends.
    Yields the listener, the memory sink and the list of camera sources opened."""
    cfg = load_config(use_user_config=False)
    cfg = dataclasses.replace(
        cfg,
        avatar=dataclasses.replace(cfg.avatar, appearance="warp"),
        capture=dataclasses.replace(cfg.capture, source="camera", reconnect_interval_s=0.2),
        output=dataclasses.replace(cfg.output, width=320, height=180, fps=FPS),
    )
    listener, sink = Listener(), MemorySink(max_frames=4)
    opened: list[CameraSource] = []

    def open_camera(options):
        opened.append(CameraSource.open(options, capture_factory=webcam.open, wait=True))  # as the desktop app does
        return opened[0]

    session = LiveSession(cfg, listener, sinks=[sink], hotkeys=False, microphone=False, open_source=open_camera)
    session.start()
    try:
        if wait_for_face:
            started = time.monotonic()
            assert wait_until(lambda: _face_tracked_since(listener, started)), (listener.statuses, listener.errors)
        yield listener, sink, opened
    finally:
        session.stop()


def _face_tracked_since(listener, t0):
    rows = listener.window(t0, float("inf"))
    return len(rows) >= 5 and all(face for _, face, _, _ in rows[-5:])


def _check_outage(listener, start, end, *, fault):
    """During the fault the stream went on, whole and alive: frames at the output rate, none
    black, the face handed to the idle animation, and the picture still moving."""
    rows = listener.window(start, end)
    assert len(rows) >= 0.6 * FPS * (end - start), f"{fault}: only {len(rows)} frames in {end - start:.1f} s"
    assert min(img.mean() for _, _, _, img in rows) > 25, f"{fault}: a black frame reached the output"
    settled = [r for r in rows if r[0] > start + 1.6]  # stale after 0.5 s (+1 s to count as frozen) + handover
    assert settled and not any(face for _, face, _, _ in settled), f"{fault}: the lost face was still drawn as live"
    assert all(idle > 0 for _, _, idle, _ in settled), f"{fault}: the idle animation did not take over"
    images = np.stack([img for *_, img in settled]).astype(np.int16)
    assert np.abs(np.diff(images, axis=0)).max() > 0, f"{fault}: the output froze"


@pytest.mark.parametrize("fault, notices", [
    ("unplugged", ["Camera lost", "Camera back"]),
    ("busy", ["Camera lost", "Camera back"]),
    ("black", ["Camera shows black", "Camera picture back"]),
    ("frozen", ["Camera frozen", "Camera moving again"]),
])
def test_the_stream_goes_on_through_a_camera_fault_and_tracking_comes_back(
        private_user_dirs, webcam_frames, fault, notices):
    webcam = FaultyWebcam(*webcam_frames)
    with _live_session(webcam) as (listener, _, opened):
        fault_at = time.monotonic()
        webcam.set_fault(fault)
        time.sleep(3.0)
        webcam.set_fault(None)
        back_at = time.monotonic()
        assert wait_until(lambda: _face_tracked_since(listener, back_at), timeout_s=10), f"{fault}: tracking never came back"
    assert listener.errors == [] and listener.statuses == ["starting", "streaming", "stopped"]
    _check_outage(listener, fault_at, back_at, fault=fault)
    assert listener.notices == notices
    camera = opened[0]
    if fault in ("unplugged", "busy"):
        assert camera.reconnects >= 1 and webcam.opens >= 2
    if fault == "frozen":
        assert camera.dropped_repeats > 0


def test_a_resolution_change_mid_stream_is_followed(private_user_dirs, webcam_frames):
    webcam = FaultyWebcam(*webcam_frames)
    with _live_session(webcam) as (listener, sink, opened):
        webcam.size = (1280, 720)  # the clip is 640x360: the camera switches to 720p
        changed_at = time.monotonic()
        assert wait_until(lambda: opened[0].size == (1280, 720), timeout_s=5)
        assert wait_until(lambda: _face_tracked_since(listener, changed_at + 0.5), timeout_s=10)
        webcam.size = (320, 180)
        changed_again = time.monotonic()
        assert wait_until(lambda: _face_tracked_since(listener, changed_again + 0.5), timeout_s=10)
    assert listener.errors == [] and listener.statuses == ["starting", "streaming", "stopped"]
    assert opened[0].size_changes == 2 and sink.frames[-1].image.shape == (180, 320, 3)
    rows = listener.window(changed_at, float("inf"))
    assert min(img.mean() for _, _, _, img in rows) > 25


@pytest.mark.parametrize("fault", ["busy", "unplugged"])
def test_a_session_starts_idle_while_the_camera_is_busy_or_missing_and_picks_it_up(
        private_user_dirs, webcam_frames, fault):
    webcam = FaultyWebcam(*webcam_frames)
    webcam.set_fault(fault)  # another app holds the camera, or it is not plugged in yet
    with _live_session(webcam, wait_for_face=False) as (listener, _, opened):
        assert wait_until(lambda: len(listener.window(0, float("inf"))) >= 2 * FPS), (listener.statuses, listener.errors)
        waited_until = time.monotonic()
        webcam.set_fault(None)
        assert wait_until(lambda: _face_tracked_since(listener, waited_until), timeout_s=10)
    assert listener.errors == [] and listener.statuses == ["starting", "streaming", "stopped"]
    assert listener.notices == ["Waiting for the camera", "Camera back"]
    idle = listener.window(0, waited_until)
    assert not any(face for _, face, _, _ in idle) and min(img.mean() for *_, img in idle) > 25
    assert opened[0].reconnects == 1
