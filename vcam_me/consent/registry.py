"""The local consent registry: records by ID, an append-only revocation list, and the check.

Trust model in one paragraph (details in :mod:`vcam_me.consent.records` and
``consent-watermark.md`` §5): the watermark in a frame carries only the consent ID, an index
into this registry. Whether rendering is allowed is decided here, from the signed record the
ID names (Ed25519, a trusted issuer key), the revocation list, the validity dates and the
avatar's file hashes, never from the mark.

Layout of a consent folder (``<user data folder>/consent`` by default, see
:func:`default_consent_dir`; every function below takes the folder explicitly)::

    keys/issuer.key        this machine's signing key, 0600 (see keys.py)
    trusted/*.pub          other issuers' public keys this machine accepts
    records/<CID>.json     one signed record per ID, 0600, never overwritten
    revocations.jsonl      append-only, one signed line per revocation

Revocation list. Each line is canonical JSON ``{cid, reason, revoked_at, key_id, prev, sig}``
where ``prev`` is the SHA-256 of the previous line and ``sig`` the issuer's Ed25519
signature. Every line that names an ID revokes it (a revocation only ever makes the app
refuse more). If the chain or a signature is broken, a line cannot be read, or the last
line is incomplete, the list has been altered and *every* check answers ``tampered``: we can
no longer say what was revoked, so we fail closed. Limits, stated plainly: the owner of the
machine can delete the whole folder or its last lines; a local registry guards against
mistakes and casual misuse, and a published registry is what makes revocation binding for
others (``consent-watermark.md`` §2, "manifest repository").

Statuses of a :class:`Verdict`, in the order they are checked: ``unknown`` (no record with
that ID, or none for this avatar); ``tampered`` (unreadable, altered, wrong or untrusted
signature, altered revocation list); ``revoked``; ``expired``; ``not-yet-valid`` (issued in
the future: the clock is wrong or the record is); ``wrong-avatar`` (an avatar file is
missing, extra or has another hash); ``out-of-scope`` (the use is not allowed); ``valid``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, Iterable, Mapping

from vcam_me.consent.keys import (
    KEYS_DIR,
    PRIVATE_KEY_FILE,
    PUBLIC_KEY_FILE,
    TRUSTED_DIR,
    IssuerKey,
    TrustedKeys,
    create_issuer_key,
    ensure_private_dir,
    load_issuer_key,
    load_public_key,
    load_trusted_keys,
    write_private_file,
)
from vcam_me.consent.records import (
    KIND_ATTESTED,
    ConsentRecord,
    RecordError,
    attested_licence,
    canonical_json,
    format_consent_code,
    format_time,
    new_consent_id,
    parse_consent_code,
    parse_time,
    record_from_json,
    recorded_consent,
    verify_signature,
)
from vcam_me.errors import ConsentError
from vcam_me.storage import remove_stale_temporaries

RECORDS_DIR = "records"
REVOCATIONS_FILE = "revocations.jsonl"
_REV_DOMAIN = b"vcam-me/revocation/v1\x00"
#: How far ``issued_at`` may lie ahead of ``now`` before a record reads as not yet valid.
CLOCK_SKEW = timedelta(minutes=5)

VALID = "valid"
TAMPERED = "tampered"
REVOKED = "revoked"
EXPIRED = "expired"
NOT_YET_VALID = "not-yet-valid"
WRONG_AVATAR = "wrong-avatar"
OUT_OF_SCOPE = "out-of-scope"
UNKNOWN = "unknown"
STATUSES = (VALID, TAMPERED, REVOKED, EXPIRED, NOT_YET_VALID, WRONG_AVATAR, OUT_OF_SCOPE, UNKNOWN)

# The two ways to a record: the person depicted records their consent statement on camera, or
# the operator attests a licence to the image.
HOW_TO_RECORD = (
    "have the person shown record their consent: 'vcam-me consent record --avatar PATH --name NAME'; "
    "or, if you hold the rights to this image for this use (a public-domain work, a released stock "
    "photo), sign that: 'vcam-me consent attest --avatar PATH --licence TEXT'"
)


def default_consent_dir() -> Path:
    """``<platform user data folder>/vcam-me/consent`` (the only place that picks a folder)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("vcam-me", appauthor=False)) / "consent"


