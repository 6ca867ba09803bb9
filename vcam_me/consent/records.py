"""Signed consent records: what they hold, their canonical bytes, signing and verifying.

Trust model (see ``consent-watermark.md`` §5 and §7.3). The invisible mark in every frame
carries only an *index*, the 48-bit consent ID, and anyone who has the detector can stamp
any ID onto any video. So an ID on its own proves nothing. Trust comes from two things:

* the **signed record** the ID points to: Ed25519 over the record's canonical JSON, by an
  issuer key this machine trusts, binding the ID to the person (or the attested licence),
  the scope, the validity dates and the SHA-256 of every avatar file; and
* the **registry** (:mod:`vcam_me.consent.registry`): the local store of records and the
  revocation list, which says whether the ID is still in force.

A record is valid only when all of these hold: it parses strictly, its signature verifies
with a trusted key, it is not revoked, ``now`` lies between its issue and expiry times, and
the avatar's files hash to exactly what it names. Any changed byte of a signed field breaks
the signature, so tampering reads as *tampered*, not as a different valid record.

Two kinds of record:

* ``"recorded"``: the depicted person's recorded consent statement: the statement text
  they read, the one-time challenge in it, and the SHA-256 of the evidence video;
* ``"attested-licence"``: the operator attests that they hold the rights to the image for
  this use (public-domain work, stock photo with a model release, their own face) and names
  the licence. It is signed, watermarked and labelled like any other.

Canonical form: UTF-8 JSON with sorted keys and no whitespace (``sig`` left out); only
strings, integers, lists and objects occur, so this coincides with RFC 8785 for our records.
The signature covers a domain prefix plus those bytes, so a record signature can never be
replayed as, say, a revocation signature.

Consent codes: the 48-bit ID is shown as 10 Crockford base32 symbols in two groups,
``7KQ4M-2XD3J`` (10 × 5 = 50 bits; the first symbol is 0-7). :func:`parse_consent_code`
ignores case, spaces and dashes and reads I/L as 1 and O as 0.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Literal, Mapping

from vcam_me.consent.keys import IssuerKey, TrustedKeys
from vcam_me.errors import ConsentError
from vcam_me.models import sha256_of

RECORD_VERSION = 1
KIND_RECORDED = "recorded"
KIND_ATTESTED = "attested-licence"
KINDS = (KIND_RECORDED, KIND_ATTESTED)
RecordKind = Literal["recorded", "attested-licence"]

#: Uses a record may allow. ``live_call``: ``vcam-me run``; ``render``: ``vcam-me render``
#: (offline files); ``evaluation``: the project's evaluation commands.
SCOPE_USES = ("live_call", "render", "evaluation")
DEFAULT_SCOPE = ("live_call", "render")
#: Default validity: recorded consent is renewed (statement + challenge again) every 90 days.
DEFAULT_RECORDED_DAYS = 90
DEFAULT_ATTESTED_DAYS = 365

ID_BITS = 48
CODE_SYMBOLS = 10
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE = {ch: i for i, ch in enumerate(_CROCKFORD)}
_DECODE.update({"I": 1, "L": 1, "O": 0})
_SIG_DOMAIN = b"vcam-me/consent-record/v1\x00"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SIG_RE = re.compile(r"[A-Za-z0-9_-]{85}[AQgw]")  # 64 bytes, unpadded
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_FIELDS = (
    "v", "cid", "kind", "subject_name", "statement", "challenge", "evidence_sha256", "licence",
    "operator", "avatar", "scope", "issued_at", "expires_at", "issuer_key_id",
)


class RecordError(ConsentError, ValueError):
    """A record that is malformed or whose signature does not verify (one-line message).

    A :class:`~vcam_me.errors.ConsentError`, so a damaged record file is reported like any
    other bad input; also a ``ValueError``, as callers that predate that catch it."""


# --------------------------------------------------------------------------- consent codes


def format_consent_code(consent_id: int) -> str:
    """The 48-bit ``consent_id`` as the human-typable code ``XXXXX-XXXXX``."""
    if isinstance(consent_id, bool) or not isinstance(consent_id, int):
        raise TypeError(f"consent_id must be an int, got {type(consent_id).__name__}")
    if not 0 <= consent_id < (1 << ID_BITS):
        raise ValueError(f"consent_id must be in [0, 2**48), got {consent_id}")
    symbols = "".join(_CROCKFORD[(consent_id >> (5 * i)) & 31] for i in reversed(range(CODE_SYMBOLS)))
    return f"{symbols[:5]}-{symbols[5:]}"


def parse_consent_code(code: str | int) -> int:
    """The consent ID of a typed code (or an int, checked and passed through).

    Case, spaces, dashes and underscores are ignored; I and L read as 1, O as 0.
    Raises ``ValueError`` saying what was wrong.
    """
    if isinstance(code, int) and not isinstance(code, bool):
        format_consent_code(code)  # range check
        return code
    if not isinstance(code, str):
        raise TypeError(f"consent code must be a string, got {type(code).__name__}")
    text = re.sub(r"[\s\-_]", "", code).upper()
    if len(text) != CODE_SYMBOLS:
        raise ValueError(f"consent code {code!r}: expected {CODE_SYMBOLS} symbols like 7KQ4M-2XD3J, got {len(text)}")
    value = 0
    for ch in text:
        if ch not in _DECODE:
            raise ValueError(f"consent code {code!r}: {ch!r} is not a Crockford base32 symbol")
        value = (value << 5) | _DECODE[ch]
    if value >> ID_BITS:
        raise ValueError(f"consent code {code!r}: first symbol must be 0-7 (a code holds 48 bits)")
    return value


def new_consent_id(taken: Iterable[int] = ()) -> int:
    """A random 48-bit consent ID (never 0) not in ``taken``."""
    taken = set(taken)
    while True:
        value = secrets.randbits(ID_BITS)
        if value and value not in taken:
            return value


# --------------------------------------------------------------------------- time and hashes


def format_time(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SSZ`` (UTC, whole seconds). ``moment`` must be timezone-aware."""
    if moment.tzinfo is None:
        raise ValueError("datetime must be timezone-aware (use datetime.now(timezone.utc))")
    return moment.astimezone(timezone.utc).strftime(_TIME_FORMAT)


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=timezone.utc)


