"""Make an avatar folder from a portrait photo (tracks it with MediaPipe, then create_avatar).

    python scripts/make_avatar.py PHOTO OUT_DIR [--overwrite] [--source TEXT]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vcam_me.avatar import create_avatar, read_photo  # noqa: E402
from vcam_me.errors import VcamError  # noqa: E402


def make(photo_path: Path, out: Path | None, overwrite: bool = False, source: str = ""):
    from vcam_me.models import verified_model_path
    from vcam_me.tracking.mediapipe_tracker import FaceTracker

    photo = read_photo(photo_path)
    with FaceTracker.create(verified_model_path("face_landmarker"), mode="image", num_faces=4) as tracker:
        faces = tracker.detect_image(photo)
    return create_avatar(photo, faces, out, overwrite=overwrite, source_name=source or photo_path.name)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("photo", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--source", default="")
    args = p.parse_args(argv)
    try:
        avatar = make(args.photo, args.out, args.overwrite, args.source)
    except VcamError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    print(f"avatar written to {avatar.folder} ({avatar.content_id[:12]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
