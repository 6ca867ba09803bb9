"""Writers killed with SIGKILL at random moments leave the old version or the new, never a torn file.

Each kind of user file has its real writer (the settings dialog's save, the avatar's save, the
consent registry, the issuer key factory, the avatar's consent.json) run in a child process
(``os.fork``: a fresh interpreter per kill would spend most of the time importing) that
rewrites the file in a loop, alternating two valid versions, or, for the files that are
never replaced (keys, signed records, new avatar folders), makes new ones one after
another. The parent kills the child after a random, seeded delay spread over a few write
durations, then opens what is on disk with the project's own loader. Temporaries left by a
killed write must be recognisable as such (:func:`vcam_me.storage.is_temporary`), so no
loader takes them for data, and :func:`~vcam_me.storage.remove_stale_temporaries` clears them.

The checks can fail: :func:`test_the_checks_reject_a_torn_file` feeds each one a file cut in
half, as a plain non-atomic write killed midway would leave it.
"""

from __future__ import annotations

import dataclasses
import os
import random
import select
import signal
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest

from vcam_me import storage
from vcam_me.avatar.avatar import Avatar, save_avatar
from vcam_me.consent import keys as K
from vcam_me.consent.records import hash_avatar_folder, record_from_json
from vcam_me.consent.registry import ConsentRegistry
from vcam_me.errors import VcamError

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="the writer is killed in a forked child (POSIX)"),
]

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "assets" / "avatars" / "sample"
NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=timezone.utc)
#: Kills per writer kind.
KILLS = 20
#: The delay before each kill is uniform in [0, SPREAD × one write's duration].
SPREAD = 3.0


@dataclasses.dataclass
class KillReport:
    outcomes: list = dataclasses.field(default_factory=list)
    #: Kills that left a new temporary behind: the writer was stopped mid-write.
    kills_mid_write: int = 0


def _run_and_kill(loop: Callable[[Callable[[], None], int], None], check: Callable[[], object], folder: Path,
                  write_s: float, seed: int) -> KillReport:
    """Fork ``loop(ready, run)`` (it calls ``ready()`` once its first write is complete, then
    writes on forever), kill it after a random delay, ``check()`` what is on disk; ``KILLS``
    times (``run`` counts them, for writers that need fresh names)."""
    rng = random.Random(seed)
    report = KillReport()
    temporaries: set[Path] = set()
    for run in range(KILLS):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            try:
                os.close(read_end)
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)
                os.dup2(devnull, 2)
                loop(lambda fd=write_end: os.write(fd, b"r"), run)
            finally:
                os._exit(1)
        os.close(write_end)
        try:
            readable, _, _ = select.select([read_end], [], [], 30.0)
            assert readable and os.read(read_end, 1) == b"r", "the writer died or hung before its first write"
            time.sleep(rng.uniform(0.0, SPREAD * write_s))
        finally:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read_end)
        now_left = {p for p in folder.rglob("*") if storage.is_temporary(p)}
        report.kills_mid_write += bool(now_left - temporaries)
        temporaries = now_left
        report.outcomes.append(check())
    return report


def _timed(write: Callable[[], object]) -> float:
    """One write's duration: the median of three (one slow outlier on a busy machine would
    stretch every delay)."""
    durations = []
    for _ in range(3):
        t0 = time.perf_counter()
        write()
        durations.append(time.perf_counter() - t0)
    return max(sorted(durations)[1], 1e-3)


def _only_data_and_temporaries(folder: Path, data: set[str]) -> None:
    for entry in folder.iterdir():
        assert entry.name in data or storage.is_temporary(entry), f"unexpected {entry.name} in {folder}"


def _clean(folder: Path) -> None:
    for sub in [folder, *(p for p in folder.rglob("*") if p.is_dir() and not storage.is_temporary(p))]:
        storage.remove_stale_temporaries(sub, older_than_s=0)
    assert not [p for p in folder.rglob("*") if storage.is_temporary(p)]


# --------------------------------------------------------------------------- the checks


def check_settings(path: Path, versions: dict[str, int]) -> int:
    from vcam_me.config import config_from_dict, load_config
    from vcam_me.ui.settings import read_user_settings

    fps = config_from_dict(read_user_settings(path), load_config(use_user_config=False)).output.fps
    assert path.read_text(encoding="utf-8") in versions, "neither version"
    return fps


def check_avatar_update(folder: Path) -> str:
    return Avatar.load(folder).meta["source"]