def utc_now() -> datetime:
    """The wall clock, timezone-aware (the default clock for factories; pass your own in tests)."""
    return datetime.now(timezone.utc)


def sha256_file(path: Path) -> str:
    return sha256_of(Path(path))


def hash_files(paths: Iterable[Path], root: Path) -> dict[str, str]:
    """``{name: sha256 hex}`` of ``paths``; names are POSIX paths relative to ``root``.

    This is the avatar-hash mapping a record binds (reference image(s), network weights,
    mesh ...). The avatar's own consent record file must not be among ``paths``.
    """
    root = Path(root).resolve()
    out = {}
    for path in paths:
        full = (root / path).resolve()  # an absolute path stays as it is
        try:
            name = full.relative_to(root).as_posix()
        except ValueError:
            raise ValueError(f"{path} is not inside the avatar folder {root}") from None
        out[name] = sha256_file(full)
    return dict(sorted(out.items()))


def hash_avatar_folder(folder: Path, manifest: str = "avatar.json") -> dict[str, str]:
    """The avatar-hash mapping of an avatar folder: the files its ``avatar.json`` lists under
    ``"files"``, hashed afresh from disk (the manifest's own hashes are not trusted here, so
    editing the manifest cannot hide a swapped file). Raises ``ValueError`` naming the
    problem (no manifest, no ``files``, a listed file missing or outside the folder)."""
    folder = Path(folder)
    path = folder / manifest
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"avatar manifest {path} not found") from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ValueError(f"avatar manifest {path} cannot be read: {err}") from None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict) or not files:
        raise ValueError(f"avatar manifest {path} lists no files")
    try:
        return hash_files(list(files), folder)
    except FileNotFoundError as err:
        raise ValueError(f"avatar file listed in {path} is missing: {err.filename}") from None


# --------------------------------------------------------------------------- the record


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _one_line(name: str, text: Any, *, allow_empty: bool = False, limit: int = 200) -> None:
    if not isinstance(text, str):
        raise RecordError(f"{name} must be a string")
    if not allow_empty and not text.strip():
        raise RecordError(f"{name} must not be empty")
    if len(text) > limit or any(unicodedata.category(ch)[0] == "C" for ch in text):
        raise RecordError(f"{name} must be one line of at most {limit} printable characters")


