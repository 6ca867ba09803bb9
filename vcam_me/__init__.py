"""vcam_me: a consenting person's avatar instead of the raw webcam, in any video call.

The public surface is small: the data types that flow between stages and the error
hierarchy. Stages are built and wired by :mod:`vcam_me.app` (the ``vcam-me`` command).
"""

from vcam_me.errors import (
    AvatarError,
    CaptureError,
    ConfigError,
    ConsentError,
    ModelError,
    OutputError,
    TrackingError,
    VcamError,
)
from vcam_me.types import AU_CHANNELS, BLENDSHAPE_NAMES, ExpressionState, FaceObservation, Frame, RenderedFrame

__version__ = "0.1.0"

__all__ = [
    "AU_CHANNELS", "AvatarError", "BLENDSHAPE_NAMES", "CaptureError", "ConfigError", "ConsentError",
    "ExpressionState", "FaceObservation", "Frame", "ModelError", "OutputError", "RenderedFrame",
    "TrackingError", "VcamError", "__version__",
]
