"""Which face drives the avatar when the camera sees more than one: the one chosen at start.

The tracker asks MediaPipe for up to ``[tracking] follow_one_of`` faces per frame and hands
them to a :class:`FaceSelector`, which returns the one face to follow (or an empty
observation). The rule:

1. **Choosing.** With no face chosen yet, the selector takes the largest face; faces within
   :data:`SIMILAR_SIZE` of the largest one's size compete on how central they are.
2. **Following.** Each later frame, the chosen face is the candidate nearest to where the
   chosen face was last seen, provided it lies within ``follow_gate`` face sizes of that
   place and its size is within a factor :data:`MAX_SIZE_CHANGE` of the last size. A face
   that appears where the chosen one was (it turned back, the hand moved away) is therefore
   picked up again at once.
3. **Never jumping.** When no candidate passes that gate, the answer is "no face", even if
   another face is in view: the avatar idles rather than taking another person's face.
4. **Choosing again.** Once the chosen face has been out of sight for longer than
   ``reacquire_after_ms``, the choice is forgotten and rule 1 applies to the faces in view.

Face size is the square root of the area of the landmarks' bounding box in pixels, and
positions are the landmarks' centroid in pixels, so the rule does not depend on the frame's
aspect ratio. The selector keeps state between frames: one selector per video stream.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vcam_me.types import FaceObservation

#: Faces within this ratio of the largest face's size count as "as large" when choosing.
SIMILAR_SIZE = 0.8
#: Between two sightings a followed face may grow or shrink by at most this factor.
MAX_SIZE_CHANGE = 1.5


@dataclass(frozen=True, slots=True)
class FacePlace:
    """Where a face is in the frame: ``centre`` (x, y) and ``size``, both in pixels."""

    centre: tuple[float, float]
    size: float

    @classmethod
    def of(cls, face: FaceObservation) -> FacePlace:
        """The place of a non-empty observation."""
        if face.landmarks is None:
            raise ValueError("an empty observation has no place")
        width, height = face.image_size
        xy = np.asarray(face.landmarks, np.float64)[:, :2] * (width, height)
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        extent = np.maximum(hi - lo, 1.0)
        centre = xy.mean(axis=0)
        return cls((float(centre[0]), float(centre[1])), float(math.sqrt(extent[0] * extent[1])))

    def distance(self, other: FacePlace) -> float:
        return math.hypot(self.centre[0] - other.centre[0], self.centre[1] - other.centre[1])


def share_in_frame(face: FaceObservation) -> float:
    """Share of a face's landmarks that lie inside the frame (0 … 1; 0 for no face).

    MediaPipe keeps tracking a face that slides out of the picture, extrapolating the part it
    cannot see; with less than about 80 % of it in view, its head pose swings by degrees
    from one frame to the next (measured on the bundled clip slid out to the side), so a
    face that far out is better treated as lost.
    """
    if face.landmarks is None:
        return 0.0
    xy = np.asarray(face.landmarks)[:, :2]
    return float(np.mean(np.all((xy >= 0.0) & (xy <= 1.0), axis=1)))


def _rescaled(place: FacePlace, old: tuple[int, int], new: tuple[int, int]) -> FacePlace:
    """Where a face seen at picture size ``old`` is at size ``new``: a camera that changes its
    resolution mid-stream keeps its field of view, so the face keeps its place in the picture."""
    sx, sy = new[0] / max(old[0], 1), new[1] / max(old[1], 1)
    return FacePlace((place.centre[0] * sx, place.centre[1] * sy), place.size * math.sqrt(sx * sy))


def choose_first(faces: Sequence[FaceObservation]) -> int | None:
    """Index of the face to follow from a standing start (rule 1), ``None`` when there is none."""
    places = [FacePlace.of(f) for f in faces if f.has_face]
    indices = [i for i, f in enumerate(faces) if f.has_face]
    if not places:
        return None
    largest = max(p.size for p in places)
    contenders = [(i, p) for i, p in zip(indices, places) if p.size >= SIMILAR_SIZE * largest]
    width, height = faces[indices[0]].image_size
    middle = FacePlace((width / 2.0, height / 2.0), 1.0)
    return min(contenders, key=lambda ip: ip[1].distance(middle))[0]


class FaceSelector:
    """Follows the face chosen at start (module docstring).

    Args:
        follow_gate: how far (in face sizes) from where the chosen face was last seen a face
            may be and still be taken for it.
        reacquire_after_ms: how long the chosen face may be out of sight before a new one is
            chosen.
    """

    def __init__(self, follow_gate: float = 1.0, reacquire_after_ms: int = 2000) -> None:
        if follow_gate <= 0:
            raise ValueError(f"follow_gate must be > 0, got {follow_gate}")
        if reacquire_after_ms < 0:
            raise ValueError(f"reacquire_after_ms must be ≥ 0, got {reacquire_after_ms}")
        self.follow_gate = float(follow_gate)
        self.reacquire_after_ms = int(reacquire_after_ms)
        self._place: FacePlace | None = None
        self._seen_ms: int | None = None
        self._frame: tuple[int, int] | None = None  # the picture size the place was measured in

    @property
    def place(self) -> FacePlace | None:
        """Where the chosen face was last seen (``None`` while none is chosen)."""
        return self._place

    def reset(self) -> None:
        """Forget the chosen face: the next face in view is chosen afresh."""
        self._place = None
        self._seen_ms = None

    def select(self, faces: Sequence[FaceObservation], timestamp_ms: int,
               image_size: tuple[int, int]) -> FaceObservation:
        """The chosen face among ``faces`` (one frame's observations), or an empty observation."""
        if self._place is not None and self._seen_ms is not None \
                and timestamp_ms - self._seen_ms > self.reacquire_after_ms:
            self.reset()
        if self._place is not None and self._frame is not None and tuple(image_size) != self._frame:
            self._place = _rescaled(self._place, self._frame, image_size)  # the camera changed resolution
        if self._place is None:
            index = choose_first(faces)
        else:
            index = self._follow(faces)
        if index is None:
            return FaceObservation.empty(timestamp_ms, image_size)
        face = faces[index]
        self._place = FacePlace.of(face)
        self._seen_ms = timestamp_ms
        self._frame = tuple(face.image_size)
        return face

    def _follow(self, faces: Sequence[FaceObservation]) -> int | None:
        last = self._place
        assert last is not None
        best, best_distance = None, math.inf
        for i, face in enumerate(faces):
            if not face.has_face:
                continue
            place = FacePlace.of(face)
            ratio = place.size / last.size
            if not (1.0 / MAX_SIZE_CHANGE <= ratio <= MAX_SIZE_CHANGE):
                continue
            distance = place.distance(last)
            if distance <= self.follow_gate * last.size and distance < best_distance:
                best, best_distance = i, distance
        return best
