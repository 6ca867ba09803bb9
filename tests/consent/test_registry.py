"""The consent registry: every way a record can fail is caught, with a clear one-line reason."""

from __future__ import annotations

import json
import os
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from vcam_me.consent.keys import IssuerKey, trust_public_key
from vcam_me.consent.records import (
    attested_licence,
    format_consent_code,
    hash_files,
    recorded_consent,
)
from vcam_me.consent.registry import (
    EXPIRED,
    NOT_YET_VALID,
    OUT_OF_SCOPE,
    REVOKED,
    TAMPERED,
    UNKNOWN,
    VALID,
    WRONG_AVATAR,
    ConsentRegistry,
    consent_error,
    parse_revocations,
)
from vcam_me.errors import ConsentError

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def avatar_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "avatar"
    folder.mkdir()
    (folder / "reference.png").write_bytes(b"reference image bytes")
    (folder / "network.onnx").write_bytes(b"network weights")
    return folder


def avatar_hashes(folder: Path) -> dict[str, str]:
    return hash_files([folder / "reference.png", folder / "network.onnx"], folder)


@pytest.fixture
def registry(tmp_path: Path) -> ConsentRegistry:
    return ConsentRegistry.open(tmp_path / "consent")


def attest(registry: ConsentRegistry, hashes: dict[str, str], **changes):
    args = dict(
        key=registry.issuer,
        avatar=hashes,
        licence="own face",
        operator="Alex Example",
        subject_name="Alex Example",
        now=NOW,
    )
    args.update(changes)
    record = attested_licence(**args)
    registry.add(record)
    return record


def recorded(registry: ConsentRegistry, hashes: dict[str, str], **changes):
    args = dict(
        key=registry.issuer,
        avatar=hashes,
        subject_name="Jane Doe",
        statement="I, Jane Doe, allow Alex to use an AI avatar of my face in video calls.",
        challenge="RIVER-4821",
        evidence_sha256="e" * 64,
        operator="Alex Example",
        now=NOW,
    )
    args.update(changes)
    record = recorded_consent(**args)
    registry.add(record)
    return record


# --------------------------------------------------------------------------- valid


def test_valid_by_id_record_and_file(registry: ConsentRegistry, avatar_dir: Path) -> None:
    hashes = avatar_hashes(avatar_dir)
    record = recorded(registry, hashes)
    later = NOW + timedelta(days=10)
    for ref in (record.code, record.code.lower().replace("-", ""), record.consent_id, record, registry.record_path(record.code)):
        verdict = registry.check(ref, hashes, later)
        assert verdict.ok and verdict.status == VALID, verdict.reason
        assert verdict.code == record.code and verdict.kind == "recorded" and verdict.subject_name == "Jane Doe"
    assert "valid until" in verdict.reason and "Jane Doe" in verdict.reason
    # The avatar's own copy of the record file, outside the registry, verifies as well.
    copy = avatar_dir.parent / "consent.json"
    copy.write_text(record.to_json(), encoding="utf-8")
    assert registry.check(copy, hashes, later).ok


def test_recording_verification_without_avatar_files(registry: ConsentRegistry, avatar_dir: Path) -> None:
    """``vcam-me verify`` has a decoded ID but no avatar files: the binding is skipped, the rest is not."""
    record = recorded(registry, avatar_hashes(avatar_dir))
    assert registry.check(record.consent_id, None, NOW).ok
    registry.revoke(record.code, "withdrawn", NOW)
    assert registry.check(record.consent_id, None, NOW).status == REVOKED


def test_attested_licence_verdict(registry: ConsentRegistry, avatar_dir: Path) -> None:
    hashes = avatar_hashes(avatar_dir)
    record = attest(registry, hashes, licence="Public domain (PD-Art)", subject_name="Mona Lisa")
    verdict = registry.check(record.code, hashes, NOW, use="evaluation")
    assert verdict.ok
    assert verdict.kind == "attested-licence"
    assert verdict.attester == "Alex Example"
    assert verdict.licence == "Public domain (PD-Art)"
    assert "attested by Alex Example" in verdict.reason and "Public domain (PD-Art)" in verdict.reason


