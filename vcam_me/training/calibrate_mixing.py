"""Cross-talk compensation of the AU basis: a commanded AU should read back as that AU, on that side.

    python -m vcam_me.training.calibrate_mixing --basis models/au_basis.npz \\
        --avatars assets/avatars/sample ../shared/data/avatars/fdtflite_iris-detection-ex1.jpg ...

The per-feature gains of :mod:`vcam_me.training.calibrate_gains` scale each feature on its
own. What MediaPipe reads back on a warped photo also mixes channels (a lowered brow reads
partly as a raised outer brow) and sides (a both-sided squint reads stronger on one side);
a diagonal gain cannot undo that.

Probes: for every avatar, the renderer (gains on, no mixing, no head pose) draws the rest
face and each AU feature alone at a few levels; every frame is re-tracked on its own
(MediaPipe IMAGE mode: no temporal filter), its blendshapes go through the project's
crosswalk to AU channels, and the rest readback is subtracted. The least-squares slope over
the levels gives the response matrix ``R`` (read-back channel × commanded feature, per
unit). The avatars' responses are averaged, and, unless ``--asymmetric``, averaged with
their own mirror image (left ↔ right), since a face's two sides should answer alike.

Fit: on the channels that read back at all (own-channel response ≥ ``--min-response``),
``M = argmin ‖R M − I‖² + λ ‖M − I‖²`` (ridge toward the identity, so weakly determined
entries stay put), then bounded (diagonal, off-diagonal). Features whose own channel does
not read back (the tracker is blind to them on a warped photo) and gaze keep the identity.
By default only :data:`DEFAULT_ONLY` are compensated. ``M`` is written into the basis file as
``mixing``; the renderer drives ``gain · (M @ features)``. Run this after the gains (``R``
is measured with them), then refit the pose terms, since a differently drawn face reads as a
differently turned head: ``python -m vcam_me.training.calibrate_gains --basis ... --pose-only
--iterations 1``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vcam_me.avatar import AUBasis, Avatar, AvatarRenderer
from vcam_me.errors import AvatarError
from vcam_me.training.features import (
    FEATURE_NAMES,
    blendshapes_to_au_and_gaze,
    features_from,
    mirror_features,
)
from vcam_me.types import AU_INDEX, DRIVING_AU_CHANNELS, ExpressionState

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
DEFAULT_AVATARS = (
    ROOT / "assets" / "avatars" / "sample",
    DATA / "avatars" / "mediapipe_sergey.png",
    DATA / "avatars" / "mpsamples_business-person.png",
    DATA / "avatars" / "pyfeat_single_face.jpg",
)
#: Commanded levels of each probed feature (fractions of the feature's unit).
DEFAULT_LEVELS = (0.15, 0.3, 0.6)
#: A channel whose own response (read back per unit commanded) is below this is treated
#: as unread: the tracker barely sees it on a warped photo, and compensating it only distorts.
MIN_RESPONSE = 0.15
#: Ridge strength toward the identity.
RIDGE = 0.03
#: The AUs compensated by default. AU17 and the mouth's sideways shift (MOUTH_L/R) are
#: read back but left out: compensating them lowered their Pearson r on real clips
#: (AU17_lower 0.58 → -0.15 on pyfeat_WolfgangLanger, MOUTH_L 0.93 → 0.51 on liveportrait_d8).
DEFAULT_ONLY = ("AU1", "AU2", "AU4", "AU7", "AU10", "AU12", "AU16", "AU20", "AU22", "AU24", "AU26", "AU43")
#: Bounds of the fitted matrix: its diagonal (how much of a feature itself is drawn) and
#: any off-diagonal entry (how much of another feature is added or taken away).
DIAGONAL_LIMITS = (0.5, 2.5)
OFF_DIAGONAL_LIMIT = 0.8

N_AU = len(DRIVING_AU_CHANNELS)


def probe_state(feature: int | None = None, level: float = 0.0) -> ExpressionState:
    """Neutral state, or the AU feature ``feature`` alone at ``level``; no gaze, no pose."""
    state = ExpressionState.neutral(0)
    if feature is None:
        return state
    au = state.au.copy()
    au[AU_INDEX[DRIVING_AU_CHANNELS[feature]]] = level
    return ExpressionState(0, au, state.gaze, state.head_pose)


def readback(blendshapes: np.ndarray) -> np.ndarray:
    """``(52,)`` blendshape scores → ``(N_AU,)`` AU features as the crosswalk reads them."""
    au, gaze = blendshapes_to_au_and_gaze(np.asarray(blendshapes, np.float32))
    return features_from(au, gaze)[:N_AU].astype(np.float64)


def slope_through_origin(levels: np.ndarray, changes: np.ndarray) -> np.ndarray:
    """Least-squares ``change ≈ slope · level`` per column; ``changes`` is ``(n_levels, n)``
    with NaN rows for frames where no face was found. NaN where no level was read."""
    ok = np.isfinite(changes).all(1)
    if not ok.any():
        return np.full(changes.shape[1], np.nan)
    lv = levels[ok]
    return (lv @ changes[ok]) / float(lv @ lv)


def probe_response(render, read, levels: Sequence[float] = DEFAULT_LEVELS,
                   features: Sequence[int] | None = None) -> np.ndarray:
    """``(N_AU, N_AU)`` response ``R[channel, feature]`` per unit of the commanded feature
    (only the columns of ``features`` when given, NaN elsewhere).

    ``render(state) -> image`` draws one frame, ``read(image) -> (52,) blendshapes or None``
    re-tracks it on its own.
    """
    rest = read(render(probe_state()))
    if rest is None:
        raise AvatarError("no face found on the avatar's rest render: it cannot be calibrated")
    rest_features = readback(rest)
    levels = np.asarray(levels, np.float64)
    response = np.full((N_AU, N_AU), np.nan)
    for j in range(N_AU) if features is None else features:
        changes = np.full((len(levels), N_AU), np.nan)
        for k, level in enumerate(levels):
            shapes = read(render(probe_state(j, float(level))))
            if shapes is not None:
                changes[k] = readback(shapes) - rest_features
        response[:, j] = slope_through_origin(levels, changes)
    return response


def mirrored(response: np.ndarray) -> np.ndarray:
    """The response of the mirrored face: left and right channels and features swapped."""
    swap = mirror_features()[0].astype(int)[:N_AU]
    return response[np.ix_(swap, swap)]


def pooled_response(responses: Sequence[np.ndarray], symmetric: bool = True) -> np.ndarray:
    """Mean over avatars (ignoring entries an avatar could not read), optionally averaged
    with its mirror image."""
    stack = np.stack(responses)
    ok = np.isfinite(stack)
    mean = np.where(ok, stack, 0.0).sum(0) / np.maximum(ok.sum(0), 1)
    return 0.5 * (mean + mirrored(mean)) if symmetric else mean


def fit_mixing(response: np.ndarray, min_response: float = MIN_RESPONSE, ridge: float = RIDGE,
               diagonal_limits: tuple[float, float] = DIAGONAL_LIMITS,
               off_diagonal_limit: float = OFF_DIAGONAL_LIMIT, keep_scale: bool = False,
               only: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(N_AU, N_AU)`` response → ``(len(FEATURE_NAMES),) * 2`` mixing ``M`` with ``R M ≈ I``
    on the read channels, identity elsewhere; and the boolean mask of read channels.

    ``keep_scale``: aim at ``R M ≈ diag(R)`` instead, i.e. undo only the cross-talk and
    leave each feature's own read-back strength to the gains. ``only``: compensate just these
    AUs (written without side, e.g. ``AU4``); the others keep the identity."""
    read = np.diag(response) >= min_response
    if only is not None:
        read &= np.array([_base(c) in set(only) for c in DRIVING_AU_CHANNELS])
    mixing = np.eye(len(FEATURE_NAMES))
    idx = np.flatnonzero(read)
    if idx.size:
        r = response[np.ix_(idx, idx)]
        eye = np.eye(idx.size)
        target = np.diag(np.diag(r)) if keep_scale else eye
        m = np.linalg.solve(r.T @ r + ridge * eye, r.T @ target + ridge * eye)
        off = ~eye.astype(bool)
        m[off] = np.clip(m[off], -off_diagonal_limit, off_diagonal_limit)
        m[~off] = np.clip(m[~off], *diagonal_limits)
        mixing[np.ix_(idx, idx)] = m
    return mixing, read


