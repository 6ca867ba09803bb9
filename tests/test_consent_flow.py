"""No consent, no avatar: the command line refuses, attests, revokes, and stops a live session."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from vcam_me.app import main

REPO = Path(__file__).resolve().parent.parent
SAMPLE_PHOTO = REPO / "assets" / "avatars" / "sample" / "reference.png"
CLIP = REPO / "assets" / "driving" / "pyfeat_WolfgangLanger_Pexels.mp4"

pytestmark = pytest.mark.slow


@pytest.fixture
def user(private_user_dirs):
    return private_user_dirs


@pytest.fixture
def avatar(user):
    """An avatar of the user's own, made from a photo (no consent record yet)."""
    import cv2

    photo = user / "portrait.png"
    # mirrored, so it is not byte-identical to the bundled sample (whose record would cover it)
    cv2.imwrite(str(photo), cv2.imread(str(SAMPLE_PHOTO))[:, ::-1])
    folder = user / "my-avatar"
    assert main(["avatar", "create", "--photo", str(photo), "--out", str(folder)]) == 0
    return folder


def _render(avatar: Path, out: Path) -> int:
    return main(["render", "--avatar", str(avatar), "--driving", str(CLIP), "--out", str(out), "--size", "320x180", "--fps", "30"])


def _code(capsys) -> str:
    text = capsys.readouterr().out
    return text.split("attested licence ")[1].split()[0]


def test_no_record_no_render(avatar, user, capsys):
    assert _render(avatar, user / "o.mp4") == 2
    err = capsys.readouterr().err
    assert "consent" in err and "vcam-me consent attest" in err
    assert not (user / "o.mp4").exists()


def test_attest_then_render_then_revoke(avatar, user, capsys, monkeypatch):
    import vcam_me.app as app

    monkeypatch.setattr(app, "track_recording", _short_tracking(app.track_recording))
    assert main(["consent", "attest", "--avatar", str(avatar), "--licence", "my own face", "--name", "Me"]) == 0
    code = _code(capsys)
    assert _render(avatar, user / "o.mp4") == 0
    assert (user / "o.mp4").stat().st_size > 1000
    assert main(["consent", "revoke", code, "--reason", "changed my mind"]) == 0
    assert _render(avatar, user / "o2.mp4") == 2
    assert "revoked" in capsys.readouterr().err
    # attesting again keeps the revoked record beside the avatar instead of deleting it
    assert main(["consent", "attest", "--avatar", str(avatar), "--licence", "my own face"]) == 0
    assert list(avatar.glob("consent-*-revoked.json"))


def _short_tracking(real):
    """Track only the first second of the clip, to keep the test quick."""

    def first_second(source, cfg, label="tracking"):
        from itertools import islice

        class Short:
            frame_count = 24

            def iter_timed(self):
                return islice(source.iter_timed(), 24)

        return real(Short(), cfg, label)

    return first_second


def test_tampered_record_and_swapped_file_are_refused(avatar, user, capsys, monkeypatch):
    assert main(["consent", "attest", "--avatar", str(avatar), "--licence", "my own face"]) == 0
    record = avatar / "consent.json"
    original = record.read_text()
    data = json.loads(original)
    data["licence"] = "something else entirely"
    record.write_text(json.dumps(data, sort_keys=True, separators=(",", ":")))
    assert _render(avatar, user / "o.mp4") == 2
    err = capsys.readouterr().err
    assert "signature" in err or "tampered" in err or "altered" in err, err
    record.write_text(original)
    # a swapped reference image: the avatar's own hash check or the consent binding refuses it
    ref = avatar / "reference.png"
    ref.write_bytes(ref.read_bytes()[:-10] + b"0123456789")
    assert _render(avatar, user / "o.mp4") == 2
    assert "reference.png" in capsys.readouterr().err


def test_revocation_stops_a_running_session(user, capsys):
    """The bundled sample carries a signed record; revoke it mid-stream and output stops."""
    from vcam_me.app import open_registry
    from vcam_me.consent.records import utc_now

    out = user / "live.mp4"
    result: dict = {}

    def run():
        result["rc"] = main(["run", "--video", str(CLIP), "--record", str(out), "--duration", "20", "--size", "320x180", "--fps", "30"])

    thread = threading.Thread(target=run)
    started = time.monotonic()
    thread.start()
    time.sleep(4.0)
    sample = json.loads((REPO / "assets" / "avatars" / "sample" / "consent.json").read_text())
    open_registry().revoke(sample["cid"], "test: consent withdrawn", utc_now())
    thread.join(timeout=15)
    assert not thread.is_alive()
    assert result["rc"] == 2
    assert time.monotonic() - started < 12  # stopped long before the 20 s it was asked for
    assert "revoked" in capsys.readouterr().err


def test_verify_reads_the_mark_and_checks_the_record(user, capsys, monkeypatch):
    import vcam_me.app as app

    monkeypatch.setattr(app, "track_recording", _short_tracking(app.track_recording))
    out = user / "demo.mp4"
    assert main(["render", "--avatar", str(REPO / "assets/avatars/sample"), "--driving", str(CLIP), "--out", str(out),
                 "--size", "640x360", "--fps", "30"]) == 0
    capsys.readouterr()
    assert main(["verify", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    sample = json.loads((REPO / "assets/avatars/sample/consent.json").read_text())
    assert report["mark_found"] and report["consent_id"].replace("-", "") == sample["cid"]
    assert report["record_status"] == "valid" and report["kind"] == "attested-licence"
    assert report["attester"] == "vcam_me maintainers"
    # the original, unmarked driving video carries no mark
    assert main(["verify", str(CLIP), "--seconds", "3"]) == 1
    assert "no vcam-me consent mark" in capsys.readouterr().out
    assert main(["verify", str(user / "missing.mp4")]) == 2
