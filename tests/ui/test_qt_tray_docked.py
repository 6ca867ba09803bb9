"""The tray icon in a real system tray: an Xvfb of our own, trayer (a freedesktop system-tray
host) docked on it, and the tray app in a child process on Qt's xcb platform
(docked_tray_app.py). The icon is embedded in the host's panel, shows the stream's status in
its colours (stopped, then live), and a right click on it opens the menu. The screenshots go
to tests/artifacts/ui-tray/."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from vcam_me.ui.bridge import StreamStatus
from vcam_me.ui.qt_icons import STATUS_STYLE

from .conftest import own_xvfb

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts" / "ui-tray"

pytestmark = pytest.mark.slow


def _tree(display: str) -> str:
    return subprocess.run(["xwininfo", "-root", "-tree"], capture_output=True, text=True, timeout=10, check=False,
                          env=dict(os.environ, DISPLAY=display)).stdout


@pytest.fixture
def tray_host():
    """(display, host process): trayer docked at the bottom right of our own Xvfb."""
    exe = shutil.which("trayer")
    if exe is None:
        pytest.skip("no system-tray host: trayer is not installed (scripts/setup.sh installs it: apt-get install trayer)")
    if shutil.which("xwininfo") is None:
        pytest.skip("xwininfo is not installed (apt-get install x11-utils)")
    with own_xvfb() as display:
        host = subprocess.Popen([exe, "--edge", "bottom", "--align", "right", "--widthtype", "request", "--height", "32",
                                 "--transparent", "false", "--SetDockType", "true"],
                                env=dict(os.environ, DISPLAY=display), stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            end = time.monotonic() + 15
            while '"panel": ("panel" "trayer")' not in _tree(display):
                if host.poll() is not None or time.monotonic() > end:
                    pytest.fail(f"trayer did not put up its panel (exit code {host.poll()})")
                time.sleep(0.1)
            yield display, host
        finally:
            host.terminate()
            host.wait(timeout=10)


def _icon_pixels(image: np.ndarray, box) -> np.ndarray:
    x, y, w, h = box
    return image[y:y + h, x:x + w].reshape(-1, 3).astype(int)


def _share_near(pixels: np.ndarray, status: StreamStatus, tolerance: int = 40) -> float:
    colour = STATUS_STYLE[status][0]
    target = np.array([colour.red(), colour.green(), colour.blue()])
    return float((np.abs(pixels - target).max(axis=1) < tolerance).mean())


def test_the_icon_docks_in_a_real_tray_follows_the_status_and_opens_its_menu(tray_host, private_user_dirs):
    import cv2

    display, host = tray_host
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    env = dict(os.environ, DISPLAY=display, QT_QPA_PLATFORM="xcb")
    for name in ("WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS"):  # the X11 tray protocol, not a desktop's D-Bus one
        env.pop(name, None)
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("docked_tray_app.py")), str(ARTIFACTS)],
                          capture_output=True, text=True, timeout=180, env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert host.poll() is None, "the tray host is still up"

    # a system tray is there, and the app uses it (no preview window as a stand-in for it)
    assert seen["platform"] == "xcb" and seen["tray_available"] and seen["use_tray"]
    assert seen["docked"] and not seen["preview_visible"]
    x, y, w, h = seen["icon"]
    assert 16 <= w <= 64 and 16 <= h <= 64
    assert x + w <= 1280 and y + h <= 720 and y >= 720 - 64, "at the bottom edge, where trayer's panel is"
    # the icon's window is embedded: a child of trayer's panel, of the icon's size, at its place
    lines = seen["window_tree"].splitlines()
    top = next(i for i, line in enumerate(lines) if '"panel": ("panel" "trayer")' in line)
    depth = len(lines[top]) - len(lines[top].lstrip())
    below = []
    for line in lines[top + 1:]:
        if line.strip() and len(line) - len(line.lstrip()) <= depth:
            break
        below.append(line)
    children = re.findall(r"(\d+)x(\d+)\+-?\d+\+-?\d+\s+\+(\d+)\+(\d+)", "\n".join(below))
    assert (str(w), str(h), str(x), str(y)) in children, seen["window_tree"]

    # the icon follows the status: the grey ring while stopped, the green disc once live
    stopped = cv2.imread(str(ARTIFACTS / "tray-stopped.png"))[:, :, ::-1]
    live = cv2.imread(str(ARTIFACTS / "tray-live.png"))[:, :, ::-1]
    assert stopped.shape == live.shape == (720, 1280, 3)
    before, after = _icon_pixels(stopped, seen["icon"]), _icon_pixels(live, seen["icon"])
    assert _share_near(before, StreamStatus.STOPPED) > 0.1 and _share_near(before, StreamStatus.LIVE) < 0.01
    assert seen["live"] and seen["frames_sent"] > 0 and "live" in seen["tooltip"]
    assert _share_near(after, StreamStatus.LIVE) > 0.2 and _share_near(after, StreamStatus.STOPPED) < 0.01
    assert (after == 255).all(axis=1).sum() > 4, "the white lens in the middle of the live icon"
    # the rest of the screen is the same bare root window in both
    assert np.array_equal(stopped[:600, :1000], live[:600, :1000])

    # a right click on the docked icon opens the menu, beside the icon
    assert seen["menu_opened"], "xdotool right click did not open the menu" if shutil.which("xdotool") else \
        "xdotool is not installed (scripts/setup.sh installs it)"
    assert seen["menu_items"][:2] == ["vcam-me: live · sample · 30 fps", "Stop"] and "Quit" in seen["menu_items"]
    mx, my, mw, mh = seen["menu"]
    menu = cv2.imread(str(ARTIFACTS / "tray-menu.png"))[my:my + mh, mx:mx + mw]
    assert (menu.mean(axis=2) > 200).mean() > 0.5, "the menu's light face is on the screen"
    assert abs((mx + mw) - (x + w)) < 64 and my + mh <= y + h