@pytest.mark.skipif(os.name != "posix", reason="owner-only permission bits are POSIX")
def test_store_permissions(registry: ConsentRegistry, avatar_dir: Path) -> None:
    path = registry.add(attest(registry, avatar_hashes(avatar_dir)))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(registry.records_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(registry.folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((registry.folder / "keys" / "issuer.key").stat().st_mode) == 0o600


def test_add_is_idempotent_and_never_replaces(registry: ConsentRegistry, avatar_dir: Path) -> None:
    hashes = avatar_hashes(avatar_dir)
    record = attest(registry, hashes)
    registry.add(record)  # the same record again: fine
    other = attested_licence(
        key=registry.issuer, avatar=hashes, licence="other", operator="A", subject_name="B", now=NOW,
        consent_id=record.consent_id,
    )
    with pytest.raises(ConsentError, match="different consent record"):
        registry.add(other)
    assert registry.ids() == [record.consent_id]


def test_issue_signs_stores_and_picks_fresh_ids(registry: ConsentRegistry, avatar_dir: Path) -> None:
    hashes = avatar_hashes(avatar_dir)
    a = registry.issue_attested(hashes, licence="own face", operator="Alex", subject_name="Alex", now=NOW, valid_days=30)
    b = registry.issue_recorded(
        hashes, now=NOW, subject_name="Jane Doe", statement="I, Jane Doe, agree.", challenge="LAKE-7",
        evidence_sha256="e" * 64, operator="Alex",
    )
    assert a.consent_id != b.consent_id and registry.ids() == sorted([a.consent_id, b.consent_id])
    assert a.expires_at == NOW + timedelta(days=30)
    assert registry.check(a.code, hashes, NOW).kind == "attested-licence"
    assert registry.check(b.code, hashes, NOW).kind == "recorded"


# --------------------------------------------------------------------------- tampering


@pytest.mark.parametrize(
    "field, value",
    [
        ("subject_name", "Someone Else"),
        ("expires_at", "2099-01-01T00:00:00Z"),
        ("scope", ["evaluation", "live_call", "render"]),
        ("statement", "I allow anything at all."),
    ],
)
def test_changed_field_is_tampered(registry: ConsentRegistry, avatar_dir: Path, field: str, value) -> None:
    hashes = avatar_hashes(avatar_dir)
    record = recorded(registry, hashes)
    path = registry.record_path(record.code)
    data = json.loads(path.read_text(encoding="utf-8"))
    data[field] = value
    path.write_text(json.dumps(data), encoding="utf-8")
    verdict = registry.check(record.code, hashes, NOW)
    assert not verdict.ok and verdict.status == TAMPERED
    assert "signature does not match" in verdict.reason and record.code in verdict.reason
    assert "\n" not in verdict.reason


def test_changed_avatar_hash_in_record_is_tampered_not_valid(registry: ConsentRegistry, avatar_dir: Path) -> None:
    """Re-pointing a record at other files breaks the signature before any hash compare."""
    hashes = avatar_hashes(avatar_dir)
    record = recorded(registry, hashes)
    (avatar_dir / "network.onnx").write_bytes(b"someone else's network")
    swapped = avatar_hashes(avatar_dir)
    path = registry.record_path(record.code)
    data = json.loads(path.read_text(encoding="utf-8"))
    data["avatar"] = swapped
    path.write_text(json.dumps(data), encoding="utf-8")
    assert registry.check(record.code, swapped, NOW).status == TAMPERED


def test_wrong_signature_is_tampered(registry: ConsentRegistry, avatar_dir: Path) -> None:
    hashes = avatar_hashes(avatar_dir)
    record = recorded(registry, hashes)
    path = registry.record_path(record.code)
    data = json.loads(path.read_text(encoding="utf-8"))
    data["sig"] = ("B" if data["sig"][0] == "A" else "A") + data["sig"][1:]
    path.write_text(json.dumps(data), encoding="utf-8")
    verdict = registry.check(record.code, hashes, NOW)
    assert verdict.status == TAMPERED and "signature" in verdict.reason


def test_untrusted_key_is_tampered(registry: ConsentRegistry, avatar_dir: Path) -> None:
    hashes = avatar_hashes(avatar_dir)
    stranger = IssuerKey.generate()
    record = attested_licence(key=stranger, avatar=hashes, licence="own face", operator="M", subject_name="M", now=NOW)
    with pytest.raises(ValueError, match="not trusted"):
        registry.add(record)
    file = avatar_dir / "consent.json"
    file.write_text(record.to_json(), encoding="utf-8")
    verdict = registry.check(file, hashes, NOW)
    assert verdict.status == TAMPERED and "not trusted" in verdict.reason and stranger.key_id in verdict.reason
    # Once its public key is trusted (e.g. the key of the bundled sample avatar), it verifies.
    trust_public_key(registry.folder, stranger.public_key)
    assert ConsentRegistry.open(registry.folder).check(file, hashes, NOW).ok


def test_unreadable_record_file_is_tampered(registry: ConsentRegistry, avatar_dir: Path) -> None:
    hashes = avatar_hashes(avatar_dir)
    record = recorded(registry, hashes)
    registry.record_path(record.code).write_text('{"v": 1, "cid": ', encoding="utf-8")
    assert registry.check(record.code, hashes, NOW).status == TAMPERED
    assert registry.check_avatar(hashes, NOW).status == TAMPERED


def test_any_flipped_bit_in_a_record_file_is_tampered_and_names_the_file(registry: ConsentRegistry, avatar_dir: Path) -> None:
    """Every byte of the stored record and of the avatar's copy, one bit flipped at a time:
    never valid, always reported in one line that names the file."""
    hashes = avatar_hashes(avatar_dir)
    record = recorded(registry, hashes)
    stored = registry.record_path(record.code)
    copy = avatar_dir / "consent.json"
    copy.write_bytes(stored.read_bytes())
    original = stored.read_bytes()
    assert registry.check(copy, hashes, NOW).ok
    for i in range(len(original)):
        damaged = bytearray(original)
        damaged[i] ^= 0x01
        copy.write_bytes(bytes(damaged))
        verdict = registry.check(copy, hashes, NOW)
        assert verdict.status == TAMPERED and str(copy) in verdict.reason, (i, verdict.reason)
        assert "\n" not in verdict.reason
    copy.write_bytes(original)
    for i in range(0, len(original), 7):  # the stored copy: every seventh byte keeps this quick
        damaged = bytearray(original)
        damaged[i] ^= 0x01
        stored.write_bytes(bytes(damaged))
        verdict = registry.check(record.code, hashes, NOW)
        assert verdict.status == TAMPERED and str(stored) in verdict.reason, (i, verdict.reason)
    stored.write_bytes(original)
    assert registry.check(record.code, hashes, NOW).ok


def test_open_clears_temporaries_a_crashed_writer_left(registry: ConsentRegistry, avatar_dir: Path) -> None:
    from vcam_me import storage

    record = recorded(registry, avatar_hashes(avatar_dir))
    final = registry.record_path(record.code)
    old = storage._temporary_name(final, storage.FILE_SUFFIX)
    young = storage._temporary_name(final, storage.FILE_SUFFIX)
    old.write_bytes(final.read_bytes()[:40])
    young.write_bytes(final.read_bytes()[:40])
    os.utime(old, (0, 0))
    reopened = ConsentRegistry.open(registry.folder)
    assert not old.exists() and young.exists(), "only what no running writer can still own"
    assert reopened.ids() == [record.consent_id]


def test_copy_that_differs_from_the_stored_record(registry: ConsentRegistry, avatar_dir: Path) -> None:
    """Two different records validly signed under one ID: the stored one is authoritative."""
    hashes = avatar_hashes(avatar_dir)
    record = recorded(registry, hashes)
    twin = recorded_consent(
        key=registry.issuer, avatar=hashes, subject_name="Jane Doe", statement="Another statement.",
        challenge="LAKE-1", evidence_sha256="e" * 64, operator="Alex Example", now=NOW, consent_id=record.consent_id,
    )
    verdict = registry.check(twin, hashes, NOW)
    assert verdict.status == TAMPERED and "differs from the copy" in verdict.reason


# --------------------------------------------------------------------------- avatar binding


def test_swapped_avatar_file_is_wrong_avatar(registry: ConsentRegistry, avatar_dir: Path) -> None:
    record = recorded(registry, avatar_hashes(avatar_dir))
    (avatar_dir / "reference.png").write_bytes(b"a different person's photo")
    swapped = avatar_hashes(avatar_dir)
    verdict = registry.check(record.code, swapped, NOW)
    assert verdict.status == WRONG_AVATAR and not verdict.ok
    assert "'reference.png'" in verdict.reason and record.code in verdict.reason
    found = registry.check_avatar(swapped, NOW)
    assert found.status == WRONG_AVATAR and found.consent_id == record.consent_id


def test_missing_or_extra_avatar_file_is_wrong_avatar(registry: ConsentRegistry, avatar_dir: Path) -> None:
    hashes = avatar_hashes(avatar_dir)
    record = recorded(registry, hashes)
    fewer = {"reference.png": hashes["reference.png"]}
    assert registry.check(record.code, fewer, NOW).status == WRONG_AVATAR
    more = {**hashes, "extra.onnx": "0" * 64}
    verdict = registry.check(record.code, more, NOW)
    assert verdict.status == WRONG_AVATAR and "'extra.onnx' is not covered" in verdict.reason
    upper = {k: v.upper() for k, v in hashes.items()}
    assert registry.check(record.code, upper, NOW).ok  # hex case does not matter


# --------------------------------------------------------------------------- time


def test_expired(registry: ConsentRegistry, avatar_dir: Path) -> None:
    hashes = avatar_hashes(avatar_dir)
    record = recorded(registry, hashes, valid_days=30)
    assert registry.check(record.code, hashes, record.expires_at - timedelta(seconds=1)).ok
    verdict = registry.check(record.code, hashes, record.expires_at)
    assert verdict.status == EXPIRED and "expired on 2026-12-23T12:00:00Z" in verdict.reason
    assert "vcam-me consent attest" in verdict.reason  # says how to renew
    assert str(consent_error(verdict)).count("vcam-me consent attest") == 1
    assert registry.check_avatar(hashes, NOW + timedelta(days=31)).status == EXPIRED


def test_not_yet_valid(registry: ConsentRegistry, avatar_dir: Path) -> None:
    hashes = avatar_hashes(avatar_dir)
    record = recorded(registry, hashes)
    assert registry.check(record.code, hashes, NOW - timedelta(minutes=4)).ok  # clock skew allowed
    assert registry.check(record.code, hashes, NOW - timedelta(hours=1)).status == NOT_YET_VALID


# --------------------------------------------------------------------------- revocation


def test_revoked(registry: ConsentRegistry, avatar_dir: Path) -> None:
    hashes = avatar_hashes(avatar_dir)
    record = recorded(registry, hashes)
    keep = attest(registry, hashes)
    rev = registry.revoke(record.code.lower(), "subject withdrew consent", NOW + timedelta(days=1))
    assert rev.consent_id == record.consent_id
    verdict = registry.check(record.code, hashes, NOW + timedelta(days=2))
    assert verdict.status == REVOKED and not verdict.ok
    assert verdict.reason == f"consent record {record.code} was revoked on 2026-11-24T12:00:00Z: subject withdrew consent"
    assert registry.check(keep.code, hashes, NOW).ok  # other records unaffected
    assert registry.check_avatar(hashes, NOW).consent_id == keep.consent_id  # picks the valid one
    # Revoking again changes nothing; the first reason stands.
    assert registry.revoke(record.code, "again", NOW + timedelta(days=3)) == rev
    assert len(registry.revocations_path.read_bytes().splitlines()) == 1


def test_revoke_needs_known_id_and_reason(registry: ConsentRegistry, avatar_dir: Path) -> None:
    record = recorded(registry, avatar_hashes(avatar_dir))
    with pytest.raises(ConsentError, match="no consent record"):
        registry.revoke(format_consent_code(record.consent_id ^ 1), "typo", NOW)
    with pytest.raises(ConsentError, match="reason"):
        registry.revoke(record.code, "  ", NOW)


def test_revocation_seen_by_another_registry_instance(registry: ConsentRegistry, avatar_dir: Path) -> None:
    hashes = avatar_hashes(avatar_dir)
    record = recorded(registry, hashes)
    other = ConsentRegistry.open(registry.folder)  # another process, in effect
    assert other.check(record.code, hashes, NOW).ok
    before = other.change_stamp()
    registry.revoke(record.code, "withdrawn", NOW)
    assert other.change_stamp() != before
    assert other.check(record.code, hashes, NOW).status == REVOKED


def _two_revocations(registry: ConsentRegistry, hashes: dict[str, str]):
    a = recorded(registry, hashes)
    b = attest(registry, hashes)
    c = attest(registry, hashes, licence="stock photo, model release #42")
    registry.revoke(a.code, "first", NOW)
    registry.revoke(b.code, "second", NOW)
    return a, b, c


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda lines: [lines[1]], id="line-removed"),
        pytest.param(lambda lines: [lines[1], lines[0]], id="lines-reordered"),
        pytest.param(lambda lines: [lines[0].replace(b'"first"', b'"frist"'), lines[1]], id="line-edited"),
        pytest.param(lambda lines: [lines[0], b"garbage"], id="unreadable-line"),
    ],
)
def test_altered_revocation_list_fails_closed(registry: ConsentRegistry, avatar_dir: Path, damage) -> None:
    hashes = avatar_hashes(avatar_dir)
    _, _, c = _two_revocations(registry, hashes)
    lines = registry.revocations_path.read_bytes().splitlines()
    registry.revocations_path.write_bytes(b"\n".join(damage(lines)) + b"\n")
    verdict = registry.check(c.code, hashes, NOW)  # even a never-revoked record is refused
    assert verdict.status == TAMPERED and "revocation list was altered" in verdict.reason
    with pytest.raises(ConsentError, match="altered"):
        registry.revoke(c.code, "third", NOW)


