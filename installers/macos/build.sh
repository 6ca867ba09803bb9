#!/usr/bin/env bash
# Builds vcam-me for macOS: dist/vcam-me.app (PyInstaller, from installers/vcam_me.spec) and
# dist/vcam-me-<version>-macos-<arch>.dmg. Run on a Mac with Python 3.11 and the project's
# virtual environment (bash scripts/setup.sh makes .venv; PYTHON=... to use another).
#
# The app bundle's Info.plist (set in the spec) carries:
#   NSCameraUsageDescription, NSMicrophoneUsageDescription  the words macOS shows when it asks
#       for the camera (face tracking) and the microphone (recorded consent, idle jaw); without
#       them macOS ends the app at its first camera access
#   LSUIElement = true  a tray-only (menu bar) app: no Dock icon, no app menu
# The virtual camera is OBS Studio's (30 or newer: a camera extension on macOS 13+); vcam-me
# detects it (vcam_me/output/virtualcam.py) and the first run says how to install it.
#
# Optional, for distribution (not needed to run it on the Mac that built it):
#   CODESIGN_IDENTITY="Developer ID Application: NAME (TEAMID)"   sign with the hardened runtime
#   NOTARY_PROFILE=name   notarise with a profile stored by `xcrun notarytool store-credentials`
#                         and staple the ticket to the .dmg
# Unsigned builds run after the user allows them once (Finder: right-click → Open, or System
# Settings → Privacy & Security → "Open Anyway").
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(uname -s)" = "Darwin" ] || { echo "build: run this on macOS (hdiutil, codesign)" >&2; exit 2; }
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || { echo "build: no Python at $PYTHON: run 'bash scripts/setup.sh' first, or set PYTHON" >&2; exit 2; }
"$PYTHON" -c "import PyInstaller, PySide6" >/dev/null 2>&1 || "$PYTHON" -m pip install -q -e ".[ui,bundle]"
version=$("$PYTHON" -c "import vcam_me; print(vcam_me.__version__)")
arch=$(uname -m)

"$PYTHON" installers/make_icon.py build/icon   # vcam-me.icns for the .app (the spec picks it up)
"$PYTHON" -m PyInstaller --noconfirm --log-level WARN --distpath dist --workpath build/pyinstaller installers/vcam_me.spec
app=dist/vcam-me.app
[ -d "$app" ] || { echo "build: PyInstaller made no $app" >&2; exit 1; }
/usr/libexec/PlistBuddy -c "Print :NSCameraUsageDescription" "$app/Contents/Info.plist" >/dev/null
/usr/libexec/PlistBuddy -c "Set :CFBundleShortVersionString $version" "$app/Contents/Info.plist" 2>/dev/null ||
  /usr/libexec/PlistBuddy -c "Add :CFBundleShortVersionString string $version" "$app/Contents/Info.plist"

if [ -n "${CODESIGN_IDENTITY:-}" ]; then
  # The camera and microphone under the hardened runtime need these entitlements.
  entitlements=build/vcam-me.entitlements
  cat > "$entitlements" <<'PLIST'
<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0"><dict>
  <key>com.apple.security.device.camera</key><true/>
  <key>com.apple.security.device.audio-input</key><true/>
  <key>com.apple.security.cs.allow-unsigned-executable-memory</key><true/>
  <key>com.apple.security.cs.disable-library-validation</key><true/>
</dict></plist>
PLIST
  codesign --force --deep --options runtime --timestamp --entitlements "$entitlements" \
    --sign "$CODESIGN_IDENTITY" "$app"
  codesign --verify --strict --verbose=2 "$app"
fi

# The disk image: the app and a link to /Applications to drag it onto.
dmg=dist/vcam-me-$version-macos-$arch.dmg
stage=build/dmg
rm -rf "$stage" "$dmg"
mkdir -p "$stage"
cp -R "$app" "$stage/"
ln -s /Applications "$stage/Applications"
hdiutil create -volname "vcam-me $version" -srcfolder "$stage" -fs HFS+ -format UDZO -ov "$dmg"

if [ -n "${CODESIGN_IDENTITY:-}" ]; then
  codesign --force --timestamp --sign "$CODESIGN_IDENTITY" "$dmg"
  if [ -n "${NOTARY_PROFILE:-}" ]; then
    xcrun notarytool submit "$dmg" --keychain-profile "$NOTARY_PROFILE" --wait
    xcrun stapler staple "$dmg"
  fi
fi
echo "build: $app ($(du -sh "$app" | cut -f1)), $dmg ($(du -sh "$dmg" | cut -f1))"
