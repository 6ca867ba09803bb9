#!/usr/bin/env bash
# Packs the Linux bundle that build.sh made (dist/vcam-me/) into one AppImage file:
#   dist/vcam-me-<version>-<arch>.AppImage
# The file is the runtime compiled from appimage/runtime.c followed by a SquashFS image
# (zstd) of the bundle with AppRun, the menu entry and the icon at its root (the AppImage
# type 2 layout). Users download it, make it executable and run it; it is mounted, not
# unpacked, so it takes its own size on disk.
#
#   bash installers/linux/build.sh && bash installers/linux/appimage.sh
#   VCAM_ME_BUNDLE_GPU=1 bash installers/linux/appimage.sh     # from dist/vcam-me-gpu/
#   VCAM_ME_APPIMAGE_ZSTD=9 bash installers/linux/appimage.sh  # faster, larger (default level 19)
#
# Needs a C compiler, squashfs-tools, and the static libraries of squashfuse, FUSE 3 and the
# SquashFS decompressors (Debian: gcc libc6-dev squashfs-tools libsquashfuse-dev libfuse3-dev
# zlib1g-dev libzstd-dev liblzma-dev liblz4-dev liblzo2-dev; scripts/build_bundle_ci.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}
name=vcam-me; [ "${VCAM_ME_BUNDLE_GPU:-}" = "1" ] && name=vcam-me-gpu
bundle=dist/$name
if [ ! -x "$bundle/vcam-me" ]; then
  echo "appimage: no bundle at $bundle: run installers/linux/build.sh first" >&2
  exit 2
fi
for tool in cc mksquashfs; do
  command -v "$tool" >/dev/null || { echo "appimage: needs $tool (see the top of $0)" >&2; exit 2; }
done
if [ ! -f /usr/include/squashfuse/ll.h ]; then
  echo "appimage: needs squashfuse's headers and libraries (Debian: libsquashfuse-dev)" >&2
  exit 2
fi
version=$("$PYTHON" -c "import vcam_me; print(vcam_me.__version__)")
arch=$(uname -m)
work=build/appimage
rm -rf "$work" && mkdir -p "$work"

# The runtime links squashfuse, FUSE 3 and the decompressors statically: the user's machine
# needs only glibc, the fuse kernel module and fusermount3.
cc -O2 -Wall -Wextra -Werror -I/usr/include/squashfuse -o "$work/runtime" installers/linux/appimage/runtime.c \
  -Wl,-Bstatic -lsquashfuse_ll -lsquashfuse -lfuse3 -lz -lzstd -llzma -llz4 -llzo2 -Wl,-Bdynamic -lpthread -ldl
strip "$work/runtime"

# The image's root: the bundle (hard links, no copy) less what only the tarball uses (install.sh
# copies a folder into place; an AppImage is one file the user keeps where they like).
appdir=$work/AppDir
cp -al "$(cd "$bundle" && pwd)" "$appdir"
rm -f "$appdir/install.sh" "$appdir/install-v4l2loopback.sh" "$appdir/README.txt"
ln -s vcam-me "$appdir/AppRun"
sed -e 's/^Icon=.*/Icon=vcam-me/' installers/linux/vcam-me.desktop > "$appdir/vcam-me.desktop"
echo "X-AppImage-Version=$version" >> "$appdir/vcam-me.desktop"
# The icon is the tray's own "live" icon, drawn by the app's code (installers/make_icon.py).
"$PYTHON" installers/make_icon.py "$work/icon" >/dev/null
cp "$work/icon/vcam-me.png" "$appdir/vcam-me.png"
ln -s vcam-me.png "$appdir/.DirIcon"

level=${VCAM_ME_APPIMAGE_ZSTD:-19}
case $level in ''|*[!0-9]*) echo "appimage: VCAM_ME_APPIMAGE_ZSTD must be a zstd level, 1 to 22" >&2; exit 2;; esac
mksquashfs "$appdir" "$work/image.sqfs" -comp zstd -Xcompression-level "$level" -root-owned -noappend -no-progress -quiet
out=dist/$name-$version-$arch.AppImage
cat "$work/runtime" "$work/image.sqfs" > "$out.part"
# AppImage type 2 magic in the ELF header's padding bytes: "AI" and the type, 2.
printf 'AI\002' | dd of="$out.part" bs=1 seek=8 count=3 conv=notrunc status=none
chmod 755 "$out.part"
mv "$out.part" "$out"
rm -rf "$appdir" "$work/image.sqfs"
echo "appimage: $out ($(du -m "$out" | cut -f1) MiB, $(stat -c %s "$out") bytes; the bundle it holds: $(du -sm "$bundle" | cut -f1) MiB)"
