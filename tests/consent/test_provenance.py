"""C2PA Content Credentials on our own recordings: the real recorder, the real c2pa library."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from vcam_me.app import RecordingSigner, _report_signing, main, provenance_dir
from vcam_me.consent import provenance as pv
from vcam_me.consent.records import format_consent_code, record_from_json
from vcam_me.errors import ConsentError
from vcam_me.output import RecorderSink
from vcam_me.types import RenderedFrame

REPO = Path(__file__).resolve().parents[2]
SAMPLE_AVATAR = REPO / "assets" / "avatars" / "sample"
CLIP = REPO / "assets" / "driving" / "pyfeat_WolfgangLanger_Pexels.mp4"
POSIX = os.name == "posix"


@pytest.fixture
def record():
    return record_from_json((SAMPLE_AVATAR / "consent.json").read_text(encoding="utf-8"))


def _record_frames(path: Path, finish, n: int = 12) -> RecorderSink:
    rng = np.random.default_rng(3)
    with RecorderSink.open(path, (160, 96), 30, finish=finish) as sink:
        for i in range(n):
            sink.send(RenderedFrame(rng.integers(0, 255, (96, 160, 3), dtype=np.uint8), i * 33))
    return sink


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_recording_is_signed_with_the_consent_record(private_user_dirs, tmp_path, record):
    import c2pa

    out = tmp_path / "call.mp4"
    sink = _record_frames(out, RecordingSigner(out, record))
    assert sink.finish_error is None and out.is_file() and _leftovers(tmp_path) == []

    # the c2pa library itself reads it back
    with c2pa.Reader(str(out)) as reader:
        manifest = reader.get_active_manifest()
    assertions = {a["label"]: a["data"] for a in manifest["assertions"]}
    created = [a for a in assertions["c2pa.actions.v2"]["actions"] if a["action"] == "c2pa.created"]
    assert created[0]["digitalSourceType"] == pv.TRAINED_ALGORITHMIC_MEDIA
    assert any(a["action"] == "c2pa.watermarked" for a in assertions["c2pa.actions.v2"]["actions"])
    code = format_consent_code(record.consent_id)
    assert assertions[pv.CONSENT_LABEL]["consent_id"] == code
    assert assertions[pv.CONSENT_LABEL]["kind"] == "attested-licence"
    assert record_from_json(assertions[pv.CONSENT_LABEL]["record"]) == record  # the signed record, intact
    assert assertions["c2pa.soft-binding"]["alg"] == "vcam_me.ssluma.v1"
    assert assertions["c2pa.soft-binding"]["blocks"][0]["value"] == code

    # valid everywhere; trusted where this user's local CA is the anchor
    elsewhere = pv.read_provenance(out)
    assert elsewhere.present and elsewhere.state == "Valid" and elsewhere.consent_code == code
    here = pv.read_provenance(out, pv.load_trust_anchor(provenance_dir()))
    assert here.state == "Trusted" and here.record_sha256_ok and here.source_type == pv.TRAINED_ALGORITHMIC_MEDIA


def test_an_altered_recording_fails_validation(private_user_dirs, tmp_path, record):
    out = tmp_path / "call.mp4"
    _record_frames(out, RecordingSigner(out, record))
    data = bytearray(out.read_bytes())
    data[-200] ^= 0xFF  # inside the video data
    out.write_bytes(bytes(data))
    report = pv.read_provenance(out, pv.load_trust_anchor(provenance_dir()))
    assert report.present and report.state == "Invalid" and not report.signature_valid
    assert any("mismatch" in f for f in report.failures)


def test_an_unsigned_file_has_no_manifest(tmp_path):
    out = tmp_path / "plain.mp4"
    _record_frames(out, None)
    report = pv.read_provenance(out)
    assert not report.present and report.error is None


def test_failed_signing_keeps_the_unsigned_recording_and_says_so_in_one_line(private_user_dirs, tmp_path, capsys):
    out = tmp_path / "call.mp4"
    sink = _record_frames(out, RecordingSigner(out, record=None))  # nothing to sign for: a real refusal
    assert out.is_file() and out.stat().st_size > 1000 and _leftovers(tmp_path) == []
    assert sink.finish_error and not pv.read_provenance(out).present
    _report_signing(sink)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not C2PA-signed" in err and str(out) in err


def test_a_finishing_step_that_crashes_loses_nothing(tmp_path):
    def half_written_then_crash(finished: Path, signed: Path) -> None:
        signed.write_bytes(finished.read_bytes()[:100])
        raise OSError("disk full")

    out = tmp_path / "call.mp4"
    sink = _record_frames(out, half_written_then_crash)
    assert sink.finish_error == "disk full"
    assert out.stat().st_size > 1000 and _leftovers(tmp_path) == []  # the whole recording, no half file


@pytest.mark.skipif(not POSIX, reason="permission bits are POSIX")
def test_signing_identity_is_owner_only_and_kept(tmp_path):
    folder = tmp_path / "provenance"
    first = pv.load_or_create_signing_identity(folder)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for name in (pv.CA_FILE, pv.SIGNER_FILE):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    again = pv.load_or_create_signing_identity(folder)
    assert again == first
    os.chmod(folder / pv.SIGNER_FILE, 0o644)
    with pytest.raises(ConsentError, match="others may read it"):
        pv.load_or_create_signing_identity(folder)


def test_signer_certificate_is_renewed_under_the_same_ca(tmp_path):
    from cryptography import x509

    folder = tmp_path / "provenance"
    first = pv.load_or_create_signing_identity(folder)
    later = first.not_after + dt.timedelta(days=1)
    renewed = pv.load_or_create_signing_identity(folder, now=later)
    assert renewed.ca_pem == first.ca_pem and renewed.private_key_pem != first.private_key_pem
    leaf = x509.load_pem_x509_certificates(renewed.chain_pem)[0]
    assert leaf.not_valid_after_utc > later
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign


@pytest.mark.slow
def test_render_writes_a_signed_recording_and_verify_reports_it(private_user_dirs, tmp_path, capsys, monkeypatch):
    import itertools

    from vcam_me import app

    real_tracking = app.track_recording

    def first_second(source, cfg, label="tracking"):
        class Short:
            frame_count = 24

            def iter_timed(self):
                return itertools.islice(source.iter_timed(), 24)

        return real_tracking(Short(), cfg, label)

    monkeypatch.setattr(app, "track_recording", first_second)
    out = tmp_path / "demo.mp4"
    assert main(["render", "--avatar", str(SAMPLE_AVATAR), "--driving", str(CLIP), "--out", str(out),
                 "--size", "640x360", "--fps", "30"]) == 0
    said = capsys.readouterr()
    assert "; C2PA-signed" in said.out and "not C2PA-signed" not in said.err
    assert main(["verify", str(out), "--json", "--seconds", "2"]) == 0
    report = json.loads(capsys.readouterr().out)
    c2pa = report["c2pa"]
    assert c2pa["present"] and c2pa["validation_state"] == "Trusted" and c2pa["signed_by_this_machine"]
    assert c2pa["consent_id"] == report["consent_id"] and c2pa["agrees_with_mark"] is True
    assert c2pa["digital_source_type"] == pv.TRAINED_ALGORITHMIC_MEDIA
    assert main(["verify", str(out), "--seconds", "2"]) == 0
    text = capsys.readouterr().out
    assert "C2PA: manifest present, signature valid (signed on this machine)" in text
    assert "agrees with the mark" in text

    if not POSIX:
        return
    # a signing key others can read is refused: the render still succeeds, unsigned, with one line
    os.chmod(provenance_dir() / pv.SIGNER_FILE, 0o644)
    unsigned = tmp_path / "unsigned.mp4"
    assert main(["render", "--avatar", str(SAMPLE_AVATAR), "--driving", str(CLIP), "--out", str(unsigned),
                 "--size", "320x180", "--fps", "30"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "C2PA" in line]
    assert len(warnings) == 1 and "not C2PA-signed" in warnings[0] and "others may read it" in warnings[0]
    assert unsigned.stat().st_size > 1000 and not pv.read_provenance(unsigned).present


@pytest.mark.slow
def test_a_live_run_records_a_signed_file(private_user_dirs, tmp_path, record):
    out = tmp_path / "live.mp4"
    assert main(["run", "--video", str(CLIP), "--record", str(out), "--duration", "1", "--size", "320x180",
                 "--fps", "30"]) == 0
    report = pv.read_provenance(out, pv.load_trust_anchor(provenance_dir()))
    assert report.state == "Trusted" and report.consent_code == format_consent_code(record.consent_id)
