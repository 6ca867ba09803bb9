"""Ed25519 issuer keys for consent records: create, load, trust.

Layout inside a consent data folder (the caller passes the folder; nothing here picks one)::

    <folder>/keys/            0700
        issuer.key            0600  the private key, PEM PKCS#8, unencrypted
        issuer.pub            0644  its public half, PEM SubjectPublicKeyInfo
    <folder>/trusted/         0700  public keys (*.pub, PEM) of other issuers whose records
                                    this machine accepts, e.g. the key that signed the
                                    bundled sample avatar

A key ID is the first 16 hex digits of the SHA-256 of the raw 32-byte public key. Records
name their signer by key ID; a record verifies only against a key in a :class:`TrustedKeys`
set, and the set is keyed by the ID computed from each key, so a file name or a claimed ID
can never make an untrusted key trusted.

The private key is refused when its file is readable by group or others (POSIX), in the
manner of ssh: a signing key that others can read is no longer a proof of who signed.
On Windows the permission bits are not meaningful and are not checked.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from cryptography.exceptions import InternalError, InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from vcam_me.errors import ConsentError
from vcam_me.storage import atomic_write_bytes

KEYS_DIR = "keys"
TRUSTED_DIR = "trusted"
PRIVATE_KEY_FILE = "issuer.key"
PUBLIC_KEY_FILE = "issuer.pub"
_POSIX = os.name == "posix"
_KEY_ID_NAME = re.compile(r"[0-9a-f]{16}")


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """Short, stable ID of a public key: 16 lower-case hex digits of SHA-256(raw key)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class IssuerKey:
    """A private signing key and its key ID. Construct with :func:`load_issuer_key` or
    :func:`create_issuer_key` (or :meth:`generate` in memory, for tests)."""

    private_key: Ed25519PrivateKey
    key_id: str

    @classmethod
    def from_private_key(cls, private_key: Ed25519PrivateKey) -> "IssuerKey":
        return cls(private_key, key_id_of(private_key.public_key()))

    @classmethod
    def generate(cls) -> "IssuerKey":
        """A fresh key in memory only."""
        return cls.from_private_key(Ed25519PrivateKey.generate())

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)


@dataclass(frozen=True)
class TrustedKeys:
    """The public keys whose signatures this machine accepts, by key ID."""

    keys: Mapping[str, Ed25519PublicKey] = field(default_factory=dict)

    @classmethod
    def of(cls, *public_keys: Ed25519PublicKey) -> "TrustedKeys":
        return cls({key_id_of(k): k for k in public_keys})

    def with_key(self, public_key: Ed25519PublicKey) -> "TrustedKeys":
        return TrustedKeys({**self.keys, key_id_of(public_key): public_key})

    def __contains__(self, key_id: object) -> bool:
        return key_id in self.keys

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.keys))

    def __len__(self) -> int:
        return len(self.keys)

    def verify(self, key_id: str, signature: bytes, message: bytes) -> bool:
        """True when ``key_id`` is trusted and ``signature`` is its signature of ``message``."""
        key = self.keys.get(key_id)
        if key is None:
            return False
        try:
            key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


# --------------------------------------------------------------------------- file helpers


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if needed and make it owner-only (0700 on POSIX)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if _POSIX:
        os.chmod(path, 0o700)
    return path


def write_private_file(path: Path, data: bytes, *, exclusive: bool = True) -> None:
    """Write ``data`` to ``path`` with mode 0600 (never briefly wider), atomically: a crash
    leaves the previous file or none, never a torn one (:mod:`vcam_me.storage`).

    ``exclusive``: fail if the file exists (a key or record is never silently replaced).
    """
    atomic_write_bytes(path, data, mode=0o600, exclusive=exclusive)


def is_owner_only(path: Path) -> bool:
    """Whether group and others have no access to ``path`` (always True off POSIX)."""
    if not _POSIX:
        return True
    return stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0


def _public_pem(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


#: What cryptography raises for a damaged PEM file (OpenSSL's own errors included).
_UNREADABLE = (OSError, ValueError, TypeError, UnsupportedAlgorithm, InternalError)


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())[:200]