def test_appended_lines_are_parsed_incrementally_and_still_checked(registry: ConsentRegistry, avatar_dir: Path) -> None:
    hashes = avatar_hashes(avatar_dir)
    a, b, c = _two_revocations(registry, hashes)
    data = registry.revocations_path.read_bytes()
    first_line = data[: data.index(b"\n") + 1]
    prefix = parse_revocations(first_line, registry.trusted)
    assert parse_revocations(data, registry.trusted, resume=prefix) == parse_revocations(data, registry.trusted)
    assert registry.check(c.code, hashes, NOW).ok  # warms the cache
    with open(registry.revocations_path, "ab") as handle:
        handle.write(b'{"cid":"' + c.code.replace("-", "").encode() + b'","reason":"forged"}\n')
    verdict = registry.check(c.code, hashes, NOW)
    assert verdict.status == TAMPERED and "line 3" in verdict.reason


def test_incomplete_last_revocation_line_fails_closed(registry: ConsentRegistry, avatar_dir: Path) -> None:
    hashes = avatar_hashes(avatar_dir)
    _, _, c = _two_revocations(registry, hashes)
    data = registry.revocations_path.read_bytes()
    registry.revocations_path.write_bytes(data[:-20])
    verdict = registry.check(c.code, hashes, NOW)
    assert verdict.status == TAMPERED
    assert str(registry.revocations_path) in verdict.reason and "incomplete" in verdict.reason
    assert "\n" not in str(consent_error(verdict))
    with pytest.raises(ConsentError, match="incomplete"):  # nothing more is appended to a torn list
        registry.revoke(c.code, "again", NOW)
    assert registry.revocations_path.read_bytes() == data[:-20]


