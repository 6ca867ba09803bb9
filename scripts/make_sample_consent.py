"""Sign the attested-licence record of the bundled sample avatar.

The bundled demo avatar is a stated royalty-free photo (see assets/avatars/sample/SOURCE.md). Its
record is signed by a key made for this one purpose and then thrown away: only its public half is
kept (assets/consent/trusted/), so nobody — the maintainers included — can mint other records
that this key would vouch for. Run again whenever the sample avatar's files change:

    .venv/bin/python scripts/make_sample_consent.py
"""

from __future__ import annotations

from pathlib import Path

from vcam_me.consent.keys import IssuerKey, _public_pem
from vcam_me.consent.records import attested_licence, hash_avatar_folder, utc_now

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "assets" / "avatars" / "sample"
TRUSTED = ROOT / "assets" / "consent" / "trusted"


def main() -> None:
    key = IssuerKey.generate()
    record = attested_licence(
        key=key,
        avatar=hash_avatar_folder(SAMPLE),
        licence="royalty-free sample image as stated by its source "
        "(hugocornellier/face_detection_tflite, assets/samples/iris-detection-ex1.jpg); "
        "used as the bundled demo avatar of vcam_me",
        operator="vcam_me maintainers",
        subject_name="the sample portrait",
        now=utc_now(),
        valid_days=3650,
    )
    TRUSTED.mkdir(parents=True, exist_ok=True)
    for old in TRUSTED.glob("*.pub"):
        old.unlink()
    (TRUSTED / f"{key.key_id}.pub").write_bytes(_public_pem(key.public_key))
    (SAMPLE / "consent.json").write_text(record.to_json(), encoding="utf-8")
    print(f"signed {record.code} ({record.kind}) for {SAMPLE}, key {key.key_id}; private key discarded")


if __name__ == "__main__":
    main()
