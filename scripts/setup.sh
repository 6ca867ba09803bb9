#!/usr/bin/env bash
# Sets up vcam_me on a fresh machine: the system libraries OpenCV and the tests need (when
# apt-get is available), then a virtual environment in .venv with the project installed.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  missing=""
  # libportaudio2: the microphone for recorded consent (sounddevice); espeak-ng: the tests
  # synthesise the spoken consent statement with it. The rest: what Qt's xcb platform plugin
  # (the desktop app, vcam_me/ui/qt*) loads beyond the above; found with ldd on PySide6's libraries.
  # desktop-file-utils: tests/test_installers.py validates the Linux menu entry with it.
  # trayer (a system-tray host), x11-utils (xwininfo), xdotool (a real right click): the tray
  # icon docked in a real tray on Xvfb (tests/ui/test_qt_tray_docked.py).
  # gcc … liblzo2-dev: tests/test_appimage.py compiles the AppImage runtime and mounts an image (as root
  # libfuse mounts by itself; users of the AppImage need fusermount3, from their fuse3 package).
  # icu-devtools (icupkg): the Linux bundle build reduces Qt's ICU data with it (installers/linux/build.sh).
  for pkg in libgl1 libegl1 libglib2.0-0 libxkbcommon0 xvfb ffmpeg libportaudio2 espeak-ng desktop-file-utils \
      trayer x11-utils xdotool \
      gcc libc6-dev squashfs-tools libsquashfuse-dev libfuse3-dev zlib1g-dev libzstd-dev liblzma-dev \
      liblz4-dev liblzo2-dev icu-devtools \
      libfontconfig1 libdbus-1-3 libx11-xcb1 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-image0 \
      libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xfixes0 libxcb-xkb1; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
  done
  if [ -n "$missing" ]; then
    echo "setup: installing system packages:$missing"
    $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  fi
fi
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]"