def test_forged_revocation_line_still_revokes_but_flags_the_list(registry: ConsentRegistry, avatar_dir: Path) -> None:
    """A line without a valid signature is reported as tampering (fail closed), never ignored."""
    hashes = avatar_hashes(avatar_dir)
    record = recorded(registry, hashes)
    line = {"cid": record.code.replace("-", ""), "reason": "x", "revoked_at": "2026-11-23T12:00:00Z", "key_id": "0" * 16, "prev": "", "sig": "AA"}
    registry.revocations_path.write_text(json.dumps(line) + "\n", encoding="utf-8")
    verdict = registry.check(record.code, hashes, NOW)
    assert verdict.status == TAMPERED and "signature" in verdict.reason
    assert record.consent_id in registry.revocations().revoked


# --------------------------------------------------------------------------- unknown, scope, listing


def test_unknown_id(registry: ConsentRegistry, avatar_dir: Path) -> None:
    hashes = avatar_hashes(avatar_dir)
    verdict = registry.check("7KQ4M-2XD3J", hashes, NOW)
    assert verdict.status == UNKNOWN and not verdict.ok and "no consent record 7KQ4M-2XD3J" in verdict.reason
    assert registry.check("not a code", hashes, NOW).status == UNKNOWN
    assert registry.check(avatar_dir / "missing.json", hashes, NOW).status == UNKNOWN
    none = registry.check_avatar(hashes, NOW)
    assert none.status == UNKNOWN
    message = str(consent_error(none, avatar_dir))
    assert "vcam-me consent attest --avatar" in message and str(avatar_dir) in message
    assert "vcam-me setup" not in message  # no pointer to a command that does not exist yet


