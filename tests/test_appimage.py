"""The AppImage runtime (installers/linux/appimage/runtime.c), compiled and run for real.

A tiny image is packed the way installers/linux/appimage.sh packs the bundle: the runtime,
then a SquashFS image whose AppRun is a shell script. Running the file must mount the image
with FUSE, run AppRun with the caller's arguments, pass its exit status back and leave no
mount behind; the two unpacking options must give the same files without FUSE.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from vcam_me.config import PROJECT_ROOT

RUNTIME = PROJECT_ROOT / "installers" / "linux" / "appimage" / "runtime.c"
LIBS = ["-Wl,-Bstatic", "-lsquashfuse_ll", "-lsquashfuse", "-lfuse3", "-lz", "-lzstd", "-llzma", "-llz4", "-llzo2",
        "-Wl,-Bdynamic", "-lpthread", "-ldl"]

APPRUN = """#!/bin/sh
echo "args:$*"
echo "appdir-matches:$([ "$(dirname "$0")" = "$APPDIR" ] && echo yes || echo no)"
echo "appimage:$APPIMAGE"
cat "$APPDIR/data/hello.txt"
exit 7
"""


def _missing() -> str | None:
    for tool in ("cc", "mksquashfs"):
        if shutil.which(tool) is None:
            return f"no {tool} (apt install gcc squashfs-tools)"
    if not Path("/usr/include/squashfuse/ll.h").is_file():
        return "no squashfuse headers (apt install libsquashfuse-dev libfuse3-dev)"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("appimage")
    runtime = work / "runtime"
    subprocess.run(["cc", "-O2", "-Wall", "-Wextra", "-Werror", "-I/usr/include/squashfuse", "-o", str(runtime),
                    str(RUNTIME), *LIBS], check=True, capture_output=True)
    appdir = work / "AppDir"
    (appdir / "data").mkdir(parents=True)
    (appdir / "AppRun").write_text(APPRUN)
    (appdir / "AppRun").chmod(0o755)
    (appdir / "data" / "hello.txt").write_text("hello from the image\n")
    (appdir / "data" / "link.txt").symlink_to("hello.txt")
    subprocess.run(["mksquashfs", str(appdir), str(work / "image.sqfs"), "-comp", "zstd", "-root-owned",
                    "-noappend", "-quiet", "-no-progress"], check=True, capture_output=True)
    out = work / "test.AppImage"
    out.write_bytes(runtime.read_bytes() + (work / "image.sqfs").read_bytes())
    with open(out, "r+b") as f:  # the type 2 magic, as appimage.sh writes it
        f.seek(8)
        f.write(b"AI\x02")
    out.chmod(0o755)
    return out


def _run(image: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "TMPDIR": str(image.parent)}
    return subprocess.run([str(image), *args], check=False, capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=60)


def _leftovers(image: Path) -> list[str]:
    return sorted(p.name for p in image.parent.iterdir() if p.name.startswith((".mount_", "appimage_extracted_")))


def test_the_image_starts_where_the_runtime_ends(image):
    runtime_size = (image.parent / "runtime").stat().st_size
    result = _run(image, "--appimage-offset")
    assert result.returncode == 0 and int(result.stdout) == runtime_size
    assert image.read_bytes()[8:11] == b"AI\x02"


def _cannot_mount() -> str | None:
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "no usable /dev/fuse here (missing, or not open to this user)"
    if os.geteuid() != 0 and shutil.which("fusermount3") is None:
        return "a user who is not root mounts through fusermount3 (apt install fuse3)"
    return None


@pytest.mark.skipif(_cannot_mount() is not None, reason=str(_cannot_mount()))
def test_running_it_mounts_the_image_runs_apprun_and_unmounts(image):
    result = _run(image, "one", "two words")
    assert result.returncode == 7, result.stderr  # AppRun's own exit status
    assert "args:one two words" in result.stdout
    assert "appdir-matches:yes" in result.stdout
    assert f"appimage:{image}" in result.stdout
    assert "hello from the image" in result.stdout
    # the file-system process unmounts and removes the mount point once AppRun has ended
    for _ in range(50):
        if not _leftovers(image):
            break
        subprocess.run(["sleep", "0.1"], check=True)
    assert _leftovers(image) == []
    assert str(image.parent) not in Path("/proc/mounts").read_text()


def test_extract_and_run_needs_no_fuse_and_cleans_up(image):
    result = _run(image, "--appimage-extract-and-run", "x")
    assert result.returncode == 7, result.stderr
    assert "args:x" in result.stdout and "hello from the image" in result.stdout
    assert _leftovers(image) == []


def test_extract_unpacks_files_links_and_modes(image, tmp_path):
    result = _run(image, "--appimage-extract", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    root = tmp_path / "squashfs-root"
    assert (root / "data" / "hello.txt").read_text() == "hello from the image\n"
    assert os.readlink(root / "data" / "link.txt") == "hello.txt"
    assert os.access(root / "AppRun", os.X_OK)
    # never over what is already there
    again = _run(image, "--appimage-extract", cwd=tmp_path)
    assert again.returncode != 0 and "squashfs-root" in again.stderr
