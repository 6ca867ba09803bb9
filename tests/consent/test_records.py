"""Consent records: codes, canonical JSON, signatures, strict parsing, keys on disk."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from vcam_me.consent.keys import (
    IssuerKey,
    TrustedKeys,
    create_issuer_key,
    key_id_of,
    load_issuer_key,
    load_or_create_issuer_key,
    load_trusted_keys,
    trust_public_key,
)
from vcam_me.consent.records import (
    ID_BITS,
    KIND_ATTESTED,
    KIND_RECORDED,
    ConsentRecord,
    RecordError,
    attested_licence,
    canonical_json,
    format_consent_code,
    hash_avatar_folder,
    hash_files,
    new_consent_id,
    parse_consent_code,
    record_from_json,
    recorded_consent,
    sign_record,
    verify_signature,
)
from vcam_me.errors import ConsentError

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=timezone.utc)
AVATAR = {"reference.png": "1" * 64, "network.onnx": "2" * 64}
EVIDENCE = hashlib.sha256(b"consent video").hexdigest()
posix_only = pytest.mark.skipif(os.name != "posix", reason="owner-only permission bits are POSIX")


@pytest.fixture(scope="module")
def key() -> IssuerKey:
    return IssuerKey.generate()


@pytest.fixture(scope="module")
def trusted(key: IssuerKey) -> TrustedKeys:
    return TrustedKeys.of(key.public_key)


def make_recorded(key: IssuerKey, **changes) -> ConsentRecord:
    args = dict(
        key=key,
        avatar=AVATAR,
        subject_name="Zoë Müller",
        statement="I, Zoë Müller, allow Alex to use an AI avatar of my face in video calls, until 2027-02-21.",
        challenge="RIVER-4821",
        evidence_sha256=EVIDENCE,
        operator="Alex Example",
        now=NOW,
        consent_id=0x123456789ABC,
    )
    args.update(changes)
    return recorded_consent(**args)


# --------------------------------------------------------------------------- consent codes


@pytest.mark.parametrize("consent_id", [0, 1, 0x123456789ABC, (1 << ID_BITS) - 1, 31, 32])
def test_code_round_trip(consent_id: int) -> None:
    code = format_consent_code(consent_id)
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}", code)
    assert parse_consent_code(code) == consent_id


def test_code_holds_all_48_bits() -> None:
    ids = {new_consent_id() for _ in range(200)}
    assert all(0 < i < (1 << ID_BITS) for i in ids)
    assert len({format_consent_code(i) for i in ids}) == len(ids)
    assert format_consent_code((1 << ID_BITS) - 1) == "7ZZZZ-ZZZZZ"


def test_new_id_avoids_taken() -> None:
    taken = {new_consent_id() for _ in range(5)}
    assert new_consent_id(taken) not in taken


@pytest.mark.parametrize(
    "typed",
    ["0J4M0-J1KQ2", "0j4m0-j1kq2", "0J4M0J1KQ2", " 0J4M0 J1KQ2 ", "OJ4MO-JIKQ2", "oj4mo-jlkq2", "0J-4M0-J1-KQ2", "0J4M0_J1KQ2"],
)
def test_code_typo_tolerance(typed: str) -> None:
    assert parse_consent_code(typed) == parse_consent_code("0J4M0-J1KQ2")


@pytest.mark.parametrize(
    "bad, why",
    [("0J4M0-J1KQ", "10 symbols"), ("0J4M0-J1KQ22", "10 symbols"), ("0J4M0-J1KQU", "'U'"), ("8ZZZZ-ZZZZZ", "0-7"), ("", "10 symbols")],
)
def test_code_rejects(bad: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_consent_code(bad)


def test_code_range_and_type() -> None:
    with pytest.raises(ValueError):
        format_consent_code(1 << ID_BITS)
    with pytest.raises(ValueError):
        format_consent_code(-1)
    with pytest.raises(TypeError):
        format_consent_code(True)
    assert parse_consent_code(12345) == 12345


def test_code_is_accepted_by_the_label() -> None:
    from vcam_me.consent.label import format_consent_code as label_format

    code = format_consent_code(0x123456789ABC)
    assert label_format(code) == code


# --------------------------------------------------------------------------- canonical JSON


def test_canonical_json_is_sorted_compact_utf8() -> None:
    assert canonical_json({"b": 1, "a": {"z": "é", "y": [1, "x"]}}) == '{"a":{"y":[1,"x"],"z":"é"},"b":1}'.encode("utf-8")
    with pytest.raises(RecordError, match="floating"):
        canonical_json({"a": 1.5})


# --------------------------------------------------------------------------- sign / verify / parse


def test_round_trip(key: IssuerKey, trusted: TrustedKeys) -> None:
    record = make_recorded(key)
    text = record.to_json()
    assert "\n" not in text and ": " not in text
    data = json.loads(text)
    assert list(data) == sorted(data)
    assert data["cid"] == record.code.replace("-", "") and data["issuer_key_id"] == key.key_id
    back = record_from_json(text.encode("utf-8"))
    assert back == record
    verify_signature(back, trusted)
    assert back.kind == KIND_RECORDED and back.attester is None
    assert back.expires_at == NOW + timedelta(days=90)
    with pytest.raises(TypeError):
        back.avatar["network.onnx"] = "3" * 64  # a verified record cannot be re-pointed


def test_pretty_printed_file_still_verifies(key: IssuerKey, trusted: TrustedKeys) -> None:
    """The signature covers the canonical form, not the file's layout."""
    record = make_recorded(key)
    pretty = json.dumps(json.loads(record.to_json()), indent=2, ensure_ascii=True)
    verify_signature(record_from_json(pretty), trusted)