@dataclass(frozen=True)
class Verdict:
    """The answer of a check. ``reason`` is one line a user can act on."""

    ok: bool
    status: str
    reason: str
    consent_id: int | None = None
    record: ConsentRecord | None = field(default=None, repr=False)

    @property
    def code(self) -> str | None:
        return None if self.consent_id is None else format_consent_code(self.consent_id)

    @property
    def kind(self) -> str | None:
        return None if self.record is None else self.record.kind

    @property
    def subject_name(self) -> str | None:
        return None if self.record is None else self.record.subject_name

    @property
    def attester(self) -> str | None:
        """The operator who attested the licence (attested-licence records only)."""
        return None if self.record is None else self.record.attester

    @property
    def licence(self) -> str | None:
        return None if self.record is None or not self.record.licence else self.record.licence


def _verdict(status: str, reason: str, record: ConsentRecord | None = None, consent_id: int | None = None) -> Verdict:
    cid = record.consent_id if record is not None else consent_id
    return Verdict(status == VALID, status, reason, cid, record)


@dataclass(frozen=True)
class Revocation:
    consent_id: int
    reason: str
    revoked_at: datetime
    key_id: str

    @property
    def code(self) -> str:
        return format_consent_code(self.consent_id)


@dataclass(frozen=True)
class RevocationList:
    """The parsed revocation list: first revocation per ID, and what is wrong with the file."""

    revoked: Mapping[int, Revocation]
    problems: tuple[str, ...] = ()
    last_line_sha256: str = ""
    #: Lines and bytes parsed, so that appended lines can be parsed alone (``resume``).
    lines: int = 0
    parsed_bytes: int = 0
    #: The file it was read from, for messages ("" when parsed from bytes alone).
    source: str = ""


def parse_revocations(data: bytes, trusted: TrustedKeys, *, resume: RevocationList | None = None) -> RevocationList:
    """Parse ``revocations.jsonl`` content (pure). Never raises: damage goes to ``problems``.

    ``resume``: the result of parsing a prefix of ``data`` that the caller knows is unchanged
    (the list is append-only); only the bytes after it are parsed, so a new revocation costs
    one signature check however long the list is. Ignored when that result had problems.
    """
    if resume is not None and (resume.problems or resume.parsed_bytes > len(data)):
        resume = None
    start = resume.parsed_bytes if resume is not None else 0
    revoked: dict[int, Revocation] = dict(resume.revoked) if resume is not None else {}
    problems: list[str] = []
    prev = resume.last_line_sha256 if resume is not None else ""
    first = resume.lines + 1 if resume is not None else 1
    if data and not data.endswith(b"\n"):
        problems.append("the last line is incomplete")
    lines = data[start:].split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for number, raw in enumerate(lines, first):
        try:
            entry = json.loads(raw)
            if not isinstance(entry, dict):
                raise ValueError("not an object")
            consent_id = parse_consent_code(entry["cid"])
            revoked.setdefault(
                consent_id,
                Revocation(consent_id, str(entry.get("reason", "")), parse_time(entry["revoked_at"]), str(entry.get("key_id", ""))),
            )
        except (ValueError, KeyError, TypeError, RecursionError) as err:  # RecursionError: JSON nested too deeply
            problems.append(f"line {number} cannot be read ({str(err).splitlines()[0][:200] if str(err) else type(err).__name__})")
            prev = hashlib.sha256(raw).hexdigest()
            continue
        if entry.get("prev") != prev:
            problems.append(f"line {number} does not follow the line before it (lines removed, reordered or edited)")
        body = {k: v for k, v in entry.items() if k != "sig"}
        try:
            sig = entry.get("sig", "")
            signature = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
            good = trusted.verify(str(entry.get("key_id")), signature, _REV_DOMAIN + canonical_json(body))
        except (TypeError, ValueError, binascii.Error, RecordError):
            good = False
        if not good:
            problems.append(f"line {number} has no valid signature from a trusted key")
        prev = hashlib.sha256(raw).hexdigest()
    return RevocationList(revoked, tuple(problems), prev, first - 1 + len(lines), len(data))


def revocation_line(revocation: Revocation, prev_sha256: str, key: IssuerKey) -> bytes:
    """One signed line (with its newline) of the revocation list."""
    body = {
        "cid": revocation.code.replace("-", ""),
        "reason": revocation.reason,
        "revoked_at": format_time(revocation.revoked_at),
        "key_id": key.key_id,
        "prev": prev_sha256,
    }
    sig = key.sign(_REV_DOMAIN + canonical_json(body))
    body["sig"] = base64.urlsafe_b64encode(sig).rstrip(b"=").decode("ascii")
    return canonical_json(body) + b"\n"