@dataclass(frozen=True)
class ConsentRecord:
    """One consent record. ``signature`` is empty until :func:`sign_record`.

    Attributes:
        consent_id: the 48-bit ID the watermark carries (see :func:`format_consent_code`).
        kind: ``"recorded"`` or ``"attested-licence"``.
        subject_name: display name of the person (or work) depicted.
        statement: recorded: the statement the person read; attested: the attestation text.
        challenge: recorded: the one-time code read aloud; attested: ``""``.
        evidence_sha256: recorded: SHA-256 of the consent video; attested: of an optional
            document (model release ...) or ``""``.
        licence: attested: the licence named (e.g. "public domain (PD-Art)"); recorded: ``""``.
        operator: who issued (recorded) or attested (attested-licence) the record.
        avatar: ``{file name: sha256 hex}`` of every avatar file the record covers.
        scope: allowed uses, a subset of :data:`SCOPE_USES`, sorted.
        issued_at, expires_at: UTC, whole seconds.
        issuer_key_id: key ID (:func:`~vcam_me.consent.keys.key_id_of`) of the signer.
        signature: raw Ed25519 signature (64 bytes), or ``b""`` when unsigned.
    """

    consent_id: int
    kind: RecordKind
    subject_name: str
    statement: str
    operator: str
    avatar: Mapping[str, str]
    issued_at: datetime
    expires_at: datetime
    issuer_key_id: str
    challenge: str = ""
    evidence_sha256: str = ""
    licence: str = ""
    scope: tuple[str, ...] = DEFAULT_SCOPE
    signature: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        format_consent_code(self.consent_id)
        if self.kind not in KINDS:
            raise RecordError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        _one_line("subject_name", self.subject_name)
        _one_line("operator", self.operator)
        _one_line("statement", self.statement, limit=2000)
        _one_line("issuer_key_id", self.issuer_key_id, limit=64)
        _one_line("challenge", self.challenge, allow_empty=True, limit=64)
        _one_line("licence", self.licence, allow_empty=True, limit=500)
        if self.kind == KIND_RECORDED:
            if not self.challenge.strip() or not self.evidence_sha256:
                raise RecordError("a recorded consent needs its challenge and evidence_sha256")
            if self.licence:
                raise RecordError("a recorded consent has no licence field")
        else:
            if not self.licence.strip():
                raise RecordError("an attested licence must name the licence")
            if self.challenge:
                raise RecordError("an attested licence has no challenge")
        if self.evidence_sha256 and not _HEX64.fullmatch(self.evidence_sha256):
            raise RecordError("evidence_sha256 must be 64 lower-case hex digits")
        if not isinstance(self.avatar, Mapping) or not self.avatar:
            raise RecordError("avatar must name at least one file and its sha256")
        # A verified record must not change afterwards: freeze the one mutable field.
        object.__setattr__(self, "avatar", MappingProxyType(dict(sorted(self.avatar.items()))))
        for name, digest in self.avatar.items():
            _one_line("avatar file name", name, limit=255)
            if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
                raise RecordError(f"avatar[{name!r}] must be 64 lower-case hex digits")
        if not self.scope or any(use not in SCOPE_USES for use in self.scope):
            raise RecordError(f"scope must be a non-empty subset of {', '.join(SCOPE_USES)}")
        if list(self.scope) != sorted(set(self.scope)):
            raise RecordError("scope must be sorted and without repeats")
        for name in ("issued_at", "expires_at"):
            moment = getattr(self, name)
            if not isinstance(moment, datetime) or moment.tzinfo is None or moment.microsecond:
                raise RecordError(f"{name} must be a timezone-aware datetime in whole seconds")
        if self.expires_at <= self.issued_at:
            raise RecordError("expires_at must be after issued_at")

    @property
    def code(self) -> str:
        """The consent ID as typed and shown: ``XXXXX-XXXXX``."""
        return format_consent_code(self.consent_id)

    @property
    def attester(self) -> str | None:
        """Who attested the licence (``operator``) for an attested record; ``None`` otherwise."""
        return self.operator if self.kind == KIND_ATTESTED else None

    def body(self) -> dict[str, Any]:
        """The signed fields as JSON-ready data (no ``sig``)."""
        return {
            "v": RECORD_VERSION,
            "cid": self.code.replace("-", ""),
            "kind": self.kind,
            "subject_name": self.subject_name,
            "statement": self.statement,
            "challenge": self.challenge,
            "evidence_sha256": self.evidence_sha256,
            "licence": self.licence,
            "operator": self.operator,
            "avatar": dict(self.avatar),
            "scope": list(self.scope),
            "issued_at": format_time(self.issued_at),
            "expires_at": format_time(self.expires_at),
            "issuer_key_id": self.issuer_key_id,
        }

    def to_json(self) -> str:
        """The record file: canonical body plus ``sig`` (base64url, no padding)."""
        if not self.signature:
            raise RecordError("record is not signed")
        data = self.body()
        data["sig"] = base64.urlsafe_b64encode(self.signature).rstrip(b"=").decode("ascii")
        return canonical_json(data).decode("utf-8")