@pytest.mark.parametrize(
    "field, value",
    [
        ("subject_name", "Someone Else"),
        ("statement", "I allow anything."),
        ("challenge", "RIVER-4822"),
        ("evidence_sha256", "f" * 64),
        ("operator", "Mallory"),
        ("expires_at", "2099-01-01T00:00:00Z"),
        ("issued_at", "2026-11-22T12:00:00Z"),
        ("scope", ["evaluation", "live_call", "render"]),
        ("avatar", {"reference.png": "1" * 64, "network.onnx": "3" * 64}),
        ("cid", "0J4M0J1KQ3"),
    ],
)
def test_changed_field_breaks_signature(key: IssuerKey, trusted: TrustedKeys, field: str, value) -> None:
    data = json.loads(make_recorded(key).to_json())
    data[field] = value
    record = record_from_json(json.dumps(data))
    with pytest.raises(RecordError, match="signature does not match"):
        verify_signature(record, trusted)


def test_wrong_signature(key: IssuerKey, trusted: TrustedKeys) -> None:
    record = make_recorded(key)
    flipped = bytes([record.signature[0] ^ 1]) + record.signature[1:]
    bad = replace(record, signature=flipped)
    with pytest.raises(RecordError, match="signature does not match"):
        verify_signature(bad, trusted)
    unsigned = replace(record, signature=b"")
    with pytest.raises(RecordError, match="not signed"):
        verify_signature(unsigned, trusted)


def test_untrusted_key(key: IssuerKey, trusted: TrustedKeys) -> None:
    stranger = IssuerKey.generate()
    record = make_recorded(stranger)
    with pytest.raises(RecordError, match="not trusted"):
        verify_signature(record, trusted)
    # Claiming a trusted key ID does not help: the trusted key does not verify it.
    forged = replace(record, issuer_key_id=key.key_id)
    with pytest.raises(RecordError, match="signature does not match"):
        verify_signature(forged, trusted)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda d: d.update(extra="x"), "unexpected"),
        (lambda d: d.pop("scope"), "missing"),
        (lambda d: d.update(v=2), "version"),
        (lambda d: d.update(sig="***"), "base64url"),
        (lambda d: d.update(expires_at="2027-02-21 12:00"), "invalid"),
        (lambda d: d.update(kind="borrowed"), "kind"),
        (lambda d: d.update(scope=["render", "live_call"]), "sorted"),
        (lambda d: d.update(avatar={}), "avatar"),
        (lambda d: d.update(avatar={"a.png": "XYZ"}), "hex"),
        (lambda d: d.update(subject_name="two\nlines"), "one line"),
    ],
)
def test_strict_parse(key: IssuerKey, edit, match: str) -> None:
    data = json.loads(make_recorded(key).to_json())
    edit(data)
    with pytest.raises(RecordError, match=match):
        record_from_json(json.dumps(data))
    with pytest.raises(RecordError, match="JSON"):
        record_from_json(b"{not json")


def test_attested_licence(key: IssuerKey, trusted: TrustedKeys) -> None:
    record = attested_licence(
        key=key,
        avatar={"reference.jpg": "a" * 64},
        licence="Public domain (PD-Art, Wikimedia Commons)",
        operator="Alex Example",
        subject_name="Mona Lisa (Leonardo da Vinci)",
        now=NOW,
    )
    back = record_from_json(record.to_json())
    verify_signature(back, trusted)
    assert back.kind == KIND_ATTESTED
    assert back.attester == "Alex Example"
    assert back.licence == "Public domain (PD-Art, Wikimedia Commons)"
    assert "Public domain (PD-Art, Wikimedia Commons)" in back.statement and "Alex Example" in back.statement
    assert back.challenge == "" and "evaluation" in back.scope