def check_new_avatars(root: Path) -> int:
    # the app's listing rule (vcam_me.app.avatar_choices)
    listed = [p for p in root.glob("*") if (p / "avatar.json").is_file() and not storage.is_temporary(p)]
    for entry in root.iterdir():
        assert entry in listed or storage.is_temporary(entry), f"{entry.name}: a half-made avatar folder"
    for folder in listed:
        Avatar.load(folder)
    return len(listed)


def check_records(folder: Path, hashes: dict[str, str]) -> int:
    registry = ConsentRegistry.open(folder, create_key=False)
    for cid in registry.ids():
        assert registry.check(cid, hashes, NOW).ok
    _only_data_and_temporaries(registry.records_dir, {p.name for p in registry.records_dir.glob("*.json")})
    return len(registry.ids())


def check_keys(root: Path) -> int:
    made = 0
    for folder in root.iterdir():
        if (folder / K.KEYS_DIR / K.PRIVATE_KEY_FILE).exists():
            K.load_issuer_key(folder)  # also checks it against issuer.pub when that was written
            made += 1
        if (folder / K.KEYS_DIR).is_dir():
            _only_data_and_temporaries(folder / K.KEYS_DIR, {K.PRIVATE_KEY_FILE, K.PUBLIC_KEY_FILE})
    return made


