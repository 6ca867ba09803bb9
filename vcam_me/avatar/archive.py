"""Avatar archives: one ``.zip`` file that carries an avatar folder to another machine.

An archive holds ``avatar.json``, exactly the files it lists (with their sha256), and the
avatar's ``consent.json`` when the folder has one. Nothing else.

An archive comes from someone else, so :func:`import_avatar_archive` treats it as hostile
until it has been checked whole:

* before a byte is extracted, every member is refused that could land outside the new
  folder or be something other than plain data: an absolute name, a drive letter, a ``..``
  part, a backslash, a control character, a name Windows reserves (``NUL``, ``COM1``…) or
  would change (a trailing dot or space), a symbolic link or other special file (the Unix
  mode in the member's external attributes), an encrypted member, a name given twice (also
  when only letter case differs, for case-insensitive disks), a file ``avatar.json`` does not
  list; and the whole archive when it has more than :data:`MAX_MEMBERS` members or would
  unpack to more than :data:`MAX_TOTAL_BYTES` (a zip bomb);
* extraction counts the bytes it really writes (a member's stated size can lie) and
  creates each file exclusively, so it never follows or replaces anything;
* it happens in a hidden staging folder beside the destination, which :meth:`Avatar.load`
  then checks (every file against its hash, the data's shapes), and only then is renamed
  to its final name. Any failure removes the staging folder: no partial avatar is left.
  An existing avatar is never replaced.

Only data is ever read from an avatar: JSON, ``.npy`` with ``allow_pickle=False``, PNG and
ONNX. An archive cannot carry code that runs (no pickle, no ``torch.load``).
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import unicodedata
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from vcam_me.avatar.avatar import Avatar
from vcam_me.errors import AvatarError, VcamError
from vcam_me.storage import atomic_write_bytes, new_folder

#: The avatar's description, always in an archive.
MANIFEST = "avatar.json"
#: The avatar's consent record: carried along when the folder has one, never required.
CONSENT_RECORD = "consent.json"
#: More members than this cannot be an avatar (it holds about ten files).
MAX_MEMBERS = 64
#: Largest total size once unpacked: an avatar with its own network is a few MB.
MAX_TOTAL_BYTES = 256 * 1024 * 1024
#: Largest ``avatar.json`` (it holds a few hashes).
MAX_MANIFEST_BYTES = 1024 * 1024
_CHUNK = 1 << 16
#: File names that are devices on Windows whatever their extension ("nul.npy" too).
_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,63}")


def check_avatar_name(name: str) -> str:
    """``name`` if it can be a folder name of its own on every system, else :class:`AvatarError`."""
    if not _NAME.fullmatch(name) or name.endswith((".", " ")) or ".." in name:
        raise AvatarError(f"avatar name {name!r}: use 1-64 letters, digits, '.', '_', '-' or spaces, "
                          "starting with a letter or digit")
    return name


def avatar_name_from(text: str) -> str:
    """A valid avatar name made from ``text`` (an archive's file name): other characters
    become '-', and the result is cut to 64 characters; "avatar" if nothing is left."""
    name = re.sub(r"[^A-Za-z0-9._ -]+", "-", text).replace("..", "-").strip(" .-_")[:64].rstrip(" .")
    return name if name and _NAME.fullmatch(name) else "avatar"


def export_avatar_archive(folder: str | Path, out: str | Path) -> Path:
    """Write the avatar in ``folder`` as the zip archive ``out`` (which must not exist).

    The avatar is loaded first, so a damaged avatar (a file that no longer matches its hash)
    is refused rather than passed on. Returns ``out``.
    """
    avatar = Avatar.load(folder)
    folder = Path(folder)
    out = Path(out)
    if out.exists():
        raise AvatarError(f"{out} already exists: choose another file name (it is never overwritten)")
    if not out.parent.is_dir():
        raise AvatarError(f"cannot write {out}: folder {out.parent} does not exist")
    names = [MANIFEST, *sorted(avatar.files)]
    if (folder / CONSENT_RECORD).is_file():
        names.append(CONSENT_RECORD)
    buffer = io.BytesIO()
    try:
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name in names:
                archive.write(folder / name, arcname=name)
        atomic_write_bytes(out, buffer.getvalue(), exclusive=True)
    except FileExistsError:
        raise AvatarError(f"{out} already exists: choose another file name (it is never overwritten)") from None
    except OSError as err:
        raise AvatarError(f"cannot write avatar archive {out}: {err.strerror or err}") from None
    return out


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why this member may not be extracted (its name or kind), or ``None``."""
    name = info.filename
    if not name or any(unicodedata.category(ch) == "Cc" for ch in name):
        return "has an empty name or control characters in its name"
    if "\\" in name:
        return "has a backslash in its name (a Windows path)"
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        return "has an absolute path"
    if ":" in name:
        return "has a ':' in its name (a drive letter or stream)"
    parts = name.rstrip("/").split("/")
    if any(part in ("", ".", "..") for part in parts):
        return "has an empty, '.' or '..' part in its path"
    if any(part.split(".")[0].upper() in _WINDOWS_DEVICES or part.endswith((".", " ")) for part in parts):
        return "has a name Windows reserves or changes (CON, NUL, COM1..., or a trailing dot or space)"
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind == stat.S_IFLNK:
        return "is a symbolic link"
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "is not a plain file"
    if info.flag_bits & 0x1:
        return "is encrypted"
    return None


def _read_manifest(archive: zipfile.ZipFile, label: str) -> dict:
    info = archive.getinfo(MANIFEST)
    if info.file_size > MAX_MANIFEST_BYTES:
        raise AvatarError(f"{label}: {MANIFEST} is {info.file_size} bytes, more than an avatar description holds")
    with archive.open(info) as handle:
        data = handle.read(MAX_MANIFEST_BYTES + 1)
    if len(data) > MAX_MANIFEST_BYTES:
        raise AvatarError(f"{label}: {MANIFEST} unpacks to more than its stated size")
    try:
        meta = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as err:
        raise AvatarError(f"{label}: {MANIFEST} is not valid JSON: {str(err).splitlines()[0][:200]}") from None
    files = meta.get("files") if isinstance(meta, dict) else None
    if not isinstance(files, dict) or not all(isinstance(k, str) for k in files):
        raise AvatarError(f"{label}: {MANIFEST} has no 'files' table of file name → sha256")
    return meta


def _checked_members(archive: zipfile.ZipFile, label: str) -> list[zipfile.ZipInfo]:
    """The archive's file members after every check that needs no extraction."""
    members = archive.infolist()
    if len(members) > MAX_MEMBERS:
        raise AvatarError(f"{label} has {len(members)} members, more than the {MAX_MEMBERS} an avatar can hold")
    seen: set[str] = set()
    total = 0
    for info in members:
        problem = _member_problem(info)
        if problem:
            raise AvatarError(f"{label}: member {info.filename!r} {problem}; refused")
        key = unicodedata.normalize("NFC", info.filename.rstrip("/")).casefold()
        if key in seen:
            raise AvatarError(f"{label}: member {info.filename!r} appears twice; refused")
        seen.add(key)
        total += info.file_size
        if total > MAX_TOTAL_BYTES:
            raise AvatarError(f"{label} unpacks to more than {MAX_TOTAL_BYTES // 2**20} MB; refused (a zip bomb?)")
    names = {info.filename for info in members}
    if MANIFEST not in names:
        raise AvatarError(f"{label} is not an avatar archive (no {MANIFEST} at its top)")
    listed = set(_read_manifest(archive, label)["files"])
    allowed = listed | {MANIFEST, CONSENT_RECORD}
    folders = {str(PurePosixPath(n).parent) + "/" for n in allowed}
    for info in members:
        if info.is_dir():
            if info.filename not in folders:
                raise AvatarError(f"{label}: folder {info.filename!r} holds no file that {MANIFEST} lists; refused")
        elif info.filename not in allowed:
            raise AvatarError(f"{label}: member {info.filename!r} is not listed in {MANIFEST}; refused")
    missing = sorted(listed - names)
    if missing:
        raise AvatarError(f"{label}: {MANIFEST} lists {missing[0]}, which the archive does not hold")
    return [info for info in members if not info.is_dir()]


def _extract(archive: zipfile.ZipFile, members: list[zipfile.ZipInfo], staging: Path, label: str) -> None:
    """Unpack ``members`` into ``staging``, counting the bytes really written."""
    root = staging.resolve()
    written = 0
    for info in members:
        target = staging.joinpath(*PurePosixPath(info.filename).parts)
        if not target.resolve().is_relative_to(root):  # belt and braces after _member_problem
            raise AvatarError(f"{label}: member {info.filename!r} would land outside the avatar folder; refused")
        target.parent.mkdir(parents=True, exist_ok=True)
        size = 0
        with archive.open(info) as src, open(target, "xb") as dst:
            while chunk := src.read(_CHUNK):
                size += len(chunk)
                written += len(chunk)
                if size > info.file_size or written > MAX_TOTAL_BYTES:
                    raise AvatarError(f"{label}: member {info.filename!r} unpacks to more than its stated size; refused")
                dst.write(chunk)


def import_avatar_archive(
    archive_path: str | Path,
    avatars_dir: str | Path,
    name: str,
    *,
    check_folder: Callable[[Path], None] | None = None,
) -> Avatar:
    """Unpack the avatar archive ``archive_path`` as ``avatars_dir / name`` and return it loaded.

    ``check_folder(staging)`` runs after :meth:`Avatar.load` has accepted the unpacked files,
    before they are published (the composition root checks the consent record there); it
    raises a :class:`~vcam_me.errors.VcamError` to refuse. Nothing is left behind on refusal.
    """
    archive_path = Path(archive_path)
    label = f"avatar archive {archive_path}"
    if not archive_path.is_file():
        raise AvatarError(f"{label} not found" if not archive_path.exists() else f"{label} is not a file")
    dest = Path(avatars_dir) / check_avatar_name(name)
    if dest.exists():
        raise AvatarError(f"an avatar named {name!r} already exists ({dest}); choose another name with --name")
    try:
        with zipfile.ZipFile(archive_path) as archive:
            members = _checked_members(archive, label)
            Path(avatars_dir).mkdir(parents=True, exist_ok=True)
            with new_folder(dest) as staging:
                _extract(archive, members, staging, label)
                _load_unpacked(staging, label)
                if check_folder is not None:
                    check_folder(staging)
    except FileExistsError:
        raise AvatarError(f"an avatar named {name!r} already exists ({dest}); choose another name with --name") from None
    except VcamError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, ValueError) as err:
        reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise AvatarError(f"{label} is not a readable zip archive: {reason}") from None
    except OSError as err:
        raise AvatarError(f"cannot import {label}: {err.strerror or err}") from None
    return Avatar.load(dest)


def _load_unpacked(staging: Path, label: str) -> None:
    """:meth:`Avatar.load` on the staging folder, its errors told in the archive's terms."""
    try:
        Avatar.load(staging)
    except AvatarError as err:
        reason = str(err).replace(f"{staging}{os.sep}", "").replace(str(staging), "the archive")
        raise AvatarError(f"{label}: {reason}") from None
