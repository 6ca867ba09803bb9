#!/usr/bin/env bash
# Installs the vcam-me bundle (this folder) for the current user:
#   ~/.local/share/vcam-me/   the bundle
#   ~/.local/bin/vcam-me      a link to its executable
#   ~/.local/share/applications/vcam-me.desktop   the menu entry
# ./install.sh --uninstall removes these three (your avatars, consent records and settings,
# kept in your own config and data folders, are left alone).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
data_home=${XDG_DATA_HOME:-$HOME/.local/share}
target=$data_home/vcam-me
bin_dir=$HOME/.local/bin
apps=$data_home/applications

if [ "${1:-}" = "--uninstall" ]; then
  rm -f "$bin_dir/vcam-me" "$apps/vcam-me.desktop"
  rm -rf "$target"
  echo "vcam-me: removed $target, $bin_dir/vcam-me and the menu entry"
  exit 0
elif [ -n "${1:-}" ]; then
  echo "usage: $0 [--uninstall]" >&2
  exit 2
fi
if [ ! -x "$here/vcam-me" ] || [ ! -d "$here/_internal" ]; then
  echo "vcam-me: run this script from the unpacked bundle (the folder holding vcam-me and _internal/)" >&2
  exit 2
fi
if [ -s "$here/GLIBC_REQUIRED" ] && command -v getconf >/dev/null 2>&1; then
  need=$(cat "$here/GLIBC_REQUIRED")
  have=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')
  if [ -n "$have" ] && [ "$(printf '%s\n%s\n' "$need" "$have" | sort -t. -k1,1n -k2,2n | head -1)" != "$need" ]; then
    echo "vcam-me: this build needs glibc $need or newer; this system has $have (install vcam-me with pip instead, or use a newer distribution)" >&2
    exit 2
  fi
fi
if [ -e "$target" ] && [ ! -x "$target/vcam-me" ]; then
  echo "vcam-me: $target exists and is not a vcam-me bundle; move it away first" >&2
  exit 2
fi
if [ "$here" != "$target" ]; then
  # Copy beside, then swap: an interrupted copy never leaves a half bundle in place.
  mkdir -p "$data_home"
  rm -rf "$target.new"
  cp -a "$here" "$target.new"
  rm -rf "$target.old"
  [ -e "$target" ] && mv "$target" "$target.old"
  mv "$target.new" "$target"
  rm -rf "$target.old"
fi
mkdir -p "$bin_dir" "$apps"
ln -sfn "$target/vcam-me" "$bin_dir/vcam-me"
sed "s|^Exec=.*|Exec=$target/vcam-me|" "$target/vcam-me.desktop" > "$apps/vcam-me.desktop.part"
mv "$apps/vcam-me.desktop.part" "$apps/vcam-me.desktop"
if command -v update-desktop-database >/dev/null 2>&1; then update-desktop-database -q "$apps" || true; fi
echo "vcam-me: installed in $target; command: $bin_dir/vcam-me; menu entry: vcam-me"
case ":$PATH:" in *":$bin_dir:"*) ;; *) echo "vcam-me: add $bin_dir to your PATH to type 'vcam-me'";; esac
if [ ! -e /sys/module/v4l2loopback ]; then
  echo "vcam-me: no virtual camera driver loaded: run 'sudo $target/install-v4l2loopback.sh'"
fi