def evaluate(
    record: ConsentRecord,
    *,
    trusted: TrustedKeys,
    revocations: RevocationList,
    avatar_hashes: Mapping[str, str] | None,
    now: datetime,
    use: str | None = None,
) -> Verdict:
    """The pure check of one parsed record (no I/O). See the module docstring for the order.

    ``avatar_hashes=None`` skips the avatar binding: only for verifying a *recording*
    (``vcam-me verify``), where no avatar files are at hand. Rendering always passes them.
    """
    code = record.code
    try:
        verify_signature(record, trusted)
    except RecordError as err:
        return _verdict(TAMPERED, f"consent record {code} is not trustworthy: {err}", record)
    if revocations.problems:
        return _verdict(
            TAMPERED,
            f"the revocation list was altered ({revocations.problems[0]}); "
            f"restore {revocations.source or 'it'} from a backup before rendering",
            record,
        )
    rev = revocations.revoked.get(record.consent_id)
    if rev is not None:
        why = f": {rev.reason}" if rev.reason else ""
        return _verdict(REVOKED, f"consent record {code} was revoked on {format_time(rev.revoked_at)}{why}", record)
    if now >= record.expires_at:
        return _verdict(EXPIRED, f"consent record {code} expired on {format_time(record.expires_at)}; {HOW_TO_RECORD}", record)
    if now < record.issued_at - CLOCK_SKEW:
        return _verdict(
            NOT_YET_VALID,
            f"consent record {code} is issued for {format_time(record.issued_at)}, later than now; check the clock",
            record,
        )
    source = record.avatar if avatar_hashes is None else avatar_hashes
    given = {str(k): str(v).lower() for k, v in source.items()}
    for name, digest in sorted(record.avatar.items()):
        if name not in given:
            return _verdict(WRONG_AVATAR, f"consent record {code} covers avatar file '{name}', which this avatar lacks", record)
        if given[name] != digest:
            return _verdict(
                WRONG_AVATAR,
                f"avatar file '{name}' is not the one consent record {code} was given for (sha256 {given[name][:12]}…, "
                f"expected {digest[:12]}…)",
                record,
            )
    extra = sorted(set(given) - set(record.avatar))
    if extra:
        return _verdict(WRONG_AVATAR, f"avatar file '{extra[0]}' is not covered by consent record {code}", record)
    if use is not None and use not in record.scope:
        return _verdict(
            OUT_OF_SCOPE, f"consent record {code} does not allow '{use}' (allows: {', '.join(record.scope)})", record
        )
    if record.kind == KIND_ATTESTED:
        what = f"licence attested by {record.operator}: {record.licence}"
    else:
        what = f"recorded consent of {record.subject_name}"
    return _verdict(VALID, f"consent record {code} is valid until {format_time(record.expires_at)} ({what})", record)


def consent_error(verdict: Verdict, avatar: str | Path | None = None) -> ConsentError:
    """The :class:`ConsentError` that ``run``/``render`` raise for a refused verdict."""
    where = f" for avatar {avatar}" if avatar is not None else ""
    how = "" if HOW_TO_RECORD in verdict.reason else f"; {HOW_TO_RECORD}"
    if verdict.status == UNKNOWN:
        return ConsentError(f"no valid consent record{where}: {verdict.reason}{how}")
    return ConsentError(f"cannot render{where}: {verdict.reason}{how}")


