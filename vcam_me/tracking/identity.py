"""Who is this face? A 128-number identity descriptor per face, and the distance between two.

The descriptor is dlib's ResNet face-recognition network (``dlib_face_recognition_resnet_model_v1``,
public domain, see ``models/manifest.toml``). It was trained so that two photos of one
person lie closer than 0.6 apart (Euclidean) and two people further apart.

dlib normally finds the face with its own detector and aligns it with a landmark model.
We already track the face with MediaPipe, so the alignment points come from MediaPipe's 478
landmarks instead: the five points of dlib's 5-point scheme (the outer and inner corner of
each eye, and the point just under the nose). dlib's 68-point landmark model is deliberately
not used: it was trained on data that does not allow commercial use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vcam_me.errors import ModelError, TrackingError

#: MediaPipe landmark indices in dlib's 5-point order. dlib's scheme counts in image
#: coordinates of an upright face: 0/1 outer/inner corner of the eye on the image's right
#: (the subject's left eye), 2/3 outer/inner corner of the other eye, 4 under the nose at the
#: top of the philtrum.
DLIB_FIVE_POINTS = (263, 362, 33, 133, 2)
DESCRIPTOR_SIZE = 128
#: dlib's own decision threshold: the network was trained to keep one person within 0.6.
SAME_PERSON_DISTANCE = 0.6


def _dlib():
    try:
        import dlib
    except ImportError as err:  # pragma: no cover - dlib-bin is a dependency
        raise ModelError(f"the face-recognition engine is missing ({err}); reinstall: pip install dlib-bin") from None
    return dlib


def five_points(landmarks: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """``(5, 2) float64`` pixel positions of dlib's alignment points, from ``(478, 3)``
    MediaPipe-normalised ``landmarks`` of an image of ``image_size`` = (width, height)."""
    points = np.asarray(landmarks, np.float64)
    if points.ndim != 2 or points.shape[0] <= max(DLIB_FIVE_POINTS) or points.shape[1] < 2:
        raise ValueError(f"landmarks must be (478, 2 or 3), got {points.shape}")
    width, height = image_size
    return points[list(DLIB_FIVE_POINTS), :2] * (width, height)


@dataclass(frozen=True)
class FaceDescriber:
    """Computes identity descriptors. Build with :meth:`create`; the constructor takes the
    loaded dlib network (or any object with dlib's ``compute_face_descriptor``)."""

    network: object

    @classmethod
    def create(cls, model_path: str | Path) -> FaceDescriber:
        """Load the network from ``model_path`` (a hash-checked file from :mod:`vcam_me.models`)."""
        dlib = _dlib()
        try:
            return cls(dlib.face_recognition_model_v1(str(model_path)))
        except RuntimeError as err:
            raise ModelError(f"face-recognition model {model_path} cannot be loaded: {err}") from None

    def describe(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """``(128,) float32`` identity descriptor of the face at ``landmarks`` in ``image``.

        Args:
            image: ``(H, W, 3) uint8 RGB``.
            landmarks: ``(478, 3)`` MediaPipe-normalised landmarks of one face in ``image``.
        """
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise TypeError(f"image must be (H, W, 3) uint8 RGB, got {getattr(image, 'shape', None)} "
                            f"{getattr(image, 'dtype', type(image).__name__)}")
        dlib = _dlib()
        height, width = image.shape[:2]
        points = five_points(landmarks, (width, height))
        x0, y0 = np.floor(points.min(axis=0)).astype(int)
        x1, y1 = np.ceil(points.max(axis=0)).astype(int)
        box = dlib.rectangle(int(x0), int(y0), int(x1), int(y1))  # not used by the 5-point alignment
        shape = dlib.full_object_detection(box, [dlib.point(int(x), int(y)) for x, y in np.rint(points)])
        try:
            values = self.network.compute_face_descriptor(np.ascontiguousarray(image), shape)
        except RuntimeError as err:
            raise TrackingError(f"face descriptor failed: {err}") from None
        descriptor = np.asarray(values, np.float32)
        if descriptor.shape != (DESCRIPTOR_SIZE,):
            raise TrackingError(f"face descriptor has shape {descriptor.shape}, expected ({DESCRIPTOR_SIZE},)")
        return descriptor


def descriptor_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two descriptors (below :data:`SAME_PERSON_DISTANCE`: same person)."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))
