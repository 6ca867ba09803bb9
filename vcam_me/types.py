"""The data that flows between stages, and nothing else.

Stage packages (capture, tracking, expression, avatar, consent, output) exchange only
these types; they never import each other. Every object carries ``timestamp_ms`` on the
one monotonic clock of :mod:`vcam_me.clock`.

Conventions:
  * images are ``(H, W, 3) uint8 RGB``;
  * landmarks are MediaPipe-normalised: x, y in [0, 1] of the image width/height,
    z in the same scale as x (relative depth);
  * AU intensities are ``float32`` in [0, 1];
  * "left" and "right" are the *subject's* left and right (MediaPipe's convention).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

#: The 52 MediaPipe Face Landmarker blendshapes, in the model's output order.
BLENDSHAPE_NAMES: tuple[str, ...] = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft",
    "browOuterUpRight", "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft",
    "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight",
    "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight", "eyeSquintLeft",
    "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft",
    "jawOpen", "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight",
    "mouthFrownLeft", "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft",
    "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft",
    "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft",
    "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
)
BLENDSHAPE_INDEX: Mapping[str, int] = {name: i for i, name in enumerate(BLENDSHAPE_NAMES)}

#: FACS action-unit channels of an :class:`ExpressionState`, sided where the face has sides.
#: ``_L``/``_R`` are the subject's left/right. The blendshape → channel crosswalk that fills
#: them is data (``config/au_crosswalk.toml``). The last channels are *derived* (AU25 lips
#: part, AU27 mouth stretch): computed from the others, never driven independently.
AU_CHANNELS: tuple[str, ...] = (
    "AU1", "AU2_L", "AU2_R", "AU4_L", "AU4_R", "AU5_L", "AU5_R", "AU6_L", "AU6_R",
    "AU7_L", "AU7_R", "AU8", "AU9_L", "AU9_R", "AU10_L", "AU10_R", "AU12_L", "AU12_R",
    "AU14_L", "AU14_R", "AU15_L", "AU15_R", "AU16_L", "AU16_R", "AU17_lower", "AU17_upper",
    "AU18", "AU20_L", "AU20_R", "AU22", "AU24_L", "AU24_R", "AU26", "AU28_lower",
    "AU28_upper", "AU29", "AU30_L", "AU30_R", "AU43_L", "AU43_R", "AD34", "MOUTH_L", "MOUTH_R",
    "AU25", "AU27",
)
AU_INDEX: Mapping[str, int] = {name: i for i, name in enumerate(AU_CHANNELS)}
#: Channels computed from the others; a renderer should ignore them as drivers.
DERIVED_AU_CHANNELS: tuple[str, ...] = ("AU25", "AU27")
#: Channels a renderer is driven by (everything that is not derived).
DRIVING_AU_CHANNELS: tuple[str, ...] = tuple(c for c in AU_CHANNELS if c not in DERIVED_AU_CHANNELS)

NUM_LANDMARKS = 478


@dataclass(frozen=True, slots=True)
class Frame:
    """One captured image.

    Attributes:
        image: ``(H, W, 3) uint8 RGB``.
        timestamp_ms: capture time on the monotonic clock (ms).
        index: running frame number from the source (0-based), for logs and tests.
    """

    image: np.ndarray
    timestamp_ms: int
    index: int = 0

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels."""
        return int(self.image.shape[1]), int(self.image.shape[0])


@dataclass(frozen=True, slots=True)
class FaceObservation:
    """What the tracker saw in one frame. "No face" is a valid, empty observation.

    Attributes:
        timestamp_ms: the capture timestamp of the frame it came from.
        image_size: ``(width, height)`` of that frame in pixels.
        landmarks: ``(478, 3) float32`` normalised landmarks, or ``None`` when no face.
        blendshapes: ``(52,) float32`` scores in :data:`BLENDSHAPE_NAMES` order, or ``None``.
        transform: ``(4, 4) float32`` facial transformation matrix (canonical face →
            camera space, cm), or ``None``.
    """

    timestamp_ms: int
    image_size: tuple[int, int]
    landmarks: np.ndarray | None = None
    blendshapes: np.ndarray | None = None
    transform: np.ndarray | None = None

    @property
    def has_face(self) -> bool:
        return self.landmarks is not None

    @classmethod
    def empty(cls, timestamp_ms: int, image_size: tuple[int, int]) -> "FaceObservation":
        return cls(timestamp_ms=timestamp_ms, image_size=image_size)


@dataclass(frozen=True, slots=True)
class ExpressionState:
    """What the avatar should do at one instant of the render clock.

    Attributes:
        timestamp_ms: render time this state is for.
        source_timestamp_ms: capture timestamp of the newest camera frame that contributed
            (for latency measurement); ``None`` while nothing has been tracked yet.
        au: ``(len(AU_CHANNELS),) float32`` in [0, 1], the final intensities.
        gaze: ``(2, 2) float32`` in [-1, 1]; rows are the (left, right) eye, columns
            (horizontal, vertical); +horizontal is toward the subject's left, +vertical up.
        head_pose: ``(3,) float32`` yaw, pitch, roll in degrees relative to the user's
            calibrated neutral pose (+yaw: turning toward the subject's left; +pitch: up;
            +roll: head tilting toward the subject's left shoulder, MediaPipe's convention
            as read from its transformation matrix).
        face_present: whether the tracker currently sees the user's face.
        components: where ``au`` came from, each ``(len(AU_CHANNELS),) float32``:
            ``"tracked"`` (after calibration), ``"injected"`` (micro-expressions) and
            ``"idle"`` (the idle animator). ``au`` is their saturated combination.
        baseline: ``(len(AU_CHANNELS),) float32`` calibration baseline subtracted from the
            tracker's raw AU values, or ``None``.
    """

    timestamp_ms: int
    au: np.ndarray
    gaze: np.ndarray
    head_pose: np.ndarray
    source_timestamp_ms: int | None = None
    face_present: bool = False
    components: Mapping[str, np.ndarray] = field(default_factory=dict)
    baseline: np.ndarray | None = None

    @classmethod
    def neutral(cls, timestamp_ms: int) -> "ExpressionState":
        return cls(
            timestamp_ms=timestamp_ms,
            au=np.zeros(len(AU_CHANNELS), np.float32),
            gaze=np.zeros((2, 2), np.float32),
            head_pose=np.zeros(3, np.float32),
        )

    def intensity(self, channel: str) -> float:
        return float(self.au[AU_INDEX[channel]])


@dataclass(frozen=True, slots=True)
class RenderedFrame:
    """One output frame on its way to the sinks.

    Attributes:
        image: ``(H, W, 3) uint8 RGB``.
        timestamp_ms: the render-clock time it was made for.
        source_timestamp_ms: capture timestamp of the newest camera frame it reflects
            (``None`` when it reflects none, e.g. idle animation before any face).
    """

    image: np.ndarray
    timestamp_ms: int
    source_timestamp_ms: int | None = None
