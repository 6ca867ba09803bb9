#!/usr/bin/env bash
# Smoke test of the built Linux bundle, run the way a user runs it: a copy of dist/vcam-me in a
# temporary folder outside the source tree, a fresh empty HOME, and an environment holding only
# PATH, HOME and QT_QPA_PLATFORM (no venv, no PYTHONPATH, no VCAM_ME_* overrides).
#
#   bash installers/linux/smoke_test.sh [BUNDLE_DIR]      (default: dist/vcam-me)
#   bash installers/linux/smoke_test.sh dist/vcam-me-<version>-<arch>.AppImage
#
# Checks: `vcam-me --version`, `vcam-me doctor` (exit 0: every essential found), `vcam-me avatar
# create` on the bundled portrait, `consent attest` for it, `vcam-me render` of a 2-second cut of
# the bundled clip onto that avatar, and that the MP4 decodes to the expected frames (ffprobe).
# An AppImage is run as a user runs it (mounted by its runtime with FUSE, never unpacked), and
# once more unpacked (--appimage-extract-and-run); its portrait and clip are the source tree's
# copies of the same files, since the image is read-only and is not unpacked first.
# Needs ffmpeg/ffprobe on the machine (to cut the clip and to check the result).
set -euo pipefail
cd "$(dirname "$0")/../.."
target=${1:-dist/vcam-me}
for tool in ffmpeg ffprobe; do
  command -v "$tool" >/dev/null || { echo "smoke: needs $tool" >&2; exit 2; }
done

work=$(mktemp -d /tmp/vcam-me-smoke.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/home" "$work/out"
case $target in
  *.AppImage)
    [ -x "$target" ] || { echo "smoke: no AppImage at $target: run installers/linux/appimage.sh" >&2; exit 2; }
    bundle=$(cd "$(dirname "$target")" && pwd)/$(basename "$target")
    cp "$bundle" "$work/vcam-me.AppImage"
    exe=$work/vcam-me.AppImage
    mkdir "$work/inputs"
    cp assets/avatars/sample/reference.png assets/driving/pyfeat_WolfgangLanger_Pexels.mp4 "$work/inputs/"
    portrait=$work/inputs/reference.png
    clip=$work/inputs/pyfeat_WolfgangLanger_Pexels.mp4
    ;;
  *)
    bundle=$(cd "$target" && pwd)
    [ -x "$bundle/vcam-me" ] || { echo "smoke: no bundle at $bundle: run installers/linux/build.sh" >&2; exit 2; }
    cp -a "$bundle" "$work/vcam-me"
    exe=$work/vcam-me/vcam-me
    data=$work/vcam-me/_internal
    portrait=$data/assets/avatars/sample/reference.png
    clip=$data/assets/driving/pyfeat_WolfgangLanger_Pexels.mp4
    ;;
esac
if [ ! -f "$portrait" ] || [ ! -f "$clip" ]; then echo "smoke: the bundle lacks its portrait or clip" >&2; exit 1; fi
case "$work" in "$PWD"/*) echo "smoke: temp folder inside the source tree" >&2; exit 1;; esac

# Run from inside the temp folder with nothing inherited but these three variables.
bare() { (cd "$work/out" && env -i PATH=/usr/bin:/bin HOME="$work/home" QT_QPA_PLATFORM=offscreen "$@"); }
step() { echo "smoke: $*"; }

step "vcam-me --version"
bare "$exe" --version
if [ "$exe" = "$work/vcam-me.AppImage" ]; then
  step "vcam-me.AppImage desktop-entry, then --remove (the applications-menu entry)"
  bare "$exe" desktop-entry
  entry=$work/home/.local/share/applications/vcam-me.desktop
  grep -qxF "Exec=\"$exe\"" "$entry" || { echo "smoke: the menu entry does not start the AppImage" >&2; exit 1; }
  [ -s "$work/home/.local/share/icons/hicolor/256x256/apps/vcam-me.png" ] || { echo "smoke: no menu icon" >&2; exit 1; }
  bare "$exe" desktop-entry --remove
  [ ! -e "$entry" ] || { echo "smoke: desktop-entry --remove left the entry" >&2; exit 1; }
  step "vcam-me.AppImage --appimage-extract-and-run --version (no FUSE needed)"
  bare "$exe" --appimage-extract-and-run --version
  if [ -n "$(find /tmp -maxdepth 1 -name 'appimage_extracted_vcam-me.*' -newer "$work/home" -print -quit)" ]; then
    echo "smoke: --appimage-extract-and-run left its folder behind" >&2; exit 1
  fi
fi

step "vcam-me doctor"
bare "$exe" doctor | tee "$work/doctor.txt"
# The shipped network must open, and doctor must name the provider really running it.
grep -Eq '^ok +appearance network +runs on [A-Za-z]+ExecutionProvider' "$work/doctor.txt" ||
  { echo "smoke: doctor does not report the appearance network's provider" >&2; exit 1; }
# The GPU variant brings its own CUDA and cuDNN: they must load from inside the bundle (on a
# machine without an NVIDIA driver the network then runs on the CPU, and doctor says why).
case $(basename "$bundle") in
  vcam-me-gpu*)
    grep -Eq '^(ok|--) +CUDA +CUDA libraries loaded: .*libcudart.*libcudnn.*\(from [^)]*/nvidia/' "$work/doctor.txt" ||
      { echo "smoke: the GPU bundle's own CUDA libraries did not load" >&2; exit 1; }
    ;;
