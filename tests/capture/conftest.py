"""Fakes and media makers for the capture tests: a fake OpenCV camera and tiny videos."""

from __future__ import annotations

import threading
import time
from fractions import Fraction
from pathlib import Path
from types import SimpleNamespace

import av
import cv2
import numpy as np
import pytest


class FakeDevice:
    """A camera that can be plugged in and out while a FakeCapture holds it."""

    def __init__(self, size=(64, 48), fps=15.0, period_s=0.004, gives_frames=True):
        self.size = size
        self.fps = fps
        self.period_s = period_s
        self.present = True
        self.gives_frames = gives_frames
        self.opens = 0
        self.releases = 0
        self.frames_made = 0
        self.frozen = False  # keeps sending the same picture
        self.black = False  # sends black pictures
        self.lock = threading.Lock()


class FakeCapture:
    """Implements the part of cv2.VideoCapture that CameraSource uses."""

    def __init__(self, device: FakeDevice | None):
        self.device = device
        self.opened = device is not None and device.present
        self.asked = {}
        if self.opened:
            device.opens += 1

    def isOpened(self):
        return self.opened

    def set(self, prop, value):
        self.asked[prop] = value
        return True

    def get(self, prop):  # the device gives its own size and rate, whatever was asked
        d = self.device
        return {cv2.CAP_PROP_FRAME_WIDTH: d.size[0], cv2.CAP_PROP_FRAME_HEIGHT: d.size[1],
                cv2.CAP_PROP_FPS: d.fps}.get(prop, 0.0)

    def read(self):
        d = self.device
        time.sleep(d.period_s)
        if not (self.opened and d.present and d.gives_frames):
            return False, None
        with d.lock:
            n = d.frames_made
            d.frames_made += not d.frozen
        bgr = np.zeros((d.size[1], d.size[0], 3), np.uint8)
        if d.black:
            return True, bgr
        bgr[..., 2] = 255  # pure red in BGR order
        bgr[0, 0, 0] = n % 256
        return True, bgr

    def release(self):
        if self.opened:
            self.opened = False
            self.device.releases += 1


def factory_for(devices: dict[int, FakeDevice]):
    return lambda index: FakeCapture(devices.get(index))


def write_video(path: Path, pts_ms: list[int], size=(64, 48), codec="mpeg4", rate=30) -> Path:
    """A small video whose frame i is flat grey 20*i, shown at pts_ms[i]."""
    container = av.open(str(path), "w")
    stream = container.add_stream(codec, rate=rate)
    stream.width, stream.height = size
    stream.pix_fmt = "yuv420p"
    stream.codec_context.time_base = Fraction(1, 1000)
    for i, pts in enumerate(pts_ms):
        image = np.full((size[1], size[0], 3), (20 * i) % 256, np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = pts, Fraction(1, 1000)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


@pytest.fixture
def fakecam() -> SimpleNamespace:
    """``fakecam.Device(...)`` a pluggable fake camera; ``fakecam.factory({0: device})`` a
    capture factory for ``CameraSource.open``; ``fakecam.Capture`` the fake handle."""
    return SimpleNamespace(Device=FakeDevice, Capture=FakeCapture, factory=factory_for)


@pytest.fixture
def make_video():
    """``make_video(path, pts_ms, ...)`` writes a small test video (see write_video)."""
    return write_video