def test_scope(registry: ConsentRegistry, avatar_dir: Path) -> None:
    hashes = avatar_hashes(avatar_dir)
    record = recorded(registry, hashes, scope=("live_call",))
    assert registry.check(record.code, hashes, NOW, use="live_call").ok
    verdict = registry.check(record.code, hashes, NOW, use="render")
    assert verdict.status == OUT_OF_SCOPE and "'render'" in verdict.reason
    message = str(consent_error(verdict))
    assert message.startswith("cannot render: consent record") and "vcam-me consent attest" in message
    assert message.count("vcam-me consent attest") == 1  # the hint is given once


def test_list(registry: ConsentRegistry, avatar_dir: Path) -> None:
    hashes = avatar_hashes(avatar_dir)
    a = recorded(registry, hashes)
    b = attest(registry, hashes)
    registry.revoke(a.code, "withdrawn", NOW)
    statuses = {v.consent_id: v.status for v in registry.list(NOW)}
    assert statuses == {a.consent_id: REVOKED, b.consent_id: VALID}


def test_open_without_creating_a_key_still_trusts_the_folders_key(registry: ConsentRegistry, avatar_dir: Path) -> None:
    hashes = avatar_hashes(avatar_dir)
    record = recorded(registry, hashes)
    reader = ConsentRegistry.open(registry.folder, create_key=False)
    assert reader.check(record.code, hashes, NOW).ok
    registry.revoke(record.code, "withdrawn", NOW)
    assert reader.check(record.code, hashes, NOW).status == REVOKED
    (registry.folder / "keys" / "issuer.key").unlink()  # e.g. another account, no access to the key
    verify_only = ConsentRegistry.open(registry.folder, create_key=False)
    assert verify_only.issuer is None
    assert verify_only.check(record.code, hashes, NOW).status == REVOKED


