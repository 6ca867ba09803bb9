"""Envelopes: how strongly an event shows at one instant of the render clock, from 0 to 1.

A micro-expression rises with a raised cosine from its start to its apex and falls with a
raised cosine from the apex to its end. The databases annotate a single apex frame, so there is
no plateau: the envelope touches 1 only at the apex instant, and the frames sampled on either
side of it are strictly lower (no frame of hold, within the "at most one frame" the design
allows). Both halves have zero slope at their ends, so the face starts and stops moving
smoothly instead of jerking.

Envelopes are pure functions of time; the engine samples them at each render instant, so a
150 ms onset covers the nine 60 fps frames that fall inside it, whatever the camera's rate.
They take scalars (the engine calls them once per running event per frame, where plain
``math`` is several times cheaper than NumPy on one value).
"""

from __future__ import annotations

import math


def raised_cosine_rise(u: float) -> float:
    """0 → 1 as ``u`` goes 0 → 1, with zero slope at both ends (clamped outside [0, 1])."""
    if u <= 0.0:
        return 0.0
    if u >= 1.0:
        return 1.0
    return 0.5 - 0.5 * math.cos(math.pi * u)


def micro_envelope(t_ms: float, start_ms: float, apex_ms: float, end_ms: float) -> float:
    """Unimodal envelope of one micro-expression at ``t_ms``.

    0 up to ``start_ms`` and from ``end_ms``; a raised-cosine rise to exactly 1 at ``apex_ms``;
    a raised-cosine fall to 0 at ``end_ms``.
    """
    if not start_ms < apex_ms < end_ms:
        raise ValueError(f"envelope needs start < apex < end, got {start_ms}, {apex_ms}, {end_ms}")
    if t_ms <= apex_ms:
        return raised_cosine_rise((t_ms - start_ms) / (apex_ms - start_ms))
    return 1.0 - raised_cosine_rise((t_ms - apex_ms) / (end_ms - apex_ms))


def held_envelope(t_ms: float, start_ms: float, rise_ms: float, release_ms: float | None, fall_ms: float) -> float:
    """Envelope of a held (macro) expression: a raised-cosine rise over ``rise_ms``, kept at 1
    while held, and from ``release_ms`` a raised-cosine fall over ``fall_ms`` from whatever level
    it had reached (let go mid-rise, it falls from there, without a jump)."""
    if release_ms is None or t_ms <= release_ms:
        return raised_cosine_rise((t_ms - start_ms) / rise_ms)
    at_release = raised_cosine_rise((release_ms - start_ms) / rise_ms)
    return at_release * (1.0 - raised_cosine_rise((t_ms - release_ms) / fall_ms))