def check_avatar_consent(folder: Path, registry: ConsentRegistry, versions: dict[str, str]) -> str:
    path = folder / "consent.json"
    text = path.read_text(encoding="utf-8")
    assert text in versions, "neither record"
    assert registry.check(path, hash_avatar_folder(folder), NOW).ok
    for kept in folder.glob("consent-*.json"):
        record_from_json(kept.read_bytes())  # every kept copy is a whole record
    return versions[text]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def sample() -> Avatar:
    """The sample avatar at a quarter of its size: the PNG encoding of the full portrait
    takes most of a second, and what is tested is the writing, not the encoder."""
    import cv2

    full = Avatar.load(SAMPLE)
    small = cv2.resize(full.image, (full.image_size[0] // 4, full.image_size[1] // 4), interpolation=cv2.INTER_AREA)
    return dataclasses.replace(full, image=small, meta=dict(full.meta, image_size=[small.shape[1], small.shape[0]]))


def _with_source(avatar: Avatar, source: str) -> Avatar:
    return Avatar(avatar.image, avatar.landmarks, avatar.transform, avatar.blendshapes, {},
                  dict(avatar.meta, source=source), None)


# --------------------------------------------------------------------------- the kill runs


def test_settings_survive_kills(tmp_path):
    from vcam_me.ui.settings import save_settings

    path = tmp_path / "config.toml"
    changes = {60: {"output": {"fps": 60}}, 30: {"output": {"fps": 30}}}
    versions = {}
    for fps, change in changes.items():
        save_settings(change, path)
        versions[path.read_text(encoding="utf-8")] = fps
    write_s = _timed(lambda: save_settings(changes[60], path))

    def loop(ready, run):
        save_settings(changes[60], path)
        ready()
        for i in range(1, 10**9):
            save_settings(changes[30 if i % 2 else 60], path)

    report = _run_and_kill(loop, lambda: check_settings(path, versions), tmp_path, write_s, seed=1)
    assert set(report.outcomes) == {30, 60}, f"kills landed at different points: {report}"
    _clean(tmp_path)
    _only_data_and_temporaries(tmp_path, {"config.toml"})


def test_an_avatar_update_survives_kills(tmp_path, sample):
    folder = save_avatar(_with_source(sample, "A"), tmp_path / "av").folder
    versions = {"A": _with_source(sample, "A"), "B": _with_source(sample, "B")}
    write_s = _timed(lambda: save_avatar(versions["A"], folder))

    def loop(ready, run):
        save_avatar(versions["A"], folder)
        ready()
        for i in range(1, 10**9):
            save_avatar(versions["B" if i % 2 else "A"], folder)

    report = _run_and_kill(loop, lambda: check_avatar_update(folder), tmp_path, write_s, seed=2)
    assert set(report.outcomes) == {"A", "B"}, report
    _clean(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == sorted([*Avatar.load(folder).files, "avatar.json"])


def test_new_avatar_folders_appear_whole_despite_kills(tmp_path, sample):
    root = tmp_path / "avatars"
    root.mkdir()
    avatar = _with_source(sample, "new")
    fresh = iter(range(3))
    write_s = _timed(lambda: save_avatar(avatar, tmp_path / f"timing{next(fresh)}"))
    def loop(ready, run):
        for k in range(10**9):
            save_avatar(avatar, root / f"av{run}-{k}")
            if k == 0:
                ready()

    report = _run_and_kill(loop, lambda: check_new_avatars(root), root, write_s, seed=3)
    assert report.outcomes[-1] >= KILLS  # every run finished at least its first avatar
    _clean(root)
    assert check_new_avatars(root) == report.outcomes[-1]


def test_consent_records_are_whole_despite_kills(tmp_path):
    folder = tmp_path / "consent"
    registry = ConsentRegistry.open(folder)
    hashes = {"reference.png": "a" * 64}

    def issue():
        return registry.issue_attested(hashes, licence="own face", operator="Alex", subject_name="Alex", now=NOW)

    write_s = _timed(issue)

    def loop(ready, run):
        issue()
        ready()
        while True:
            issue()

    report = _run_and_kill(loop, lambda: check_records(folder, hashes), folder, write_s, seed=4)
    assert report.outcomes[-1] >= KILLS + 1
    _clean(folder)
    assert check_records(folder, hashes) == report.outcomes[-1]


def test_the_avatar_consent_copy_survives_kills(tmp_path, sample):
    from vcam_me.app import _put_avatar_record

    folder = save_avatar(_with_source(sample, "A"), tmp_path / "av").folder
    registry = ConsentRegistry.open(tmp_path / "consent")
    hashes = hash_avatar_folder(folder)
    records = {name: registry.issue_attested(hashes, licence=f"licence {name}", operator="Alex", subject_name="Alex",
                                             now=NOW) for name in "AB"}
    versions = {rec.to_json(): name for name, rec in records.items()}
    _put_avatar_record(folder, records["A"], registry, NOW)
    write_s = _timed(lambda: _put_avatar_record(folder, records["A"], registry, NOW))

    def loop(ready, run):
        _put_avatar_record(folder, records["A"], registry, NOW)
        ready()
        for i in range(1, 10**9):
            _put_avatar_record(folder, records["B" if i % 2 else "A"], registry, NOW)

    report = _run_and_kill(loop, lambda: check_avatar_consent(folder, registry, versions), tmp_path, write_s, seed=5)
    assert set(report.outcomes) == {"A", "B"}, report


def test_issuer_keys_are_whole_despite_kills(tmp_path):
    root = tmp_path / "keys"
    root.mkdir()
    fresh = iter(range(3))
    write_s = _timed(lambda: K.create_issuer_key(tmp_path / f"timing{next(fresh)}"))
    def loop(ready, run):
        for k in range(10**9):
            K.create_issuer_key(root / f"f{run}-{k}")
            if k == 0:
                ready()

    report = _run_and_kill(loop, lambda: check_keys(root), root, write_s, seed=6)
    assert report.outcomes[-1] >= KILLS
    _clean(root)
    assert check_keys(root) == report.outcomes[-1]


# --------------------------------------------------------------------------- the checks can fail


def _cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_the_checks_reject_a_torn_file(tmp_path, sample):
    """What a plain ``open(path, "w").write(...)`` killed midway leaves: each check refuses it."""
    from vcam_me.ui.settings import save_settings

    settings = tmp_path / "config.toml"
    save_settings({"output": {"fps": 30}}, settings)
    versions = {settings.read_text(encoding="utf-8"): 30}
    assert check_settings(settings, versions) == 30
    _cut_in_half(settings)
    with pytest.raises((AssertionError, VcamError)):
        check_settings(settings, versions)

    folder = save_avatar(_with_source(sample, "A"), tmp_path / "av").folder
    assert check_avatar_update(folder) == "A"
    for name in ("avatar.json", "landmarks.npy"):
        original = (folder / name).read_bytes()
        _cut_in_half(folder / name)
        with pytest.raises(VcamError):
            check_avatar_update(folder)
        (folder / name).write_bytes(original)

    root = tmp_path / "avatars"
    root.mkdir()
    save_avatar(_with_source(sample, "A"), root / "one")
    assert check_new_avatars(root) == 1
    _cut_in_half(root / "one" / "reference.png")
    with pytest.raises(VcamError):
        check_new_avatars(root)

    consent = tmp_path / "consent"
    registry = ConsentRegistry.open(consent)
    hashes = {"reference.png": "a" * 64}
    record = registry.issue_attested(hashes, licence="own face", operator="Alex", subject_name="Alex", now=NOW)
    assert check_records(consent, hashes) == 1
    _cut_in_half(registry.record_path(record.consent_id))
    with pytest.raises(AssertionError):
        check_records(consent, hashes)

    keys = tmp_path / "keys"
    K.create_issuer_key(keys / "f0")
    assert check_keys(keys) == 1
    _cut_in_half(keys / "f0" / K.KEYS_DIR / K.PRIVATE_KEY_FILE)
    with pytest.raises(VcamError):
        check_keys(keys)