def _base(channel: str) -> str:
    """``AU4_L`` → ``AU4``; unsided channels as they are."""
    return channel[:-2] if channel.endswith(("_L", "_R")) else channel


def cross_talk_summary(response: np.ndarray, read: np.ndarray, top: int = 8) -> str:
    """The largest off-diagonal responses among read channels, as text."""
    r = np.where(np.outer(read, read), response, 0.0)
    np.fill_diagonal(r, 0.0)
    order = np.argsort(-np.abs(r), axis=None)[:top]
    names = DRIVING_AU_CHANNELS
    return " ".join(f"{names[j]}→{names[i]}={r[i, j]:+.2f}" for i, j in zip(*np.unravel_index(order, r.shape)))


def _load_avatar(spec: Path) -> Avatar:
    if (spec / "avatar.json").is_file():
        return Avatar.load(spec)
    from vcam_me.training.closed_loop import make_avatar

    return make_avatar(spec)  # in memory only: nothing of the shared portrait is written


def measure(basis: AUBasis, avatars: Sequence[Path], levels: Sequence[float]) -> list[np.ndarray]:
    """Per-avatar responses of ``basis`` without its mixing (the real renderer, the real tracker)."""
    from vcam_me.models import verified_model_path
    from vcam_me.tracking.mediapipe_tracker import FaceTracker

    unmixed = AUBasis(basis.basis, basis.gain, basis.pose_gain, basis.pose_coupling)
    responses = []
    with FaceTracker.create(verified_model_path("face_landmarker"), mode="image") as tracker:
        def read(image: np.ndarray) -> np.ndarray | None:
            faces = tracker.detect_image(image)
            return faces[0].blendshapes if faces else None

        for spec in avatars:
            t0 = time.monotonic()
            renderer = AvatarRenderer.create(_load_avatar(spec), basis=unmixed)
            response = probe_response(renderer.render, read, levels)
            responses.append(response)
            print(f"{spec.name}: own-channel response median {np.nanmedian(np.diag(response)):.2f}; "
                  f"{cross_talk_summary(response, np.diag(response) >= MIN_RESPONSE, 5)}  "
                  f"({time.monotonic() - t0:.0f} s)", flush=True)
    return responses


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--basis", type=Path, required=True, help="basis .npz to calibrate")
    p.add_argument("--out", type=Path, default=None, help="write the calibrated basis here (default: rewrite --basis)")
    p.add_argument("--avatars", type=Path, nargs="*", default=list(DEFAULT_AVATARS),
                   help="avatar folders or portrait photos (photos become in-memory avatars)")
    p.add_argument("--levels", type=float, nargs="+", default=list(DEFAULT_LEVELS))
    p.add_argument("--responses", type=Path, default=None,
                   help=".npz of per-avatar responses: read from it if it exists, else measured and saved to it")
    p.add_argument("--asymmetric", action="store_true", help="do not average the response with its mirror image")
    p.add_argument("--min-response", type=float, default=MIN_RESPONSE)
    p.add_argument("--ridge", type=float, default=RIDGE)
    p.add_argument("--only", nargs="+", metavar="AU", default=list(DEFAULT_ONLY),
                   help="compensate only these AUs (without side, e.g. AU1 AU2 AU4 AU7 AU43); the others keep "
                        f"the identity (default: {' '.join(DEFAULT_ONLY)})")
    p.add_argument("--all", action="store_true", help="compensate every channel that reads back")
    p.add_argument("--keep-scale", action="store_true",
                   help="undo only the cross-talk (R M ≈ diag R), not each feature's own strength")
    args = p.parse_args(argv)

    import cv2

    cv2.setNumThreads(1)
    with np.load(args.basis) as data:
        stored = {k: data[k] for k in data.files}
    basis = AUBasis.load(args.basis)
    if args.responses and args.responses.is_file():
        with np.load(args.responses) as data:
            responses = list(data["responses"])
            names = [str(n) for n in data["avatars"]]
        print(f"responses of {len(responses)} avatars read from {args.responses}")
    else:
        responses = measure(basis, args.avatars, args.levels)
        names = [a.name for a in args.avatars]
        if args.responses:
            np.savez(args.responses, responses=np.stack(responses), avatars=np.array(names),
                     levels=np.array(args.levels))
    response = pooled_response(responses, symmetric=not args.asymmetric)
    mixing, read = fit_mixing(response, args.min_response, args.ridge, keep_scale=args.keep_scale,
                              only=None if args.all else args.only)
    unread = [n for n, ok in zip(DRIVING_AU_CHANNELS, read) if not ok]
    print(f"pooled cross-talk: {cross_talk_summary(response, read)}")
    print(f"unread channels (identity): {' '.join(unread)}")
    after = response @ mixing[:N_AU, :N_AU]
    print(f"expected after mixing: {cross_talk_summary(after, read)}")
    print(f"mixing diagonal range {np.diag(mixing).min():.2f}..{np.diag(mixing).max():.2f}, "
          f"largest off-diagonal {np.abs(mixing - np.diag(np.diag(mixing))).max():.2f}")
    stored["mixing"] = mixing.astype(np.float32)
    stored["mixing_calibration"] = np.array(
        f"probe renders of {' '.join(names)} at levels {' '.join(map(str, args.levels))}, IMAGE-mode re-tracking; "
        f"{'asymmetric' if args.asymmetric else 'mirror-averaged'} response, ridge {args.ridge}, "
        f"min response {args.min_response}{', own strengths kept' if args.keep_scale else ''}"
        f"{'' if args.all else '; only ' + ' '.join(args.only)}")
    out = args.out or args.basis
    np.savez_compressed(out, **stored)
    print(f"wrote the mixing into {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
