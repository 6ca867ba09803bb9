"""Output faults in the live session (app.LiveSession), on the real stages: the bundled clip
through MediaPipe into the avatar, out through pyvirtualcam's own Camera class to a test
device that vanishes mid-call, or is busy at start, and comes back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from vcam_me.app import LiveSession
from vcam_me.ui.bridge import PipelineBridge, StreamStatus

from .helpers import FlakyBackend, clip_session_config, registered_backend, wait_until

pytestmark = pytest.mark.slow

BACKEND = "vcam-me-session-flaky"


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
    with registered_backend(BACKEND, FlakyBackend) as backend:
        yield backend


def config(clip):
    return clip_session_config(clip, virtualcam_backend=BACKEND, virtualcam_retry_s=0.2)


def test_a_vanished_virtual_camera_is_told_retried_and_the_stream_goes_on(private_user_dirs, bundled_clip_cut, flaky):
    listener = Listener()
    session = LiveSession(config(bundled_clip_cut(60, 24)), listener, hotkeys=False, microphone=False)
    session.start()
    try:
        assert wait_until(lambda: flaky.instances and len(flaky.instances[0].frames) >= 10), listener.errors
        flaky.present = False  # the device goes away mid-call
        assert wait_until(lambda: "output_lost" in listener.names)
        assert wait_until(lambda: listener.take() is not None and listener.stream_status is StreamStatus.NO_VIRTUAL_CAMERA)
        shown = listener.frames
        assert wait_until(lambda: listener.frames >= shown + 15)  # the preview keeps getting the avatar
        assert len(flaky.instances) == 1 and session.running
        flaky.present = True
        assert wait_until(lambda: len(flaky.instances) == 2 and len(flaky.instances[1].frames) >= 10)
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
        assert wait_until(lambda: flaky.instances and len(flaky.instances[0].frames) >= 10)
    finally:
        session.stop()
    assert listener.errors == []
    assert listener.names == ["starting", "output_lost", "streaming", "output_back", "stopped"]
    assert "in use by another program" in listener.notices[0][1]


# -- vcam-me run --record, and the disk fills ---------------------------------------------------
RUN_IN_CHILD = """
import json, resource, signal, sys

import pyvirtualcam


class Counting:
    frames = 0

    def __init__(self, **kw):
        pass

    def send(self, frame):
        Counting.frames += 1

    def close(self):
        pass

    def device(self):
        return "counting"

    def native_fourcc(self):
        return None


pyvirtualcam.register_backend("vcam-me-counting", Counting)
limit = int(sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG (a real filesystem error)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

from vcam_me.app import main

code = main(sys.argv[2:])
print(json.dumps({"code": code, "virtual_camera_frames": Counting.frames}))
"""


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE and SIGXFSZ are POSIX")
def test_run_with_a_recording_whose_disk_fills_keeps_streaming_and_the_recording(private_user_dirs, tmp_path):
    import av

    from vcam_me.app import BUNDLED_DRIVING
    from vcam_me.consent import provenance as pv

    extra = tmp_path / "counting.toml"
    extra.write_text('[output]\nvirtualcam_backend = "vcam-me-counting"\n', encoding="utf-8")
    out = tmp_path / "call.mp4"
    argv = ["--config", str(extra), "run", "--video", str(BUNDLED_DRIVING), "--loop", "--virtualcam", "--record", str(out),
            "--duration", "8", "--size", "320x180", "--fps", "30", "--no-hotkeys"]
    done = subprocess.run([sys.executable, "-c", RUN_IN_CHILD, "250000", *argv], capture_output=True, text=True,
                          timeout=180, check=False, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["code"] == 0
    warnings = [line for line in done.stderr.splitlines() if line.startswith(f"vcam-me: warning: recording to {out}")]
    assert len(warnings) == 2, done.stderr  # at once, and what was kept at the end
    assert f"/.{out.name}" not in done.stderr and ".partial" not in done.stderr  # no temporary names
    assert "stopped after about" in warnings[0] and "the stream goes on" in warnings[0]
    assert "was cut short after" in warnings[1] and "not signed" in warnings[1]
    assert "recording saved" not in done.stdout
    with av.open(str(out)) as container:
        kept = sum(1 for _ in container.decode(video=0))
    assert 0 < kept < result["virtual_camera_frames"]
    assert result["virtual_camera_frames"] >= 8 * 30 * 0.8  # the call kept its avatar all along
    assert not pv.read_provenance(out).present  # a cut recording is not passed off as a signed, complete one
