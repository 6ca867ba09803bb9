"""What the visible label does to the re-tracker's reading of the face above it.

    .venv/bin/python benchmarks/label_tracker.py [--avatar A] [--shifts 0 11 20 30]

The sample avatar is drawn at rest and with a few AUs (jaw open, smile, brows lowered, blink),
each frame re-tracked by MediaPipe in IMAGE mode three ways: without any label, with the label the
app stamps (the badge and corner mark, after the start banner), and with that badge moved down by
each ``--shifts`` pixel count (a what-if for layouts; parts moved off the frame are dropped). Printed:
each case's read-back change from the rest frame drawn the same way, on the channel the AUs are
meant to move. The label costs nothing when these match the unlabelled reading.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

#: case → (AUs drawn, blendshape read back)
CASES = {
    "jaw open": ({"AU26": 0.5}, "jawOpen"),
    "smile": ({"AU12_L": 0.5, "AU12_R": 0.5}, "mouthSmileLeft"),
    "brows lowered": ({"AU4_L": 0.5, "AU4_R": 0.5}, "browDownLeft"),
    "blink": ({"AU43_L": 0.6, "AU43_R": 0.6}, "eyeBlinkLeft"),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--avatar", default=str(ROOT / "assets" / "avatars" / "sample"))
    p.add_argument("--shifts", type=int, nargs="*", default=[11, 20, 30])
    args = p.parse_args(argv)

    from vcam_me import app
    from vcam_me.config import load_config
    from vcam_me.models import verified_model_path
    from vcam_me.tracking.mediapipe_tracker import FaceTracker
    from vcam_me.types import AU_INDEX, BLENDSHAPE_NAMES, ExpressionState, RenderedFrame

    size = (1280, 720)
    cfg = load_config(None, use_user_config=False)
    avatar = app.resolve_avatar(args.avatar, cfg)
    renderer = app.build_renderer(avatar, size, cfg)
    label = app.build_stamper(cfg, size, app.require_consent(avatar, "evaluation")).label
    after_banner_ms = int(1000 * cfg.label.banner_seconds) + 1000

    def drawn(aus: dict[str, float]) -> np.ndarray:
        rest = ExpressionState.neutral(0)
        au = rest.au.copy()
        for name, value in aus.items():
            au[AU_INDEX[name]] = value
        return renderer.render(ExpressionState(0, au, rest.gaze, rest.head_pose))

    def labelled(image: np.ndarray, shift: int) -> np.ndarray:
        stamped = label.stamp(RenderedFrame(image.copy(), after_banner_ms, after_banner_ms)).image
        if shift == 0:
            return stamped
        # move the badge (what the label changed in the lower half) down by `shift` rows
        changed = np.abs(stamped.astype(np.int16) - image).max(axis=2) > 0
        changed[: size[1] // 2] = False
        out = stamped.copy()
        out[changed] = image[changed]
        ys, xs = np.nonzero(changed)
        keep = ys + shift < size[1]
        out[ys[keep] + shift, xs[keep]] = stamped[ys[keep], xs[keep]]
        return out

    ways = {"no label": lambda im: im, "label": lambda im: labelled(im, 0)}
    ways.update({f"badge {s:+d} px": (lambda im, s=s: labelled(im, s)) for s in args.shifts})
    images = {"rest": drawn({}), **{case: drawn(aus) for case, (aus, _) in CASES.items()}}
    with FaceTracker.create(verified_model_path("face_landmarker"), mode="image", num_faces=1) as tracker:
        print(f"{'':14}" + "".join(f"{case:>15}" for case in CASES))
        for way, apply in ways.items():
            read = {}
            for case, image in images.items():
                faces = tracker.detect_image(apply(image))
                read[case] = faces[0].blendshapes if faces else np.full(len(BLENDSHAPE_NAMES), np.nan)
            row = "".join(f"{read[c][BLENDSHAPE_NAMES.index(ch)] - read['rest'][BLENDSHAPE_NAMES.index(ch)]:>+15.2f}"
                          for c, (_, ch) in CASES.items())
            print(f"{way:14}{row}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
