"""Measure an avatar's side balance (:mod:`vcam_me.avatar.side_balance`) by re-tracking its renders.

It needs both the avatar stage (to draw) and the tracker (to read), so it sits beside the
composition root, which calls it (:func:`vcam_me.app.with_side_balance`); the renderer only
reads the numbers it produces.

For each left/right pair of basis features, the still neutral avatar is drawn with only the
left feature, then only the right one, and each render is re-tracked in MediaPipe's IMAGE
mode (as ``vcam-me eval micro`` does); what a side reads is its own crosswalk channel minus
the neutral render's. A pair where neither side reads at ``probe`` (below ``min_reading``)
is left alone. For the others each side's read-back curve is measured on a few feature
values, and the gains are chosen (``g_L · g_R = 1``, so the pair keeps its overall
strength; bounded) so that the two curves, at the values micro-expressions use
(``targets``), are closest. One gain per side cannot make the curves equal everywhere (a
reading saturates, or even falls, earlier on one side), so the match is a least-squares one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from vcam_me.avatar import AUBasis, Avatar, AvatarRenderer
from vcam_me.avatar.side_balance import LATERAL_PAIRS, SideBalance
from vcam_me.config import AvatarOptions
from vcam_me.expression import blendshapes_to_au
from vcam_me.types import AU_INDEX, ExpressionState

#: Feature value at which a pair is first tried: the upper end of the micro-expressions' A–B
#: range, where a feature the tracker can see at all reads clear of its noise.
DEFAULT_PROBE = 0.3
#: Values each side's read-back curve is measured at (up to the probe times the largest gain).
DEFAULT_VALUES = (0.1, 0.2, 0.3, 0.45, 0.6)
#: Values the two sides are made to read alike at: micro-expressions' A–B range.
DEFAULT_TARGETS = (0.1, 0.2, 0.3)
#: Smallest read-back (crosswalk channel, above the neutral render's) taken as a reading.
DEFAULT_MIN_READING = 0.02
DEFAULT_BOUNDS = (0.5, 2.0)
#: Share of the unbalanced mismatch a balance must remove to be kept (else the pair stays at 1).
_MIN_GAIN = 0.2
#: The measurement is made on a frame of this size (the output's default).
MEASURE_SIZE = (1280, 720)

Reader = Callable[[np.ndarray], "np.ndarray | None"]


def tracker_reader(tracker) -> Reader:
    """An RGB frame → AU channels read by ``tracker`` (IMAGE mode), ``None`` without a face."""

    def read(rgb: np.ndarray) -> np.ndarray | None:
        faces = tracker.detect_image(rgb)
        if not faces or faces[0].blendshapes is None:
            return None
        return blendshapes_to_au(np.asarray(faces[0].blendshapes)[None])[0].astype(np.float64)

    return read


def read_curves(renderer: AvatarRenderer, read: Reader, values: tuple[float, ...], *, probe: float,
                min_reading: float) -> dict[str, dict[float, float]] | None:
    """Each lateral feature drawn alone at each of ``values``: what it reads on its own
    channel above the neutral render. Pairs where neither side reads at ``probe`` are
    measured at ``probe`` only. ``None`` when the neutral render shows no face."""
    neutral = ExpressionState.neutral(0)
    rest = read(renderer.render(neutral))
    if rest is None:
        return None

    def reading(name: str, value: float) -> float:
        au = neutral.au.copy()
        au[AU_INDEX[name]] = value
        got = read(renderer.render(ExpressionState(0, au, neutral.gaze, neutral.head_pose)))
        return float(got[AU_INDEX[name]] - rest[AU_INDEX[name]]) if got is not None else 0.0

    curves: dict[str, dict[float, float]] = {}
    for pair in LATERAL_PAIRS:
        for name in pair:
            curves[name] = {probe: reading(name, probe)}
        if max(curves[name][probe] for name in pair) < min_reading:
            continue
        for name in pair:
            curves[name].update({v: reading(name, v) for v in values if v != probe})
    return curves


def _interpolate(curve: dict[float, float], x: np.ndarray) -> np.ndarray:
    xs = np.array([0.0, *sorted(curve)])
    ys = np.array([0.0, *(curve[k] for k in sorted(curve))])
    return np.interp(x, xs, ys)


def balance_gains(curves: dict[str, dict[float, float]], *, probe: float = DEFAULT_PROBE,
                  targets: tuple[float, ...] = DEFAULT_TARGETS, bounds: tuple[float, float] = DEFAULT_BOUNDS,
                  min_reading: float = DEFAULT_MIN_READING) -> dict[str, float]:
    """Per-side gains from read-back ``curves`` (feature → {value: reading}). A pair gets
    gains only where one side reads at ``probe`` and balancing it does better than a
    ``_MIN_GAIN`` share of the unbalanced mismatch."""
    low, high = bounds
    limit = min(high, 1.0 / low)
    candidates = np.exp(np.linspace(-np.log(limit), np.log(limit), 81))
    t = np.asarray(targets, np.float64)
    gains: dict[str, float] = {}
    for left, right in LATERAL_PAIRS:
        c_left, c_right = curves.get(left, {}), curves.get(right, {})
        if max(c_left.get(probe, 0.0), c_right.get(probe, 0.0)) < min_reading or len(c_left) < 2:
            continue
        cost = np.array([np.sum((_interpolate(c_left, g * t) - _interpolate(c_right, t / g)) ** 2) for g in candidates])
        best = int(np.argmin(cost))
        unbalanced = cost[len(candidates) // 2]
        if cost[best] < (1.0 - _MIN_GAIN) * unbalanced:
            gains[left], gains[right] = round(float(candidates[best]), 4), round(float(1.0 / candidates[best]), 4)
    return gains


def measure_side_balance(avatar: Avatar, read: Reader, *, basis: AUBasis | None = None, basis_sha256: str = "",
                         options: AvatarOptions | None = None, probe: float = DEFAULT_PROBE,
                         values: tuple[float, ...] = DEFAULT_VALUES, targets: tuple[float, ...] = DEFAULT_TARGETS,
                         bounds: tuple[float, float] = DEFAULT_BOUNDS, min_reading: float = DEFAULT_MIN_READING,
                         made_by: str = "") -> SideBalance | None:
    """The side balance of ``avatar``, or ``None`` when its neutral render shows no face
    to the tracker (nothing can be measured; it is drawn unbalanced)."""
    basis = basis if basis is not None else AUBasis.load()
    renderer = AvatarRenderer.create(replace(avatar, side_balance=None), MEASURE_SIZE, options, basis=basis)
    curves = read_curves(renderer, read, values, probe=probe, min_reading=min_reading)
    if curves is None:
        return None
    gains = balance_gains(curves, probe=probe, targets=targets, bounds=bounds, min_reading=min_reading)
    readings = {name: round(curve[probe], 4) for name, curve in curves.items()}
    return SideBalance(gains, basis_sha256, probe, readings, made_by)
