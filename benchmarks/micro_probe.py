"""What the re-tracker reads when one micro-expression's AUs are drawn on the avatar, held still.

    nice -n 19 .venv/bin/python benchmarks/micro_probe.py [--avatar A] [--peaks 0.15 0.3]
        [--types lid_raise brow_lowerer ...] [--basis models/au_basis.npz]

For each library type, each of its AU patterns (variants, without the optional extras) on
each side it can take is added to a neutral state at each peak, drawn by the renderer the
app builds (the real basis, gains and mixing), and re-tracked on its own by MediaPipe in
IMAGE mode; the rest render's read-back is subtracted. It prints, per pattern, the channels
that moved most: a quick way to see whether an AU is drawn too weakly, on the wrong side,
or read back as another AU, without the minutes of a full ``vcam-me eval micro``.
A single still frame per case, so this says nothing about timing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--avatar", default=str(ROOT / "assets" / "avatars" / "sample"))
    p.add_argument("--peaks", type=float, nargs="+", default=[0.15, 0.3])
    p.add_argument("--types", nargs="*", default=None, help="library types (default: all)")
    p.add_argument("--basis", type=Path, default=None, help="basis .npz (default: the shipped one)")
    p.add_argument("--top", type=int, default=6, help="channels printed per case")
    p.add_argument("--size", default="1280x720")
    args = p.parse_args(argv)

    import cv2

    from vcam_me import app
    from vcam_me.avatar import AUBasis, Avatar, AvatarRenderer
    from vcam_me.config import load_config
    from vcam_me.expression import blendshapes_to_au
    from vcam_me.expression.micro import MicroLibrary
    from vcam_me.expression.micro.library import expand_aus
    from vcam_me.types import AU_CHANNELS, AU_INDEX, ExpressionState

    cv2.setNumThreads(1)
    cfg = load_config()
    size = tuple(int(v) for v in args.size.split("x"))
    library = MicroLibrary.load(*app.micro_library_paths(cfg))
    basis = AUBasis.load(args.basis) if args.basis else AUBasis.load()
    renderer = AvatarRenderer.create(Avatar.load(Path(args.avatar)), size, cfg.avatar, basis=basis)
    skipped = {"AU25", "AU27"}

    with app.build_tracker(cfg, "image") as tracker:
        def read(state: ExpressionState) -> np.ndarray | None:
            faces = tracker.detect_image(renderer.render(state))
            return blendshapes_to_au(faces[0].blendshapes[None])[0].astype(np.float64) if faces else None

        rest = read(ExpressionState.neutral(0))
        if rest is None:
            print("no face on the rest render", file=sys.stderr)
            return 1
        for name in args.types or library.names:
            type_ = library.types[name]
            patterns = [v.aus for v in type_.variants]
            sides = [s for s, prob in type_.laterality.items() if prob > 0]
            for aus in patterns:
                for side in sides:
                    for peak in args.peaks:
                        au = ExpressionState.neutral(0).au.copy()
                        for channel, rel in expand_aus(aus, side).items():
                            au[AU_INDEX[channel]] += peak * rel
                        state = ExpressionState(0, au, ExpressionState.neutral(0).gaze, ExpressionState.neutral(0).head_pose)
                        got = read(state)
                        if got is None:
                            print(f"{name:24s} {side:5s} {peak:.2f} {dict(aus)}: no face")
                            continue
                        delta = got - rest
                        order = [i for i in np.argsort(-np.abs(delta)) if AU_CHANNELS[i] not in skipped][: args.top]
                        shown = " ".join(f"{AU_CHANNELS[i]}{delta[i]:+.3f}" for i in order)
                        want = ",".join(f"{k}={v:g}" for k, v in aus.items())
                        print(f"{name:24s} {want:28s} {side:5s} {peak:.2f} | {shown}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