def canonical_json(data: Mapping[str, Any]) -> bytes:
    """Sorted keys, no whitespace, UTF-8 (non-ASCII kept as is). Floats are refused."""

    def check(value: Any) -> None:
        if isinstance(value, float):
            raise RecordError("records hold no floating-point numbers")
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise RecordError("object keys must be strings")
                check(item)
        elif isinstance(value, list):
            for item in value:
                check(item)

    check(dict(data))
    try:
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as err:
        raise RecordError(f"record text is not valid Unicode: {err}") from None


def signed_message(body: Mapping[str, Any]) -> bytes:
    """The exact bytes an issuer signs for a record ``body``."""
    return _SIG_DOMAIN + canonical_json(body)


def sign_record(record: ConsentRecord, key: IssuerKey) -> ConsentRecord:
    """``record`` signed by ``key`` (its ``issuer_key_id`` is set to the key's ID)."""
    record = replace(record, issuer_key_id=key.key_id, signature=b"")
    return replace(record, signature=key.sign(signed_message(record.body())))


def verify_signature(record: ConsentRecord, trusted: TrustedKeys) -> None:
    """Raise :class:`RecordError` unless ``record`` is signed by a key in ``trusted``."""
    if not record.signature:
        raise RecordError(f"record {record.code} is not signed")
    if record.issuer_key_id not in trusted:
        raise RecordError(f"record {record.code} is signed by key {record.issuer_key_id}, which is not trusted here")
    if not trusted.verify(record.issuer_key_id, record.signature, signed_message(record.body())):
        raise RecordError(f"record {record.code}: signature does not match its contents (altered or forged)")


