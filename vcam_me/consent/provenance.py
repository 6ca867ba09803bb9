"""C2PA Content Credentials for the recordings vcam_me writes itself.

A recording made by ``vcam-me render``, ``demo`` or ``run --record`` is signed once its MP4 is
complete, with a manifest (c2pa-python, which wraps c2pa-rs) that says:

- ``c2pa.actions.v2``: ``c2pa.created`` with digitalSourceType *trainedAlgorithmicMedia*
  (IPTC: made by a trained model), and ``c2pa.watermarked`` (every frame carries the
  invisible consent mark);
- ``c2pa.soft-binding``: the mark's algorithm (:data:`~vcam_me.consent.watermark.ALGORITHM`)
  and the value it carries, the consent code, over the whole video; so a copy whose metadata
  was stripped can still be tied back to this record through the mark;
- ``vcam-me.consent`` (:data:`CONSENT_LABEL`): the consent record that allowed the avatar:
  its code, kind, subject, issuer key ID, dates, and the signed record file itself with its
  SHA-256, so a verifier can check the Ed25519 signature without asking anyone.

Signing needs an X.509 chain. There is no public certificate for a user's machine, so each
user gets a local signing identity on first use: a small CA (10 years) and an end-entity
certificate under it (ES256, key usage digitalSignature, extended key usage emailProtection,
the profile c2pa-rs accepts for claim signing; 1 year, renewed when it nears expiry). A C2PA
validator elsewhere therefore reports the signature as *valid* but the signer as *untrusted*;
on this machine the local CA is given to the reader as a trust anchor, so it reports
*trusted*. The identity lives in ``<user data>/vcam-me/provenance`` (0700), every file 0600,
written so that it is never briefly readable by others::

    ca.pem        the local CA: its private key, then its certificate
    signer.pem    the signing key, then the chain (end-entity certificate, CA certificate)

Each file holds a key with its certificate so that renewal is one atomic replace: a key
never pairs with another key's certificate.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vcam_me import __version__
from vcam_me.consent.keys import ensure_private_dir, is_owner_only, write_private_file
from vcam_me.consent.records import ConsentRecord, format_consent_code
from vcam_me.consent.watermark import ALGORITHM as MARK_ALGORITHM
from vcam_me.errors import ConsentError
from vcam_me.storage import atomic_write_bytes

TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
CONSENT_LABEL = "vcam-me.consent"
SOFT_BINDING_LABEL = "c2pa.soft-binding"
ACTIONS_LABEL = "c2pa.actions.v2"
MP4_MIME = "video/mp4"
CA_FILE = "ca.pem"
SIGNER_FILE = "signer.pem"
CA_DAYS = 3650
SIGNER_DAYS = 365
#: A signer certificate this close to its end is replaced before signing.
RENEW_BEFORE = dt.timedelta(days=7)
_ORGANISATION = "vcam-me (local, per user)"


# --------------------------------------------------------------------------- signing identity


@dataclass(frozen=True)
class SigningIdentity:
    """What c2pa needs to sign: the private key and the certificate chain, both PEM.

    ``chain_pem`` is the end-entity certificate first, then the local CA's certificate;
    ``ca_pem`` is the CA certificate alone (the trust anchor for :func:`read_provenance`).
    """

    private_key_pem: bytes
    chain_pem: bytes
    ca_pem: bytes
    not_after: dt.datetime


def load_or_create_signing_identity(folder: Path, now: dt.datetime | None = None) -> SigningIdentity:
    """The signing identity in ``folder``, made on first use and renewed near expiry.

    Raises :class:`ConsentError` (one line) when a file is readable by others or damaged.
    """
    now = now or dt.datetime.now(dt.UTC)
    folder = ensure_private_dir(Path(folder))
    ca_path = folder / CA_FILE
    if not ca_path.exists():
        ca_key, ca_cert = _new_ca(now)
        try:
            write_private_file(ca_path, _key_pem(ca_key) + _cert_pem(ca_cert))
        except FileExistsError:  # another process made it meanwhile: use theirs
            pass
    ca_key, ca_certs = _read_key_and_certs(ca_path)
    ca_cert = ca_certs[0]
    signer_path = folder / SIGNER_FILE
    if signer_path.exists():
        key, certs = _read_key_and_certs(signer_path)
        if len(certs) == 2 and certs[1] == ca_cert and certs[0].not_valid_after_utc - RENEW_BEFORE > now:
            return _identity(key, certs)
    key, cert = _new_signer(ca_key, ca_cert, now)
    _replace_private_file(signer_path, _key_pem(key) + _cert_pem(cert) + _cert_pem(ca_cert))
    return _identity(key, [cert, ca_cert])


def load_trust_anchor(folder: Path) -> bytes | None:
    """This user's local CA certificate (PEM), or ``None`` when no identity was made yet.

    Only the certificate is read; nothing is created.
    """
    path = Path(folder) / CA_FILE
    if not path.is_file():
        return None
    try:
        _, certs = _read_key_and_certs(path)
    except ConsentError:
        return None
    return _cert_pem(certs[0])


def _identity(key, certs) -> SigningIdentity:
    return SigningIdentity(_key_pem(key), b"".join(_cert_pem(c) for c in certs), _cert_pem(certs[-1]),
                           certs[0].not_valid_after_utc)


def _new_ca(now: dt.datetime):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vcam-me local recording CA"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANISATION)])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _new_signer(ca_key, ca_cert, now: dt.datetime):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vcam-me recordings"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANISATION)])
    not_after = min(now + dt.timedelta(days=SIGNER_DAYS), ca_cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        # c2pa-rs's default profile: documentSigning and c2pa's own claim-signing EKU were
        # refused here (c2pa-python 0.38.1 / c2pa-rs 0.91.3); emailProtection is accepted.
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _key_usage(*, cert_sign: bool):
    from cryptography import x509

    return x509.KeyUsage(
        digital_signature=not cert_sign, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=cert_sign, crl_sign=cert_sign,
        encipher_only=False, decipher_only=False,
    )


def _key_pem(key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return cert.public_bytes(serialization.Encoding.PEM)


def _read_key_and_certs(path: Path):
    """The private key and the certificates of one identity file (owner-only, or refused)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if not is_owner_only(path):
        mode = stat.S_IMODE(os.stat(path).st_mode)
        raise ConsentError(f"C2PA signing key {path} has permissions {mode:04o}; others may read it: "
                           f"run 'chmod 600 {path}' (or delete it: a new one is made)")
    try:
        data = path.read_bytes()
        key = serialization.load_pem_private_key(data, password=None)
        certs = x509.load_pem_x509_certificates(data)
    except (OSError, ValueError, TypeError) as err:
        raise ConsentError(f"C2PA signing identity {path} cannot be read: {' '.join(str(err).split())}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not certs:
        raise ConsentError(f"C2PA signing identity {path} is not an ES256 key with its certificate")
    return key, certs


def _replace_private_file(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` (0600) in one step: a crash leaves the old file or the new."""
    atomic_write_bytes(path, data, mode=0o600)


# --------------------------------------------------------------------------- the manifest


def build_manifest(record: ConsentRecord, title: str, *, when: dt.datetime | None = None) -> dict[str, Any]:
    """The C2PA manifest definition for one recording whose frames carry ``record``'s ID (pure)."""
    when = (when or dt.datetime.now(dt.UTC)).replace(microsecond=0)
    code = format_consent_code(record.consent_id)
    record_json = record.to_json()
    agent = {"name": "vcam-me", "version": __version__}
    return {
        "claim_generator_info": [agent],
        "title": title,
        "format": MP4_MIME,
        "assertions": [
            {"label": ACTIONS_LABEL, "data": {"actions": [
                {"action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA, "softwareAgent": agent,
                 "when": when.isoformat(),
                 "description": "AI-generated avatar of a consenting person, rendered live from facial action units"},
                {"action": "c2pa.watermarked", "softwareAgent": agent,
                 "description": f"every frame carries the invisible consent mark {MARK_ALGORITHM} with consent ID {code}"},
            ]}},
            {"label": SOFT_BINDING_LABEL, "data": {
                "alg": MARK_ALGORITHM,
                "name": "vcam_me invisible consent mark: the consent ID, readable with vcam-me verify",
                "blocks": [{"scope": {}, "value": code}],
                "pad": [],
            }},
            {"label": CONSENT_LABEL, "data": {
                "consent_id": code,
                "kind": record.kind,
                "subject": record.subject_name,
                "issuer_key_id": record.issuer_key_id,
                "issued_at": record.issued_at.isoformat(),
                "expires_at": record.expires_at.isoformat(),
                "record_sha256": hashlib.sha256(record_json.encode("utf-8")).hexdigest(),
                "record": record_json,
            }},
        ],
    }


def sign_recording(source: Path, dest: Path, manifest: dict[str, Any], identity: SigningIdentity) -> None:
    """Write ``dest``: the MP4 ``source`` with ``manifest`` embedded and signed (ES256).

    ``source`` is only read. Raises :class:`ConsentError` (one line) if c2pa cannot sign.
    """
    try:
        import c2pa
    except ImportError as err:
        raise ConsentError(f"C2PA signing is not available on this platform ({err})") from None
    try:
        signer = c2pa.Signer.from_info(c2pa.C2paSignerInfo(
            c2pa.C2paSigningAlg.ES256, identity.chain_pem, identity.private_key_pem, None))
        with signer, c2pa.Builder(manifest) as builder, open(source, "rb") as src, open(dest, "w+b") as dst:
            builder.sign(signer, MP4_MIME, src, dst)
    except c2pa.C2paError as err:
        raise ConsentError(f"C2PA signing failed: {' '.join(str(err).split())}") from None


def sign_recording_with_consent(source: Path, dest: Path, record: ConsentRecord | None, identity_folder: Path,
                                title: str) -> None:
    """Sign the finished recording ``source`` into ``dest`` for ``record`` (the recorder's
    finishing step; the identity is made on first use)."""
    if record is None:
        raise ConsentError("no consent record to put in the C2PA manifest")
    identity = load_or_create_signing_identity(identity_folder)
    sign_recording(source, dest, build_manifest(record, title), identity)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class ProvenanceReport:
    """What a file's C2PA manifest says, as far as vcam_me cares.

    ``state``: c2pa's validation state: ``"Invalid"`` (a signature or hash does not match:
    the file or its manifest was altered), ``"Valid"`` (signature and hashes are right; the
    signer is not in a trust list this reader knows), ``"Trusted"`` (also chains to a trust
    anchor: here, this user's own local CA). ``None`` when there is no manifest.
    """

    present: bool
    state: str | None = None
    failures: tuple[str, ...] = ()
    signer: str | None = None
    consent_code: str | None = None
    kind: str | None = None
    subject: str | None = None
    issuer_key_id: str | None = None
    record_json: str | None = None
    record_sha256_ok: bool | None = None
    source_type: str | None = None
    soft_binding_alg: str | None = None
    soft_binding_value: str | None = None
    error: str | None = None

    @property
    def signature_valid(self) -> bool:
        return self.state in ("Valid", "Trusted")

    def as_dict(self) -> dict[str, Any]:
        out = {
            "present": self.present, "validation_state": self.state, "signature_valid": self.signature_valid,
            "signed_by_this_machine": self.state == "Trusted", "signer": self.signer,
            "failures": list(self.failures), "consent_id": self.consent_code, "kind": self.kind,
            "subject": self.subject, "issuer_key_id": self.issuer_key_id, "record_sha256_ok": self.record_sha256_ok,
            "digital_source_type": self.source_type, "soft_binding_alg": self.soft_binding_alg,
            "soft_binding_value": self.soft_binding_value,
        }
        if self.error:
            out["error"] = self.error
        return out


def read_provenance(path: Path, trust_anchor_pem: bytes | None = None) -> ProvenanceReport:
    """Read and validate the C2PA manifest of ``path``. Never raises for a bad or unsigned
    file: "no manifest" is ``present=False``; an unreadable one sets ``error``."""
    try:
        import c2pa
    except ImportError as err:
        return ProvenanceReport(False, error=f"c2pa-python is not available ({err})")
    # Reading a stranger's file must not make us fetch what it points to (a remote manifest).
    settings: dict[str, Any] = {"verify": {"verify_trust": True, "remote_manifest_fetch": False}}
    if trust_anchor_pem:
        settings["trust"] = {"user_anchors": trust_anchor_pem.decode("ascii")}
    try:
        with c2pa.Context.from_dict(settings) as context, open(path, "rb") as stream, \
                c2pa.Reader(None, stream, None, context) as reader:  # format from the bytes
            state = reader.get_validation_state()
            results = reader.get_validation_results() or {}
            manifest = reader.get_active_manifest() or {}
    except c2pa.C2paError.ManifestNotFound:
        return ProvenanceReport(False)
    except c2pa.C2paError as err:  # a format c2pa does not read, or a manifest too damaged to parse
        return ProvenanceReport(False, error=f"no C2PA manifest could be read: {' '.join(str(err).split())}")
    except OSError as err:
        return ProvenanceReport(False, error=f"cannot read {path}: {err}")
    failures = tuple(f"{f.get('code')}: {f.get('explanation', '')}".strip()
                     for f in (results.get("activeManifest") or {}).get("failure", []))
    assertions = {a.get("label"): a.get("data") or {} for a in manifest.get("assertions", [])}
    consent = assertions.get(CONSENT_LABEL, {})
    soft = assertions.get(SOFT_BINDING_LABEL, {})
    record_json = consent.get("record")
    sha_ok = None
    if isinstance(record_json, str) and consent.get("record_sha256"):
        sha_ok = hashlib.sha256(record_json.encode("utf-8")).hexdigest() == consent["record_sha256"]
    blocks = soft.get("blocks") or [{}]
    info = manifest.get("signature_info") or {}
    signer = ", ".join(v for v in (info.get("common_name"), info.get("issuer")) if v) or None
    return ProvenanceReport(
        present=True, state=state, failures=failures, signer=signer,
        consent_code=consent.get("consent_id"), kind=consent.get("kind"), subject=consent.get("subject"),
        issuer_key_id=consent.get("issuer_key_id"), record_json=record_json if isinstance(record_json, str) else None,
        record_sha256_ok=sha_ok, source_type=_created_source_type(assertions),
        soft_binding_alg=soft.get("alg"), soft_binding_value=_text(blocks[0].get("value")),
    )


def _created_source_type(assertions: dict[str, Any]) -> str | None:
    for label in (ACTIONS_LABEL, "c2pa.actions"):
        for action in assertions.get(label, {}).get("actions", []):
            if action.get("action") == "c2pa.created":
                return action.get("digitalSourceType")
    return None


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bytes, list)):
        try:
            return bytes(value).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
    return json.dumps(value)
