#!/usr/bin/env bash
# Builds the Linux bundle: dist/vcam-me/ (one folder, PyInstaller) and
# dist/vcam-me-<version>-linux-<arch>.tar.gz holding it with the install scripts.
#
#   bash installers/linux/build.sh            # with .venv (made by scripts/setup.sh)
#   PYTHON=/path/to/python bash installers/linux/build.sh
#   VCAM_ME_BUNDLE_GPU=1 PYTHON=... bash ...  # GPU variant: that Python has onnxruntime-gpu instead of onnxruntime
#
# The Python environment gets the [ui] and [bundle] extras (PySide6 for the tray, PyInstaller).
# PyTorch may be installed there (the dev setup has it): the spec leaves it out.
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}
if [ ! -x "$PYTHON" ]; then
  echo "build: no Python at $PYTHON: run 'bash scripts/setup.sh' first, or set PYTHON" >&2
  exit 2
fi
if ! "$PYTHON" -c "import PyInstaller, PySide6" >/dev/null 2>&1; then
  echo "build: installing the [ui,bundle] extras into $PYTHON's environment"
  "$PYTHON" -m pip install -q -e ".[ui,bundle]"
fi
name=vcam-me; [ "${VCAM_ME_BUNDLE_GPU:-}" = "1" ] && name=vcam-me-gpu
version=$("$PYTHON" -c "import vcam_me; print(vcam_me.__version__)")
arch=$(uname -m)

# PyInstaller replaces dist/$name; build/ holds its work files.
nice -n 10 "$PYTHON" -m PyInstaller --noconfirm --log-level WARN \
  --distpath dist --workpath build/pyinstaller installers/vcam_me.spec

# libmediapipe.so ships with its symbol table (about 30 MB of 127 MB); the smoke test runs the
# stripped copy, so a strip that broke it would be caught there.
bundle=dist/$name
if command -v strip >/dev/null 2>&1; then
  strip --strip-unneeded "$bundle/_internal/mediapipe/tasks/c/libmediapipe.so"
fi

# The newest glibc any library in the bundle asks for: install.sh refuses older systems with a
# clear line instead of a loader error at the first start.
if command -v objdump >/dev/null 2>&1; then
  find "$bundle" -type f \( -name "*.so*" -o -name vcam-me \) -print0 | xargs -0 objdump -T 2>/dev/null |
    grep -o "GLIBC_2\.[0-9]*" | sed 's/GLIBC_//' | sort -t. -k2 -n -u | tail -1 > "$bundle/GLIBC_REQUIRED"
fi

# The tarball: the folder plus what installs it for one user and the driver for everyone.
cp installers/linux/install.sh installers/linux/install-v4l2loopback.sh installers/linux/vcam-me.desktop "$bundle/"
cp installers/linux/README-bundle.txt "$bundle/README.txt"
cp LICENSE "$bundle/LICENSE"
tarball=dist/$name-$version-linux-$arch.tar.gz
tar -C dist -czf "$tarball.part" "$name"
mv "$tarball.part" "$tarball"

echo "build: $bundle ($(du -sh "$bundle" | cut -f1)), $tarball ($(du -sh "$tarball" | cut -f1))"