class ConsentRegistry:
    """Records and revocations in one consent folder. Build with :meth:`open`.

    ``trusted`` are the keys whose signatures count; ``issuer`` (optional until something is
    signed) is this machine's key. Thread-safe for the operations the app uses.
    """

    def __init__(self, folder: Path, trusted: TrustedKeys, issuer: IssuerKey | None = None) -> None:
        self.folder = Path(folder)
        self.trusted = trusted if issuer is None else trusted.with_key(issuer.public_key)
        self.issuer = issuer
        self._lock = threading.RLock()
        self._listeners: list[Callable[[int], None]] = []
        # (change stamp, parsed list, sha256 of the bytes parsed)
        self._rev_cache: tuple[object, RevocationList, bytes] | None = None

    @classmethod
    def open(
        cls,
        folder: Path | None = None,
        *,
        extra_trusted_dirs: Iterable[Path] = (),
        create_key: bool = True,
    ) -> "ConsentRegistry":
        """Open (creating if needed, 0700) the consent folder and load keys.

        ``extra_trusted_dirs``: more folders of ``*.pub`` keys, e.g. the app's bundled key for
        the sample avatar. ``create_key``: create this machine's issuer key if there is none
        (an existing key is always loaded; without one, ``keys/issuer.pub`` is still trusted).
        """
        folder = Path(folder) if folder is not None else default_consent_dir()
        ensure_private_dir(folder)
        ensure_private_dir(folder / RECORDS_DIR)
        for sub in (folder, folder / RECORDS_DIR, folder / KEYS_DIR, folder / TRUSTED_DIR):
            remove_stale_temporaries(sub)  # left by a writer that crashed (never read as data)
        key_file = folder / KEYS_DIR / PRIVATE_KEY_FILE
        if key_file.exists():
            issuer = load_issuer_key(folder)
        elif create_key:
            issuer = create_issuer_key(folder)
        else:
            issuer = None
        trusted = load_trusted_keys([folder / TRUSTED_DIR, *extra_trusted_dirs], own=issuer)
        public_file = folder / KEYS_DIR / PUBLIC_KEY_FILE
        if issuer is None and public_file.is_file():  # verify-only: this folder's key still counts
            trusted = trusted.with_key(load_public_key(public_file))
        return cls(folder, trusted, issuer)

    # ------------------------------------------------------------------ paths

    @property
    def records_dir(self) -> Path:
        return self.folder / RECORDS_DIR

    @property
    def revocations_path(self) -> Path:
        return self.folder / REVOCATIONS_FILE

    def record_path(self, consent_id: int | str) -> Path:
        return self.records_dir / f"{format_consent_code(parse_consent_code(consent_id)).replace('-', '')}.json"

    # ------------------------------------------------------------------ records

    def add(self, record: ConsentRecord) -> Path:
        """Store a signed record (0600). Storing the identical record again is a no-op; a
        different record under an existing ID is a :class:`ConsentError`."""
        verify_signature(record, self.trusted)  # RecordError (a ValueError) if not trusted
        path = self.record_path(record.consent_id)
        text = record.to_json().encode("utf-8")
        with self._lock:
            ensure_private_dir(self.records_dir)
            try:
                write_private_file(path, text)
            except FileExistsError:
                if path.read_bytes() != text:
                    raise ConsentError(f"a different consent record {record.code} is already stored at {path}") from None
        return path

    def issue_attested(
        self,
        avatar_hashes: Mapping[str, str],
        *,
        licence: str,
        operator: str,
        subject_name: str,
        now: datetime,
        **options,
    ) -> ConsentRecord:
        """Sign an attested-licence record with this machine's key under a fresh ID and store it.

        ``options`` go to :func:`~vcam_me.consent.records.attested_licence` (``valid_days``,
        ``scope``, ``evidence_sha256``). This is ``vcam-me consent attest``.
        """
        key = self._signing_key()
        with self._lock:
            record = attested_licence(
                key=key, avatar=avatar_hashes, licence=licence, operator=operator, subject_name=subject_name,
                now=now, consent_id=new_consent_id(self.ids()), **options,
            )
            self.add(record)
        return record

    def issue_recorded(self, avatar_hashes: Mapping[str, str], *, now: datetime, **fields) -> ConsentRecord:
        """Sign a recorded-consent record (fields as :func:`~vcam_me.consent.records.recorded_consent`)
        under a fresh ID and store it. The setup wizard calls this after checking the statement."""
        key = self._signing_key()
        with self._lock:
            record = recorded_consent(key=key, avatar=avatar_hashes, now=now, consent_id=new_consent_id(self.ids()), **fields)
            self.add(record)
        return record

    def _signing_key(self) -> IssuerKey:
        if self.issuer is None:
            raise ConsentError(f"no issuer key in {self.folder / KEYS_DIR}, so nothing can be signed here")
        return self.issuer

    def get(self, consent_id: int | str) -> ConsentRecord | None:
        """The stored record, ``None`` if there is none; :class:`RecordError` if it is damaged."""
        path = self.record_path(consent_id)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        record = record_from_json(data)
        if record.consent_id != parse_consent_code(consent_id):
            raise RecordError(f"{path.name} holds record {record.code}, not {format_consent_code(parse_consent_code(consent_id))}")
        return record

    def ids(self) -> list[int]:
        """IDs of the stored records (by file name), sorted."""
        out = []
        for path in self.records_dir.glob("*.json"):
            try:
                out.append(parse_consent_code(path.stem))
            except ValueError:
                continue
        return sorted(out)

    # ------------------------------------------------------------------ revocation

    def revocations(self) -> RevocationList:
        """The parsed revocation list (cached until the file changes)."""
        stamp = self.change_stamp()
        with self._lock:
            if self._rev_cache is not None and self._rev_cache[0] == stamp:
                return self._rev_cache[1]
            try:
                data = self.revocations_path.read_bytes()
            except FileNotFoundError:
                data = b""
            return self._parse_revocations(data, stamp)

    def _parse_revocations(self, data: bytes, stamp: object) -> RevocationList:
        """Parse with the cache: when the bytes parsed last time are still the file's start,
        only the appended lines are parsed (and their signatures checked)."""
        resume = None
        if self._rev_cache is not None:
            _, cached, digest = self._rev_cache
            if len(data) >= cached.parsed_bytes and hashlib.sha256(data[: cached.parsed_bytes]).digest() == digest:
                resume = cached
        parsed = replace(parse_revocations(data, self.trusted, resume=resume), source=str(self.revocations_path))
        self._rev_cache = (stamp, parsed, hashlib.sha256(data).digest())
        return parsed

    def change_stamp(self) -> object:
        """A cheap value (one ``stat``) that changes whenever the revocation list changes."""
        try:
            st = os.stat(self.revocations_path)
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def revoke(self, consent_id: int | str, reason: str, now: datetime) -> Revocation:
        """Revoke a stored record: append a signed line, fsync, then notify subscribers.

        Revoking an already revoked ID returns the earlier revocation and writes nothing.
        """
        issuer = self._signing_key()
        cid = parse_consent_code(consent_id)
        code = format_consent_code(cid)
        reason = " ".join(str(reason).split())
        if not reason:
            raise ConsentError("give a reason for the revocation (--reason)")
        if not self.record_path(cid).exists():
            raise ConsentError(f"no consent record {code} in {self.records_dir}; 'vcam-me consent list' shows the IDs")
        with self._lock, _locked_append(self.revocations_path) as handle:
            handle.seek(0)
            current = self._parse_revocations(handle.read(), object())  # stamp unknown: re-stat next time
            if cid in current.revoked:
                return current.revoked[cid]
            if current.problems:
                raise ConsentError(f"the revocation list {self.revocations_path} was altered ({current.problems[0]}); restore it first")
            revocation = Revocation(cid, reason, now.replace(microsecond=0), issuer.key_id)
            handle.write(revocation_line(revocation, current.last_line_sha256, issuer))
            handle.flush()
            os.fsync(handle.fileno())
        self._notify(cid)
        return revocation

    def subscribe(self, callback: Callable[[int], None]) -> Callable[[], None]:
        """Call ``callback(consent_id)`` after each revocation made in this process.

        Returns a function that unsubscribes. Callbacks run on the revoking thread and must be
        quick (a :class:`~vcam_me.consent.guard.ConsentGuard` only sets a flag).
        """
        with self._lock:
            self._listeners.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)

        return unsubscribe

    def _notify(self, consent_id: int) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for callback in listeners:
            callback(consent_id)

    # ------------------------------------------------------------------ checks

    def check(
        self,
        record_or_id: ConsentRecord | int | str | Path,
        avatar_hashes: Mapping[str, str] | None,
        now: datetime,
        *,
        use: str | None = None,
    ) -> Verdict:
        """Whether ``record_or_id`` allows rendering the avatar whose files hash to ``avatar_hashes``.

        ``record_or_id``: a parsed record, a record file (e.g. the avatar's own copy), or a
        consent ID / code to look up here. A record that is also stored here must be the
        stored one. ``avatar_hashes``: ``{file name: sha256}`` of the avatar
        (:func:`~vcam_me.consent.records.hash_avatar_folder`); ``None`` only when verifying a
        recording (see :func:`evaluate`). ``now``: the wall clock, timezone-aware.
        """
        source: Path | None = None  # the file the record was read from, named when it is damaged
        if isinstance(record_or_id, Path):
            source = record_or_id
            try:
                record = record_from_json(record_or_id.read_bytes())
            except FileNotFoundError:
                return _verdict(UNKNOWN, f"consent record file {record_or_id} does not exist")
            except RecordError as err:
                return _verdict(TAMPERED, f"consent record file {record_or_id} is not trustworthy: {err}")
        elif isinstance(record_or_id, ConsentRecord):
            record = record_or_id
        else:
            try:
                cid = parse_consent_code(record_or_id)
            except (TypeError, ValueError) as err:
                return _verdict(UNKNOWN, str(err))
            source = self.record_path(cid)
            try:
                stored = self.get(cid)
            except RecordError as err:
                return _verdict(TAMPERED, f"stored consent record {format_consent_code(cid)} ({source}) is not trustworthy: {err}",
                                consent_id=cid)
            if stored is None:
                return _verdict(UNKNOWN, f"no consent record {format_consent_code(cid)} in {self.records_dir}", consent_id=cid)
            record = stored
        if source is not None:  # a readable file whose signature fails: name the file
            try:
                verify_signature(record, self.trusted)
            except RecordError as err:
                return _verdict(TAMPERED, f"consent record file {source} is not trustworthy: {err}", record)
        if not isinstance(record_or_id, (int, str)):
            try:
                stored = self.get(record.consent_id)
            except RecordError as err:
                return _verdict(TAMPERED, f"stored consent record {record.code} ({self.record_path(record.consent_id)}) "
                                          f"is not trustworthy: {err}", record)
            if stored is not None and (stored.signature != record.signature or stored.body() != record.body()):
                return _verdict(TAMPERED, f"consent record {record.code} differs from the copy in {self.records_dir}", record)
        return evaluate(
            record, trusted=self.trusted, revocations=self.revocations(), avatar_hashes=avatar_hashes, now=now, use=use
        )

    def check_avatar(self, avatar_hashes: Mapping[str, str], now: datetime, *, use: str | None = None) -> Verdict:
        """The verdict of the best stored record for this avatar.

        A valid record naming exactly these files wins (latest expiry first). Otherwise the
        most telling refusal: a record for exactly these files (revoked, expired, ...), then
        a record sharing some of the files (``wrong-avatar``: a file was swapped), then a
        damaged record file (``tampered``: it may have been this avatar's), else ``unknown``.
        """
        given = {str(k): str(v).lower() for k, v in avatar_hashes.items()}
        exact: list[Verdict] = []
        partial: list[Verdict] = []
        damaged: list[Verdict] = []
        for cid in self.ids():
            verdict = self.check(cid, given, now, use=use)
            record = verdict.record
            if record is None:
                if verdict.status == TAMPERED:
                    damaged.append(verdict)
            elif dict(record.avatar) == given:
                exact.append(verdict)
            elif any(given.get(name) == digest for name, digest in record.avatar.items()):
                partial.append(verdict)
        valid = [v for v in exact if v.ok]
        if valid:
            return max(valid, key=lambda v: v.record.expires_at)
        for group, order in (
            (exact, (REVOKED, EXPIRED, OUT_OF_SCOPE, NOT_YET_VALID, TAMPERED)),
            (partial, (WRONG_AVATAR, REVOKED, EXPIRED, OUT_OF_SCOPE, NOT_YET_VALID, TAMPERED)),
        ):
            for status in order:
                hits = [v for v in group if v.status == status]
                if hits:
                    return hits[0]
        if damaged:
            return damaged[0]
        return _verdict(UNKNOWN, f"no consent record in {self.records_dir} covers this avatar")

    def list(self, now: datetime) -> list[Verdict]:
        """One verdict per stored record (avatar hashes taken from the record itself)."""
        out = []
        for cid in self.ids():
            try:
                record = self.get(cid)
            except RecordError as err:
                out.append(_verdict(TAMPERED, f"stored consent record {format_consent_code(cid)}: {err}", consent_id=cid))
                continue
            assert record is not None
            out.append(self.check(cid, record.avatar, now))
        return out


class _locked_append:
    """Open ``path`` for reading and appending under an exclusive lock (POSIX ``flock``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_BINARY", 0), 0o600)
        self.handle = os.fdopen(fd, "a+b")
        try:
            import fcntl

            fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX)
        except ImportError:  # Windows: a single app instance is the usual case
            pass
        return self.handle

    def __exit__(self, *exc) -> None:
        self.handle.close()  # closing releases the lock
