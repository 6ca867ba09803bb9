"""A real window on a real X server: the tray menu open beside the preview while the bundled
clip streams, grabbed from an Xvfb of our own into tests/artifacts/ui/ (scripts/ui_screenshots.py,
the same script that makes the README's pictures)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from .conftest import own_xvfb

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "tests" / "artifacts" / "ui"

pytestmark = pytest.mark.slow


@pytest.fixture
def xvfb():
    with own_xvfb() as display:
        yield display


def _read(path: Path) -> np.ndarray:
    import cv2

    image = cv2.imread(str(path))
    assert image is not None, f"{path} is not a readable PNG"
    return image[:, :, ::-1]


def test_screenshot_of_the_tray_menu_and_the_preview(xvfb, private_user_dirs):
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    env = dict(os.environ, DISPLAY=xvfb, QT_QPA_PLATFORM="xcb")
    env.pop("WAYLAND_DISPLAY", None)
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "ui_screenshots.py"), str(ARTIFACTS), "--seconds", "2"],
                          capture_output=True, text=True, timeout=180, env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["platform"] == "xcb" and figures["status"] == "live"
    assert figures["frames_sent"] > 20 and figures["frames_painted"] > 20

    screen = _read(ARTIFACTS / "desktop.png")
    assert screen.shape == (720, 1280, 3)
    mx, my, mw, mh = figures["menu"]
    px, py, pw, ph = figures["preview"]
    menu = screen[my:my + mh, mx:mx + mw].astype(int)
    preview = screen[py:py + ph, px:px + pw].astype(int)
    # the menu: dark text on a light face; the preview: a picture; elsewhere the bare root window
    assert (menu.mean(axis=2) > 200).mean() > 0.5 and (menu.mean(axis=2) < 90).mean() > 0.01
    assert preview.std() > 25
    assert screen[650:, 900:].max() < 10
    # the preview shows the frame the output received: same colours in the middle of the picture
    frame = _read(ARTIFACTS / "last-frame.png").astype(int)
    middle = preview[ph // 4: ph // 2, pw // 4: pw // 2].reshape(-1, 3).mean(axis=0)
    sent = frame[frame.shape[0] // 4: frame.shape[0] // 2, frame.shape[1] // 4: frame.shape[1] // 2].reshape(-1, 3).mean(axis=0)
    assert np.abs(middle - sent).max() < 30, (middle, sent)
    for name in ("tray-menu-and-preview.png", "tray-menu.png", "preview.png"):
        assert _read(ARTIFACTS / name).size > 0
