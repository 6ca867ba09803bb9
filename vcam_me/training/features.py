"""Blendshapes → the avatar's driving features (AU channels + gaze), for fitting and checks.

The runtime path gets these from the expression stage (:class:`~vcam_me.types.ExpressionState`);
offline scripts compute them straight from MediaPipe blendshape scores. The expression
stage's pure crosswalk (``vcam_me.expression.action_units``) is used when it is importable,
otherwise a private copy of the same one-to-one mapping below (kept so the fit can run on
its own).

Feature layout (``FEATURE_NAMES``): the :data:`~vcam_me.types.DRIVING_AU_CHANNELS` in order,
then gaze ``left_h, left_v, right_h, right_v`` (+h toward the subject's left, +v up).
"""

from __future__ import annotations

import numpy as np

from vcam_me.types import AU_CHANNELS, AU_INDEX, BLENDSHAPE_INDEX, DRIVING_AU_CHANNELS

FEATURE_NAMES: tuple[str, ...] = DRIVING_AU_CHANNELS + ("gaze_left_h", "gaze_left_v", "gaze_right_h", "gaze_right_v")
DRIVING_INDEX = np.array([AU_INDEX[c] for c in DRIVING_AU_CHANNELS])

_CHANNEL_TO_BLENDSHAPE = {
    "AU1": "browInnerUp", "AU2_L": "browOuterUpLeft", "AU2_R": "browOuterUpRight",
    "AU4_L": "browDownLeft", "AU4_R": "browDownRight", "AU5_L": "eyeWideLeft", "AU5_R": "eyeWideRight",
    "AU6_L": "cheekSquintLeft", "AU6_R": "cheekSquintRight", "AU7_L": "eyeSquintLeft",
    "AU7_R": "eyeSquintRight", "AU8": "mouthClose", "AU9_L": "noseSneerLeft", "AU9_R": "noseSneerRight",
    "AU10_L": "mouthUpperUpLeft", "AU10_R": "mouthUpperUpRight", "AU12_L": "mouthSmileLeft",
    "AU12_R": "mouthSmileRight", "AU14_L": "mouthDimpleLeft", "AU14_R": "mouthDimpleRight",
    "AU15_L": "mouthFrownLeft", "AU15_R": "mouthFrownRight", "AU16_L": "mouthLowerDownLeft",
    "AU16_R": "mouthLowerDownRight", "AU17_lower": "mouthShrugLower", "AU17_upper": "mouthShrugUpper",
    "AU18": "mouthPucker", "AU20_L": "mouthStretchLeft", "AU20_R": "mouthStretchRight",
    "AU22": "mouthFunnel", "AU24_L": "mouthPressLeft", "AU24_R": "mouthPressRight", "AU26": "jawOpen",
    "AU28_lower": "mouthRollLower", "AU28_upper": "mouthRollUpper", "AU29": "jawForward",
    "AU30_L": "jawLeft", "AU30_R": "jawRight", "AU43_L": "eyeBlinkLeft", "AU43_R": "eyeBlinkRight",
    "AD34": "cheekPuff", "MOUTH_L": "mouthLeft", "MOUTH_R": "mouthRight",
}
# gaze[eye][axis] = plus − minus; +horizontal toward the subject's left, +vertical up. The
# left eye looks toward the subject's left when it looks *out*, the right eye when it looks *in*.
_GAZE = (
    (("eyeLookOutLeft", "eyeLookInLeft"), ("eyeLookUpLeft", "eyeLookDownLeft")),
    (("eyeLookInRight", "eyeLookOutRight"), ("eyeLookUpRight", "eyeLookDownRight")),
)


def _private_au(b: np.ndarray) -> np.ndarray:
    out = np.zeros(b.shape[:-1] + (len(AU_CHANNELS),), np.float32)
    for ch, shape in _CHANNEL_TO_BLENDSHAPE.items():
        out[..., AU_INDEX[ch]] = b[..., BLENDSHAPE_INDEX[shape]]
    return np.clip(out, 0.0, 1.0)


def _private_gaze(b: np.ndarray) -> np.ndarray:
    out = np.zeros(b.shape[:-1] + (2, 2), np.float32)
    for e in range(2):
        for a in range(2):
            plus, minus = _GAZE[e][a]
            out[..., e, a] = b[..., BLENDSHAPE_INDEX[plus]] - b[..., BLENDSHAPE_INDEX[minus]]
    return np.clip(out, -1.0, 1.0)


def blendshapes_to_au_and_gaze(blendshapes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(..., 52)`` scores → AU ``(..., len(AU_CHANNELS))`` and gaze ``(..., 2, 2)``, float32."""
    b = np.asarray(blendshapes, np.float32)
    try:
        from vcam_me.expression.action_units import blendshapes_to_au, gaze_from_blendshapes
    except ImportError:
        return _private_au(b), _private_gaze(b)
    return blendshapes_to_au(b), gaze_from_blendshapes(b)


def features_from(au: np.ndarray, gaze: np.ndarray) -> np.ndarray:
    """AU ``(..., len(AU_CHANNELS))`` + gaze ``(..., 2, 2)`` → features ``(..., len(FEATURE_NAMES))``."""
    au = np.asarray(au, np.float32)
    g = np.asarray(gaze, np.float32).reshape(au.shape[:-1] + (4,))
    return np.concatenate([au[..., DRIVING_INDEX], g], axis=-1)


def mirror_features() -> np.ndarray:
    """``(n_features,)`` permutation and ``(n_features,)`` sign that mirror a face left↔right.

    Returned stacked as ``(2, n_features)``: row 0 index, row 1 sign.
    """
    names = list(FEATURE_NAMES)
    idx = np.arange(len(names))
    sign = np.ones(len(names), np.float32)
    swaps = {"_L": "_R", "_R": "_L", "AU30_L": "AU30_R", "MOUTH_L": "MOUTH_R"}
    for i, n in enumerate(names):
        if n.endswith("_L") or n.endswith("_R"):
            other = n[:-2] + swaps[n[-2:]]
            idx[i] = names.index(other)
    # gaze: swap eyes; horizontal changes sign (toward the subject's left ↔ right)
    gl_h, gl_v, gr_h, gr_v = (names.index(n) for n in FEATURE_NAMES[-4:])
    idx[gl_h], idx[gr_h], idx[gl_v], idx[gr_v] = gr_h, gl_h, gr_v, gl_v
    sign[[gl_h, gr_h]] = -1.0
    return np.stack([idx.astype(np.float32), sign])
