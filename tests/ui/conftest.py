"""Fixtures of the desktop-app tests: a real live session on the bundled clip, its frames
kept by an in-memory sink, and the user's folders in a temporary place."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from vcam_me.output import MemorySink

from ..helpers import clip_session_config, mirrored_avatar

# Qt widgets draw into memory here, with no display; the tests that need a real X server run
# their own Xvfb and the app in a subprocess (test_screenshots.py, test_qt_tray_docked.py).
# Set before any QApplication exists.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture
def session_cfg(private_user_dirs, bundled_clip_cut):
    """Defaults (not the real user's config), driven by the first 2.5 s of the bundled clip
    in a loop at its real pace, 320x180 out at 30 fps (light on a busy 2-core machine)."""
    return clip_session_config(bundled_clip_cut(60, 24))


@pytest.fixture
def memory_sink():
    return MemorySink(max_frames=240)


@pytest.fixture
def make_session(memory_sink):
    """The controller's session factory, with the memory sink as the only output and neither
    global hotkeys nor the microphone (neither exists on a test machine)."""
    from vcam_me.app import LiveSession

    made = []

    def make(cfg, listener, **kwargs):
        session = LiveSession(cfg, listener, sinks=[memory_sink], hotkeys=False, microphone=False, **kwargs)
        made.append(session)
        return session

    make.made = made
    yield make
    for session in made:
        session.stop(5.0)


def second_avatar(folder):
    """An avatar of the user's own (the sample photo mirrored) with an attested licence, made
    through the command line as a user would, among the user's avatars (so the tray lists it)."""
    from vcam_me.app import own_avatars_dir

    own_avatars_dir().mkdir(parents=True, exist_ok=True)
    return mirrored_avatar(folder, own_avatars_dir() / "mirrored")


@contextlib.contextmanager
def own_xvfb() -> Iterator[str]:
    """Start an Xvfb server of our own and give its display name (``":N"``); skips the test
    when Xvfb is missing or does not start. DISPLAY is left to the caller."""
    exe = shutil.which("Xvfb")
    if exe is None:
        pytest.skip("Xvfb is not installed (scripts/setup.sh installs it: apt-get install xvfb)")
    read_end, write_end = os.pipe()
    # -displayfd: the server picks a free display number and writes it to us when ready;
    # -noreset: it does not restart (and refuse connections) each time its last client leaves.
    server = subprocess.Popen([exe, "-displayfd", str(write_end), "-screen", "0", "1280x720x24", "-nolisten", "tcp",
                               "-noreset"], pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], 15)
        number = os.read(read_end, 16).decode().strip() if ready else ""
        if not number:
            pytest.skip("Xvfb did not start within 15 s")
        yield f":{number}"
    finally:
        os.close(read_end)
        server.terminate()
        server.wait(timeout=10)
