"""Damaged key files: every corruption is one clear error naming the file, never a key in use."""

from __future__ import annotations

import pytest

from vcam_me.consent import keys as K
from vcam_me.consent.registry import ConsentRegistry
from vcam_me.errors import ConsentError


@pytest.fixture
def folder(tmp_path):
    K.create_issuer_key(tmp_path)
    return tmp_path


def _assert_one_line_error(err: ConsentError, path) -> None:
    assert str(path) in str(err) and "\n" not in str(err)


def test_every_flipped_bit_of_the_private_key_is_refused_or_harmless(folder):
    """Refused with one line naming the file, or (a line break turned into another blank the
    PEM reader skips) the very same key: never another key taken for this issuer's."""
    path = folder / K.KEYS_DIR / K.PRIVATE_KEY_FILE
    original = path.read_bytes()
    good = K.load_issuer_key(folder)
    refused = 0
    for i in range(len(original)):
        damaged = bytearray(original)
        damaged[i] ^= 0x01
        path.write_bytes(bytes(damaged))
        try:
            loaded = K.load_issuer_key(folder)
        except ConsentError as err:
            _assert_one_line_error(err, path)
            refused += 1
            continue
        assert original[i : i + 1] == b"\n" and loaded.key_id == good.key_id, i
    assert refused >= len(original) - 3
    path.write_bytes(original)
    assert K.load_issuer_key(folder).key_id == good.key_id


@pytest.mark.parametrize("damage", [lambda b: b[: len(b) // 2], lambda b: b"", lambda b: b"\x00garbage\xff" * 9])
def test_truncated_or_garbage_private_key_is_refused(folder, damage):
    path = folder / K.KEYS_DIR / K.PRIVATE_KEY_FILE
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ConsentError, match="cannot be read") as caught:
        ConsentRegistry.open(folder)
    _assert_one_line_error(caught.value, path)


def test_a_key_that_no_longer_matches_its_public_half_is_refused(folder):
    # as if a bit inside the key material had flipped: a well-formed key, but another one
    other = K.IssuerKey.generate()
    path = folder / K.KEYS_DIR / K.PRIVATE_KEY_FILE
    path.unlink()
    K.write_private_file(path, other.private_key.private_bytes(
        K.serialization.Encoding.PEM, K.serialization.PrivateFormat.PKCS8, K.serialization.NoEncryption()))
    with pytest.raises(ConsentError, match="does not match issuer.pub"):
        K.load_issuer_key(folder)


def test_every_flipped_bit_of_a_trusted_public_key_is_reported_not_skipped_or_harmless(folder):
    trusted = K.trust_public_key(folder, K.IssuerKey.generate().public_key)
    original = trusted.read_bytes()
    for i in range(len(original)):
        damaged = bytearray(original)
        damaged[i] ^= 0x01
        trusted.write_bytes(bytes(damaged))
        try:
            keys = K.load_trusted_keys([folder / K.TRUSTED_DIR])
        except ConsentError as err:
            _assert_one_line_error(err, trusted)
            continue
        assert original[i : i + 1] == b"\n" and list(keys) == [trusted.stem], i  # the same key
    trusted.write_bytes(original)
    assert len(K.load_trusted_keys([folder / K.TRUSTED_DIR])) == 1


def test_a_missing_public_half_is_derived_again_from_the_key(folder):
    """A kill between writing issuer.key and issuer.pub at creation leaves the key alone: the
    next load writes its public half again, so later damage to either is still caught."""
    public = folder / K.KEYS_DIR / K.PUBLIC_KEY_FILE
    written = public.read_bytes()
    public.unlink()
    key = K.load_issuer_key(folder)
    assert public.read_bytes() == written and K.load_public_key(public) == key.public_key