def test_open_without_key(tmp_path: Path) -> None:
    registry = ConsentRegistry.open(tmp_path / "c", create_key=False)
    assert registry.issuer is None and not (tmp_path / "c" / "keys").exists()
    with pytest.raises(ConsentError, match="no issuer key"):
        registry.revoke("7KQ4M-2XD3J", "x", NOW)
    with pytest.raises(ConsentError, match="no issuer key"):
        registry.issue_attested({"a.png": "0" * 64}, licence="x", operator="y", subject_name="z", now=NOW)


def test_bundled_sample_avatar_end_to_end(registry: ConsentRegistry, tmp_path: Path) -> None:
    """attest → check → swap the reference photo → refused, on a copy of the real sample avatar."""
    import shutil

    from vcam_me.consent.records import hash_avatar_folder

    sample = Path(__file__).resolve().parents[2] / "assets" / "avatars" / "sample"
    if not (sample / "avatar.json").is_file():
        pytest.skip("no bundled sample avatar")
    avatar = shutil.copytree(sample, tmp_path / "sample")
    record = registry.issue_attested(
        hash_avatar_folder(avatar), licence="royalty-free stock photo (see SOURCE.md)", operator="vcam_me project",
        subject_name="Sample avatar", now=NOW,
    )
    (avatar / "consent.json").write_text(record.to_json(), encoding="utf-8")
    assert registry.check(avatar / "consent.json", hash_avatar_folder(avatar), NOW, use="evaluation").ok
    (avatar / "reference.png").write_bytes((avatar / "reference.png").read_bytes()[:-1] + b"\0")
    verdict = registry.check(avatar / "consent.json", hash_avatar_folder(avatar), NOW)
    assert verdict.status == WRONG_AVATAR and "'reference.png'" in verdict.reason
    assert registry.check_avatar(hash_avatar_folder(avatar), NOW).status == WRONG_AVATAR