esac

step "vcam-me avatar create (bundled portrait)"
bare "$exe" avatar create --photo "$portrait" --name smoke --out "$work/out/smoke-avatar"
[ -f "$work/out/smoke-avatar/avatar.json" ] || { echo "smoke: avatar create wrote no avatar.json" >&2; exit 1; }

step "vcam-me consent attest (no avatar renders without a consent record; makes this HOME's keys)"
bare "$exe" consent attest --avatar "$work/out/smoke-avatar" --licence "bundled sample portrait, see its SOURCE.md" --days 1

step "vcam-me render (2 s of the bundled clip, 640x360 at 30 fps)"
ffmpeg -v error -y -i "$clip" -t 2 -c:v libx264 -pix_fmt yuv420p -an "$work/out/clip2s.mp4"
bare "$exe" render --avatar "$work/out/smoke-avatar" --driving "$work/out/clip2s.mp4" \
  --out "$work/out/render.mp4" --fps 30 --size 640x360 --micro none

step "the render decodes"
ffprobe -v error -count_frames -select_streams v:0 -show_entries stream=nb_read_frames,width,height,codec_name \
  -of default=noprint_wrappers=1 "$work/out/render.mp4" > "$work/probe.txt"
cat "$work/probe.txt"
frames=$(sed -n 's/^nb_read_frames=//p' "$work/probe.txt")
ffmpeg -v error -i "$work/out/render.mp4" -f null - 2> "$work/decode.txt"
if [ -s "$work/decode.txt" ]; then cat "$work/decode.txt" >&2; echo "smoke: decode errors" >&2; exit 1; fi
if [ "${frames:-0}" -lt 50 ]; then echo "smoke: only ${frames:-0} frames decoded (expected about 60)" >&2; exit 1; fi

step "vcam-me verify (the consent mark survives in the frozen build's output)"
bare "$exe" verify "$work/out/render.mp4"

if command -v Xvfb >/dev/null; then
  # The desktop app on a bare X server: Qt's xcb plugin and the tray code load from the bundle,
  # the first-run welcome writes the settings file, and the app is still running after 12 s.
  step "vcam-me (the tray app) on Xvfb for 12 s"
  # -displayfd: Xvfb picks a free display and writes its number when it is ready.
  Xvfb -displayfd 3 -screen 0 1280x720x24 -nolisten tcp 3> "$work/display" >/dev/null 2>&1 &
  xvfb=$!
  for _ in $(seq 50); do [ -s "$work/display" ] && break; sleep 0.2; done
  display=:$(tr -d '[:space:]' < "$work/display")
  set +e
  (cd "$work/out" && env -i PATH=/usr/bin:/bin HOME="$work/home" DISPLAY="$display" LANG=C.UTF-8 timeout 12 "$exe") \
    > "$work/tray.txt" 2>&1
  tray_rc=$?
  set -e
  # `run --preview` on the same X server: the bundle's OpenCV is headless, so the window is Qt's.
  step "vcam-me run --preview (3 s of the clip, the Qt preview window) on Xvfb"
  (cd "$work/out" && env -i PATH=/usr/bin:/bin HOME="$work/home" DISPLAY="$display" LANG=C.UTF-8 timeout 60 "$exe" \
    run --avatar "$work/out/smoke-avatar" --video "$work/out/clip2s.mp4" --loop --preview --duration 3 \
    --size 640x360 --fps 30 --no-hotkeys) > "$work/preview.txt" 2>&1 || { cat "$work/preview.txt" >&2; kill "$xvfb"; exit 1; }
  grep -E "streaming|frames in" "$work/preview.txt"
  grep -q "to QtPreviewSink" "$work/preview.txt" || { echo "smoke: run --preview did not open the Qt window" >&2; kill "$xvfb"; exit 1; }
  kill "$xvfb" 2>/dev/null || true
  if [ "$tray_rc" -ne 124 ]; then cat "$work/tray.txt" >&2; echo "smoke: the tray app exited ($tray_rc) before 12 s" >&2; exit 1; fi
  [ -f "$work/home/.config/vcam-me/config.toml" ] || { echo "smoke: the first run wrote no settings file" >&2; exit 1; }
else
  step "Xvfb missing: the tray app was not started"
fi

if [ -n "$(ls -A "$work/home")" ]; then step "files the bundle wrote under HOME:"; (cd "$work/home" && find . -type f | head -20); fi
# The AppImage's file-system process unmounts and removes its mount point once the app has ended.
left_mounted() { find /tmp -maxdepth 1 -name '.mount_vcam-me.*' -newer "$work/home" -print -quit; }
for _ in $(seq 50); do [ -z "$(left_mounted)" ] && break; sleep 0.1; done
if [ -n "$(left_mounted)" ]; then echo "smoke: an AppImage mount point was left behind: $(left_mounted)" >&2; exit 1; fi
echo "smoke: passed ($frames frames decoded; bundle $(du -sh "$bundle" | cut -f1))"