def record_from_json(text: str | bytes) -> ConsentRecord:
    """Parse a record file strictly; :class:`RecordError` on any deviation.

    Strict means: exactly the known fields with the right types, and the text re-serialises
    to the same canonical body, so what was signed is what is read.
    """
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as err:
        raise RecordError(f"record is not valid JSON: {str(err).splitlines()[0][:200]}") from None
    except RecursionError:
        raise RecordError("record is not valid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise RecordError("record must be a JSON object")
    if data.get("v") != RECORD_VERSION:
        raise RecordError(f"record version {data.get('v')!r} is not supported (expected {RECORD_VERSION})")
    missing = [k for k in (*_FIELDS, "sig") if k not in data]
    extra = sorted(set(data) - {*_FIELDS, "sig"})
    if missing or extra:
        raise RecordError(f"record fields wrong: missing {missing or 'none'}, unexpected {extra or 'none'}")
    sig = data["sig"]
    if not isinstance(sig, str) or not _SIG_RE.fullmatch(sig):
        raise RecordError("record signature is not base64url of 64 bytes")
    try:
        signature = base64.urlsafe_b64decode(sig + "==")
    except (ValueError, binascii.Error):
        raise RecordError("record signature is not base64url of 64 bytes") from None
    try:
        for name in ("subject_name", "statement", "challenge", "evidence_sha256", "licence", "operator", "issuer_key_id", "kind", "cid"):
            if not isinstance(data[name], str):
                raise RecordError(f"{name} must be a string")
        if not isinstance(data["avatar"], dict) or not isinstance(data["scope"], list):
            raise RecordError("avatar must be an object and scope a list")
        record = ConsentRecord(
            consent_id=parse_consent_code(data["cid"]),
            kind=data["kind"],
            subject_name=data["subject_name"],
            statement=data["statement"],
            operator=data["operator"],
            avatar=dict(data["avatar"]),
            issued_at=parse_time(data["issued_at"]),
            expires_at=parse_time(data["expires_at"]),
            issuer_key_id=data["issuer_key_id"],
            challenge=data["challenge"],
            evidence_sha256=data["evidence_sha256"],
            licence=data["licence"],
            scope=tuple(data["scope"]),
            signature=signature,
        )
    except RecordError:
        raise
    except (ValueError, TypeError) as err:
        raise RecordError(f"record field invalid: {err}") from None
    body = {k: v for k, v in data.items() if k != "sig"}
    if canonical_json(body) != canonical_json(record.body()):
        raise RecordError("record is not in canonical form (a field was re-encoded or altered)")
    return record


# --------------------------------------------------------------------------- issuing


def _validity(now: datetime, days: int) -> tuple[datetime, datetime]:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (use datetime.now(timezone.utc))")
    if days < 1:
        raise ValueError(f"validity must be at least 1 day, got {days}")
    issued = now.astimezone(timezone.utc).replace(microsecond=0)
    return issued, issued + timedelta(days=days)


def recorded_consent(
    *,
    key: IssuerKey,
    avatar: Mapping[str, str],
    subject_name: str,
    statement: str,
    challenge: str,
    evidence_sha256: str,
    operator: str,
    now: datetime,
    consent_id: int | None = None,
    valid_days: int = DEFAULT_RECORDED_DAYS,
    scope: Iterable[str] = DEFAULT_SCOPE,
) -> ConsentRecord:
    """A signed ``"recorded"`` consent record (after the wizard has checked the statement)."""
    issued, expires = _validity(now, valid_days)
    record = ConsentRecord(
        consent_id=new_consent_id() if consent_id is None else consent_id,
        kind=KIND_RECORDED,
        subject_name=_nfc(subject_name.strip()),
        statement=_nfc(" ".join(statement.split())),
        operator=_nfc(operator.strip()),
        avatar={k: v.lower() for k, v in avatar.items()},
        issued_at=issued,
        expires_at=expires,
        issuer_key_id=key.key_id,
        challenge=_nfc(challenge.strip()),
        evidence_sha256=evidence_sha256.lower(),
        scope=tuple(sorted(set(scope))),
    )
    return sign_record(record, key)


def attestation_statement(operator: str, subject_name: str, licence: str) -> str:
    """The sentence an attested-licence record carries as its statement."""
    return (
        f"I, {operator}, attest that I hold the rights to use this image of {subject_name} "
        f"as an AI avatar, labelled as such, under: {licence.rstrip('.')}."
    )


def attested_licence(
    *,
    key: IssuerKey,
    avatar: Mapping[str, str],
    licence: str,
    operator: str,
    subject_name: str,
    now: datetime,
    evidence_sha256: str = "",
    consent_id: int | None = None,
    valid_days: int = DEFAULT_ATTESTED_DAYS,
    scope: Iterable[str] = ("evaluation", "live_call", "render"),
) -> ConsentRecord:
    """A signed ``"attested-licence"`` record: ``operator`` attests rights under ``licence``."""
    issued, expires = _validity(now, valid_days)
    licence = _nfc(" ".join(licence.split()))
    operator = _nfc(operator.strip())
    subject_name = _nfc(subject_name.strip())
    record = ConsentRecord(
        consent_id=new_consent_id() if consent_id is None else consent_id,
        kind=KIND_ATTESTED,
        subject_name=subject_name,
        statement=attestation_statement(operator, subject_name, licence),
        operator=operator,
        avatar={k: v.lower() for k, v in avatar.items()},
        issued_at=issued,
        expires_at=expires,
        issuer_key_id=key.key_id,
        evidence_sha256=evidence_sha256.lower(),
        licence=licence,
        scope=tuple(sorted(set(scope))),
    )
    return sign_record(record, key)
