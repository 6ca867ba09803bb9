"""Atomic writes: the old file survives any failure, temporaries never look like data."""

from __future__ import annotations

import json
import os
import stat
import time

import pytest

from vcam_me import storage

POSIX = os.name == "posix"


def test_write_replaces_whole_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "settings.toml"
    storage.atomic_write_text(path, "a = 1\n")
    storage.atomic_write_text(path, "a = 2\n")
    assert path.read_text() == "a = 2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["settings.toml"]


def test_json_round_trip(tmp_path):
    path = storage.atomic_write_json(tmp_path / "x.json", {"name": "Zoë", "n": [1, 2]})
    assert json.loads(path.read_text(encoding="utf-8")) == {"name": "Zoë", "n": [1, 2]}
    assert path.read_text(encoding="utf-8").endswith("\n")


def test_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path, monkeypatch):
    path = tmp_path / "record.json"
    path.write_bytes(b"old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(storage.os, "replace", broken_replace)
    with pytest.raises(OSError, match="No space"):
        storage.atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_data_that_cannot_be_written_keeps_the_old_file(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    with pytest.raises(TypeError):
        storage.atomic_write_bytes(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_text() == "old"
    assert len(list(tmp_path.iterdir())) == 1


def test_exclusive_never_replaces(tmp_path):
    path = tmp_path / "issuer.key"
    storage.atomic_write_bytes(path, b"first", exclusive=True)
    with pytest.raises(FileExistsError):
        storage.atomic_write_bytes(path, b"second", exclusive=True)
    assert path.read_bytes() == b"first"
    assert len(list(tmp_path.iterdir())) == 1


@pytest.mark.skipif(not POSIX, reason="permission bits are POSIX")
def test_mode_is_exact_and_kept_on_replace(tmp_path):
    path = storage.atomic_write_bytes(tmp_path / "k", b"x", mode=0o600)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    os.chmod(path, 0o640)
    storage.atomic_write_bytes(path, b"y")  # no mode: the existing file's bits stay
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_temporary_names_are_recognised_and_do_not_match_data_globs(tmp_path):
    temp = storage._temporary_name(tmp_path / "7KQ4M2XD3J.json", storage.FILE_SUFFIX)
    folder = storage._temporary_name(tmp_path / "me", storage.FOLDER_SUFFIX)
    assert storage.is_temporary(temp) and storage.is_temporary(folder)
    assert not storage.is_temporary(tmp_path / "7KQ4M2XD3J.json") and not storage.is_temporary(tmp_path / ".hidden")
    temp.write_text("{}")
    assert list(tmp_path.glob("*.json")) == []


def test_new_folder_appears_whole(tmp_path):
    target = tmp_path / "avatar"
    with storage.new_folder(target) as staging:
        (staging / "a.bin").write_bytes(b"a")
        (staging / "sub").mkdir()
        (staging / "sub" / "b.bin").write_bytes(b"b")
        assert not target.exists()
    assert (target / "a.bin").read_bytes() == b"a" and (target / "sub" / "b.bin").read_bytes() == b"b"
    assert [p.name for p in tmp_path.iterdir()] == ["avatar"]


def test_new_folder_failure_leaves_nothing(tmp_path):
    target = tmp_path / "avatar"
    with pytest.raises(RuntimeError), storage.new_folder(target) as staging:
        (staging / "a.bin").write_bytes(b"a")
        raise RuntimeError("encoder failed")
    assert list(tmp_path.iterdir()) == []


def test_new_folder_replaces_an_empty_folder_but_never_a_full_one(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with storage.new_folder(empty) as staging:
        (staging / "x").write_text("x")
    assert (empty / "x").read_text() == "x"
    with pytest.raises(FileExistsError), storage.new_folder(empty):
        pass
    assert [p.name for p in empty.iterdir()] == ["x"]


def test_new_folder_refuses_a_folder_filled_meanwhile(tmp_path):
    target = tmp_path / "avatar"
    with pytest.raises(FileExistsError), storage.new_folder(target) as staging:
        (staging / "mine").write_text("new")
        target.mkdir()
        (target / "theirs").write_text("user's")
    assert [p.name for p in target.iterdir()] == ["theirs"]
    assert [p.name for p in tmp_path.iterdir()] == ["avatar"]


def test_remove_stale_temporaries_only_removes_old_temporaries(tmp_path):
    old_file = storage._temporary_name(tmp_path / "a.json", storage.FILE_SUFFIX)
    old_dir = storage._temporary_name(tmp_path / "me", storage.FOLDER_SUFFIX)
    young = storage._temporary_name(tmp_path / "b.json", storage.FILE_SUFFIX)
    data = tmp_path / "a.json"
    for path in (old_file, young, data):
        path.write_text("x")
    old_dir.mkdir()
    (old_dir / "avatar.json").write_text("{}")
    hour_ago = time.time() - 7200
    for path in (old_file, old_dir, data):
        os.utime(path, (hour_ago, hour_ago))
    removed = storage.remove_stale_temporaries(tmp_path)
    assert sorted(removed) == sorted([old_file, old_dir])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([young.name, "a.json"])
