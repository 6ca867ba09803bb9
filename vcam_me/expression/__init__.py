"""Stage ③: blendshapes → calibrated, smoothed FACS action units on the render clock."""

from vcam_me.expression.action_units import (
    Crosswalk,
    au_to_blendshapes,
    blendshapes_to_au,
    default_crosswalk,
    gaze_from_blendshapes,
)
from vcam_me.expression.calibration import Calibration, NeutralBaseline
from vcam_me.expression.mapper import ExpressionMapper
from vcam_me.expression.one_euro import OneEuroFilter

__all__ = [
    "Calibration", "Crosswalk", "ExpressionMapper", "NeutralBaseline", "OneEuroFilter",
    "au_to_blendshapes", "blendshapes_to_au", "default_crosswalk", "gaze_from_blendshapes",
]