def test_kind_specific_fields(key: IssuerKey) -> None:
    with pytest.raises(RecordError, match="challenge"):
        make_recorded(key, challenge="")
    with pytest.raises(RecordError, match="licence"):
        attested_licence(key=key, avatar=AVATAR, licence=" ", operator="A", subject_name="B", now=NOW)
    with pytest.raises(RecordError, match="scope"):
        make_recorded(key, scope=("everything",))
    with pytest.raises(ValueError, match="aware"):
        make_recorded(key, now=datetime(2026, 1, 1))


def test_sign_record_sets_key_id(key: IssuerKey) -> None:
    other = IssuerKey.generate()
    record = sign_record(make_recorded(key), other)
    assert record.issuer_key_id == other.key_id
    verify_signature(record, TrustedKeys.of(other.public_key))


# --------------------------------------------------------------------------- avatar hashes


def test_hash_files(tmp_path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "reference.png").write_bytes(b"png")
    (tmp_path / "sub" / "network.onnx").write_bytes(b"onnx")
    hashes = hash_files([tmp_path / "reference.png", "sub/network.onnx"], tmp_path)
    assert hashes == {
        "reference.png": hashlib.sha256(b"png").hexdigest(),
        "sub/network.onnx": hashlib.sha256(b"onnx").hexdigest(),
    }
    with pytest.raises(ValueError, match="not inside"):
        hash_files([tmp_path.parent / "elsewhere.png"], tmp_path)


def test_hash_avatar_folder_hashes_the_files_not_the_manifest(tmp_path) -> None:
    (tmp_path / "reference.png").write_bytes(b"png")
    (tmp_path / "avatar.json").write_text(json.dumps({"files": {"reference.png": "0" * 64}}))
    assert hash_avatar_folder(tmp_path) == {"reference.png": hashlib.sha256(b"png").hexdigest()}
    (tmp_path / "avatar.json").write_text(json.dumps({"files": {"gone.onnx": "0" * 64}}))
    with pytest.raises(ValueError, match="missing"):
        hash_avatar_folder(tmp_path)
    (tmp_path / "avatar.json").write_text("{}")
    with pytest.raises(ValueError, match="lists no files"):
        hash_avatar_folder(tmp_path)
    with pytest.raises(ValueError, match="not found"):
        hash_avatar_folder(tmp_path / "nowhere")


def test_hash_avatar_folder_on_the_bundled_sample() -> None:
    from pathlib import Path

    sample = Path(__file__).resolve().parents[2] / "assets" / "avatars" / "sample"
    if not (sample / "avatar.json").is_file():
        pytest.skip("no bundled sample avatar")
    listed = json.loads((sample / "avatar.json").read_text(encoding="utf-8"))["files"]
    assert hash_avatar_folder(sample) == dict(sorted(listed.items()))


# --------------------------------------------------------------------------- keys on disk


@posix_only
def test_key_file_permissions(tmp_path) -> None:
    old_umask = os.umask(0o022)
    try:
        key = create_issuer_key(tmp_path)
    finally:
        os.umask(old_umask)
    key_file = tmp_path / "keys" / "issuer.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "keys").stat().st_mode) == 0o700
    assert load_issuer_key(tmp_path).key_id == key.key_id
    os.chmod(key_file, 0o644)
    with pytest.raises(ConsentError, match="chmod 600"):
        load_issuer_key(tmp_path)


def test_key_create_load(tmp_path) -> None:
    key = load_or_create_issuer_key(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{16}", key.key_id) and key.key_id == key_id_of(key.public_key)
    assert load_or_create_issuer_key(tmp_path).key_id == key.key_id
    with pytest.raises(ConsentError, match="already exists"):
        create_issuer_key(tmp_path)
    with pytest.raises(ConsentError, match="no issuer key"):
        load_issuer_key(tmp_path / "nowhere")


def test_trusted_keys_from_folder(tmp_path) -> None:
    own = IssuerKey.generate()
    other = IssuerKey.generate()
    path = trust_public_key(tmp_path, other.public_key)
    assert path.name == f"{other.key_id}.pub"
    trusted = load_trusted_keys([tmp_path / "trusted", tmp_path / "missing"], own=own)
    assert set(trusted) == {own.key_id, other.key_id}
    # The ID comes from the key, not the file name.
    path.rename(path.with_name("renamed.pub"))
    assert other.key_id in load_trusted_keys([tmp_path / "trusted"])
    (tmp_path / "trusted" / "junk.pub").write_text("not a key")
    with pytest.raises(ConsentError, match="junk.pub"):
        load_trusted_keys([tmp_path / "trusted"])
