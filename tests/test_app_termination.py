"""SIGTERM and SIGHUP (a logout, a shutdown, ``kill``, a closed terminal) stop vcam-me the way
Ctrl+C does: a recording in progress is closed into a playable file, and the tray app quits
through its own Quit path. Python's default for both signals ends the process on the spot,
which leaves an MP4 without its index (unplayable): these tests would see the exit by signal
(a negative return code) and the missing file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vcam_me.config import PROJECT_ROOT

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals"),
]

CLIP = PROJECT_ROOT / "assets" / "driving" / "pyfeat_WolfgangLanger_Pexels.mp4"


def _env(private_user_dirs: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(extra)
    return env


def _wait_for(proc: subprocess.Popen, log: Path, text: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if text in log.read_text(encoding="utf-8", errors="replace"):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    pytest.fail(f"never saw {text!r}: {log.read_text(encoding='utf-8', errors='replace')[-2000:]}")


def _signal_and_wait(proc: subprocess.Popen, signum: int, what: str, timeout_s: float) -> int:
    """Send ``signum`` and return the exit code; fail when ``what`` outlives ``timeout_s``."""
    proc.send_signal(signum)
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        # the app's stop watchdog (app.STOP_WATCHDOG_S) has written every thread's stack to its log
        logs = "".join(p.read_text(encoding="utf-8", errors="replace")[-6000:] for p in Path(
            os.environ.get("XDG_STATE_HOME", "/nonexistent")).rglob("*.log"))
        pytest.fail(f"{what} did not stop within {timeout_s:.0f} s of the signal; its log:\n{logs}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_stops_run_and_the_recording_is_kept(private_user_dirs, tmp_path, signum):
    import av

    out = tmp_path / "recording.mp4"
    log = tmp_path / "run.log"
    with open(log, "w", encoding="utf-8") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vcam_me", "run", "--video", str(CLIP), "--loop", "--duration", "120",
             "--record", str(out), "--no-hotkeys", "--size", "320x180", "--fps", "30"],
            stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_env(private_user_dirs))
        _wait_for(proc, log, "Ctrl+C stops")
        time.sleep(2.0)  # some frames into the recording
        code = _signal_and_wait(proc, signum, "vcam-me run", 30)
    text = log.read_text(encoding="utf-8")
    assert code == 0, f"exit {code} (negative: killed by the signal, nothing closed)\n{text[-2000:]}"
    assert f"recording saved to {out}" in text
    with av.open(str(out)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames >= 10


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_quits_the_tray_app_through_its_quit_path(private_user_dirs, tmp_path, signum):
    log = tmp_path / "tray.log"
    with open(log, "w", encoding="utf-8") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "vcam_me", "-v"], stdout=handle, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=_env(private_user_dirs, DISPLAY=":0", QT_QPA_PLATFORM="offscreen"))
        config = private_user_dirs / "xdg_config_home" / "vcam-me" / "config.toml"
        deadline = time.monotonic() + 60
        while not config.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)  # the first run writes the settings file once the tray is up
        assert proc.poll() is None, log.read_text(encoding="utf-8")
        time.sleep(1.0)
        code = _signal_and_wait(proc, signum, "the tray app", 20)
    text = log.read_text(encoding="utf-8")
    assert code == 0, f"exit {code}\n{text[-2000:]}"
    assert f"{signal.Signals(signum).name}: quitting" in text


def test_a_stop_that_hangs_leaves_every_threads_stack_in_the_log(private_user_dirs):
    """The stop watchdog: armed by a termination signal, it writes where every thread waits into
    the log file when the process is still there after the delay (and nothing when it is not)."""
    code = ("import threading, time\n"
            "from vcam_me import app\n"
            "threading.Thread(target=time.sleep, args=(5,), name='stuck-worker').start()\n"
            "app.watch_the_stop(0.3)\n"
            "time.sleep(1.0)\n")
    subprocess.run([sys.executable, "-c", code], check=True, env=_env(private_user_dirs), timeout=60)
    logs = list(private_user_dirs.rglob("vcam-me.log"))
    assert logs, "no log file written"
    text = logs[0].read_text(encoding="utf-8")
    assert text.startswith("Timeout (")
    assert text.count("(most recent call first)") == 2  # both threads' stacks
    assert '"<string>", line 5' in text  # the main thread, caught in its sleep

    quick = "from vcam_me import app\napp.watch_the_stop(5.0)\n"
    for path in logs:
        path.unlink()
    subprocess.run([sys.executable, "-c", quick], check=True, env=_env(private_user_dirs), timeout=60)
    assert all(not p.read_text(encoding="utf-8") for p in private_user_dirs.rglob("vcam-me.log"))



class _Stream:
    stop_requested = False

    def request_stop(self):
        self.stop_requested = True


def _deliver(signum: int) -> None:
    """Send ``signum`` to this process and give Python a few bytecodes to run its handler."""
    os.kill(os.getpid(), signum)
    for _ in range(50):
        time.sleep(0.01)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_signal_during_a_stream_asks_it_to_end_and_a_second_one_raises(monkeypatch, signum):
    """In a stream the first signal only sets the stream's stop flag (no exception lands in the
    middle of a stage); a second one, or one outside a stream, raises as before."""
    from vcam_me import app

    armed = []
    monkeypatch.setattr(app, "watch_the_stop", lambda *a: armed.append(a))
    expected = KeyboardInterrupt if signum == signal.SIGINT else app.Terminated
    restore = app.stop_on_termination_signals()
    try:
        stream = _Stream()
        with app.signals_end_stream(stream):
            _deliver(signum)
            assert stream.stop_requested
            with pytest.raises(expected):
                _deliver(signum)
        with pytest.raises(expected):
            _deliver(signum)
    finally:
        restore()
    assert app._stream_to_end is None
    assert len(armed) == (0 if signum == signal.SIGINT else 3)  # the watchdog is for the termination signals
