"""Crash-safe writes of the user's files: avatars, consent records, keys, settings.

A write either lands whole or not at all. Each file is first written to a temporary file in
the same folder (so the final rename never crosses file systems), flushed to the disk with
``fsync``, and only then renamed over its final name; the folder itself is then synced so
the rename survives a power cut (POSIX; Windows has no way to sync a folder). A process
killed at any moment therefore leaves either the previous version or the new one, never a
torn mix. On any error the temporary file is removed and the old file is left as it was.

Temporaries are hidden and carry their own suffix (``.<name>.<random>.tmp`` for files,
``.<name>.<random>.partial`` for folders), so no loader that looks for ``*.json``,
``*.pub`` or ``avatar.json`` folders mistakes one for data after a crash;
:func:`is_temporary` names them and :func:`remove_stale_temporaries` clears old ones.

``exclusive=True`` publishes the file only if the name is still free (a hard link, which
fails rather than replace), for files that must never be overwritten: keys and signed
consent records.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

FILE_SUFFIX = ".tmp"
FOLDER_SUFFIX = ".partial"
_POSIX = os.name == "posix"


def _temporary_name(final: Path, suffix: str) -> Path:
    return final.with_name(f".{final.name}.{uuid.uuid4().hex[:12]}{suffix}")


def is_temporary(path: Path) -> bool:
    """Whether ``path`` is a temporary left by this module (never data)."""
    name = Path(path).name
    return name.startswith(".") and (name.endswith((FILE_SUFFIX, FOLDER_SUFFIX)))


def sync_folder(folder: Path) -> None:
    """Make a rename or creation inside ``folder`` durable (POSIX only; a no-op elsewhere)."""
    if not _POSIX:
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems (and network mounts) refuse fsync on folders
        pass
    finally:
        os.close(fd)


def _publish_exclusive(temp: Path, final: Path) -> None:
    """Give ``temp`` the name ``final`` only if ``final`` does not exist (FileExistsError)."""
    try:
        os.link(temp, final)  # atomic, and fails rather than replace
    except FileExistsError:
        raise
    except (OSError, NotImplementedError, AttributeError):
        # a file system without hard links: Windows' rename refuses an existing target by
        # itself; on POSIX the check and the rename are two steps (a narrow race, no tear)
        if _POSIX and os.path.lexists(final):
            raise FileExistsError(17, "File exists", str(final)) from None
        os.rename(temp, final)
        return
    os.unlink(temp)


def atomic_write_bytes(path: str | Path, data: bytes, *, mode: int | None = None, exclusive: bool = False) -> Path:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one.

    Args:
        path: the final file; its folder must exist.
        data: the whole content.
        mode: permission bits of the new file (e.g. ``0o600``, set exactly, never briefly
            wider); ``None`` keeps an existing file's bits, or uses the umask's default.
        exclusive: raise :class:`FileExistsError` instead of replacing an existing file.

    Returns ``path``.
    """
    final = Path(path)
    if mode is None and final.exists() and _POSIX:
        mode = final.stat().st_mode & 0o7777
    temp = _temporary_name(final, FILE_SUFFIX)
    # mode None: 0o666 less the umask, as a plain open() would make it
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666 if mode is None else mode & 0o777)
    try:
        try:
            if mode is not None and _POSIX:
                os.fchmod(fd, mode)  # exact: the umask may have narrowed it
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if exclusive:
            _publish_exclusive(temp, final)
        else:
            os.replace(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    sync_folder(final.parent)
    return final


def atomic_write_text(path: str | Path, text: str, *, encoding: str = "utf-8", mode: int | None = None,
                      exclusive: bool = False) -> Path:
    """:func:`atomic_write_bytes` of ``text`` encoded (UTF-8 by default, no newline translation)."""
    return atomic_write_bytes(path, text.encode(encoding), mode=mode, exclusive=exclusive)


def atomic_write_json(path: str | Path, value: Any, *, indent: int | None = 2, mode: int | None = None,
                      exclusive: bool = False) -> Path:
    """``value`` as JSON (UTF-8, a final newline), written atomically."""
    return atomic_write_text(path, json.dumps(value, indent=indent, ensure_ascii=False) + "\n", mode=mode,
                             exclusive=exclusive)


def atomic_copy(source: str | Path, dest: str | Path, *, mode: int | None = None) -> Path:
    """Copy ``source`` to ``dest`` atomically (the whole file is read into memory)."""
    return atomic_write_bytes(dest, Path(source).read_bytes(), mode=mode)


def _sync_tree(folder: Path) -> None:
    for root, dirs, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY | getattr(os, "O_BINARY", 0))
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        sync_folder(Path(root))


@contextmanager
def new_folder(path: str | Path) -> Iterator[Path]:
    """Build a new folder whole or not at all.

    Yields a hidden staging folder beside ``path``; write everything into it. When the block
    ends without an exception, every file is synced and the staging folder is renamed to
    ``path`` in one step; on an exception (or a kill) ``path`` is never created and the
    staging folder is removed (or, after a kill, left as an ignored ``.partial``).

    ``path`` must not exist, or be an empty folder (replaced by the new one). A non-empty
    folder is never replaced: :class:`FileExistsError`, before and after the block.
    """
    final = Path(path)
    _check_free(final)
    staging = _temporary_name(final, FOLDER_SUFFIX)
    staging.mkdir()
    try:
        yield staging
        publish_folder(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _check_free(final: Path) -> None:
    if final.exists() and (not final.is_dir() or any(final.iterdir())):
        raise FileExistsError(17, "File exists", str(final))


def publish_folder(finished: str | Path, path: str | Path) -> Path:
    """Sync every file of the finished folder ``finished`` and rename it to ``path`` (same
    file system) in one step. ``path`` must not exist or be an empty folder; a non-empty
    one is never replaced (:class:`FileExistsError`, and ``finished`` stays where it was)."""
    finished, final = Path(finished), Path(path)
    _sync_tree(finished)
    _check_free(final)
    if final.is_dir() and not _POSIX:
        final.rmdir()  # Windows will not rename onto a folder; POSIX replaces an empty one
    os.rename(finished, final)
    sync_folder(final.parent)
    return final


def remove_stale_temporaries(folder: str | Path, *, older_than_s: float = 3600.0) -> list[Path]:
    """Delete this module's temporaries in ``folder`` (not below it) that are older than
    ``older_than_s``: left by a crashed writer. Younger ones may belong to a running write.
    Returns what was removed."""
    removed = []
    cutoff = time.time() - older_than_s
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not is_temporary(entry):
            continue
        try:
            if entry.lstat().st_mtime > cutoff:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
        except OSError:
            continue
    return removed