def load_public_key(path: Path) -> Ed25519PublicKey:
    """An Ed25519 public key from a PEM file; :class:`ConsentError` if it is anything else."""
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except _UNREADABLE as err:
        raise ConsentError(f"public key {path} cannot be read: {_one_line(err)}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConsentError(f"public key {path} is not an Ed25519 key")
    return key


# --------------------------------------------------------------------------- factories (I/O)


def create_issuer_key(folder: Path) -> IssuerKey:
    """Generate a new issuer key in ``folder/keys`` (0700) as ``issuer.key`` (0600).

    Refuses to replace an existing key: records signed by it would stop verifying.
    """
    keys_dir = ensure_private_dir(Path(folder) / KEYS_DIR)
    key = IssuerKey.generate()
    pem = key.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        write_private_file(keys_dir / PRIVATE_KEY_FILE, pem)
    except FileExistsError:
        raise ConsentError(f"an issuer key already exists in {keys_dir}; it is never replaced") from None
    atomic_write_bytes(keys_dir / PUBLIC_KEY_FILE, _public_pem(key.public_key), mode=0o644)
    return key


def load_issuer_key(folder: Path) -> IssuerKey:
    """Load ``folder/keys/issuer.key``; refuse it if group or others can read it."""
    path = Path(folder) / KEYS_DIR / PRIVATE_KEY_FILE
    if not path.is_file():
        raise ConsentError(f"no issuer key at {path}")
    if not is_owner_only(path):
        mode = stat.S_IMODE(os.stat(path).st_mode)
        raise ConsentError(
            f"issuer key {path} has permissions {mode:04o}; others may read it: "
            f"run 'chmod 600 {path}' (or delete it and re-issue your consent records)"
        )
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except _UNREADABLE as err:
        raise ConsentError(f"issuer key {path} cannot be read: {_one_line(err)}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConsentError(f"issuer key {path} is not an Ed25519 key")
    # A changed bit inside the key material still reads as *a* key, just not this issuer's:
    # the public half written beside it at creation tells the two apart.
    public_file = path.with_name(PUBLIC_KEY_FILE)
    if not public_file.is_file():
        # killed between writing the two halves at creation: the public half is derived again
        atomic_write_bytes(public_file, _public_pem(key.public_key()), mode=0o644)
    elif load_public_key(public_file) != key.public_key():
        raise ConsentError(f"issuer key {path} does not match {public_file.name} beside it (one of them is damaged); "
                           "restore both from a backup")
    return IssuerKey.from_private_key(key)


def load_or_create_issuer_key(folder: Path) -> IssuerKey:
    """The issuer key of ``folder``, created on first use."""
    if (Path(folder) / KEYS_DIR / PRIVATE_KEY_FILE).exists():
        return load_issuer_key(folder)
    return create_issuer_key(folder)


def load_trusted_keys(folders: Iterable[Path], *, own: IssuerKey | None = None) -> TrustedKeys:
    """Every ``*.pub`` in ``folders`` (missing folders are skipped), plus ``own``'s public key.

    A file that is not an Ed25519 public key is a :class:`ConsentError` naming it: a broken
    trust list is reported, not silently shortened.
    """
    trusted = TrustedKeys()
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.pub")):
            key = load_public_key(path)
            # trust_public_key names each file by its key ID: a changed bit in the key shows
            if _KEY_ID_NAME.fullmatch(path.stem) and key_id_of(key) != path.stem:
                raise ConsentError(f"trusted key {path} does not match its name (damaged or altered); "
                                   "restore it or remove it")
            trusted = trusted.with_key(key)
    if own is not None:
        trusted = trusted.with_key(own.public_key)
    return trusted


def trust_public_key(folder: Path, public_key: Ed25519PublicKey) -> Path:
    """Add ``public_key`` to ``folder/trusted`` as ``<key id>.pub``; return its path."""
    trusted_dir = ensure_private_dir(Path(folder) / TRUSTED_DIR)
    path = trusted_dir / f"{key_id_of(public_key)}.pub"
    atomic_write_bytes(path, _public_pem(public_key), mode=0o644)
    return path
