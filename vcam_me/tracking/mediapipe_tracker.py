"""MediaPipe Face Landmarker behind a small, explicit interface.

Two running modes, never guessed from context:
  * ``video``: synchronous, one result per frame (tests, offline render, file replay);
  * ``live_stream``: asynchronous; MediaPipe drops frames it cannot keep up with and the
    newest result is delivered to a callback on MediaPipe's own thread.
  * ``image`` (for :meth:`FaceTracker.detect_image`): one still image, several faces allowed.

"No face" is an empty :class:`~vcam_me.types.FaceObservation`, not an error.

In ``video`` and ``live_stream`` mode MediaPipe looks for up to ``[tracking] follow_one_of``
faces and a :class:`~vcam_me.tracking.selector.FaceSelector` picks the one to follow: the
face chosen at start, never another person's face that happens to be in view.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import threading
import weakref
from pathlib import Path
from typing import Callable, Literal

import numpy as np

from vcam_me.config import TrackingOptions
from vcam_me.errors import TrackingError
from vcam_me.tracking.selector import FaceSelector, share_in_frame
from vcam_me.types import FaceObservation, Frame

log = logging.getLogger(__name__)

Mode = Literal["video", "live_stream", "image"]

# MediaPipe's own finaliser crashes when it runs during interpreter shutdown, so every
# tracker still open at exit is closed while the interpreter is whole.
_open_trackers: "weakref.WeakSet[FaceTracker]" = weakref.WeakSet()


def _close_open_trackers() -> None:
    for tracker in list(_open_trackers):
        tracker.close()


_exit_hook_registered = False


def _register_exit_hook() -> None:
    """Close leftover trackers before MediaPipe's worker pool shuts down.

    MediaPipe dispatches ``close`` through a ``concurrent.futures`` executor, and that module
    stops its executors in a *threading* exit hook, which runs before ordinary ``atexit``
    functions. Registered after MediaPipe is imported, our hook runs before its (they run in
    reverse order); ``atexit`` is the fallback where that hook does not exist.
    """
    global _exit_hook_registered
    if _exit_hook_registered:
        return
    _exit_hook_registered = True
    register = getattr(threading, "_register_atexit", None)
    try:
        if register is None:
            raise AttributeError
        register(_close_open_trackers)
    except (AttributeError, RuntimeError):
        atexit.register(_close_open_trackers)


@contextlib.contextmanager
def _native_stderr_silenced():
    """Hide what MediaPipe's C++ core prints to stderr while it builds its graph.

    It logs a handful of informational "W0000"/"INFO" lines at every start, which would bury
    our one-line messages. Skipped when debug logging is on, so nothing is hidden from a
    developer who asks.
    """
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (embedded, pythonw): nothing to hide
        yield
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _import_mediapipe():
    # Imported lazily: mediapipe takes ~1 s to import and only the tracker needs it.
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions, vision

    return mp, BaseOptions, vision


def observations_from_result(result, timestamp_ms: int, image_size: tuple[int, int]) -> list[FaceObservation]:
    """Convert a MediaPipe ``FaceLandmarkerResult`` into one observation per face."""
    faces = []
    for i, marks in enumerate(result.face_landmarks or []):
        landmarks = np.array([(p.x, p.y, p.z) for p in marks], dtype=np.float32)
        blend = None
        if result.face_blendshapes and i < len(result.face_blendshapes):
            blend = np.array([c.score for c in result.face_blendshapes[i]], dtype=np.float32)
        transform = None
        if result.facial_transformation_matrixes and i < len(result.facial_transformation_matrixes):
            transform = np.asarray(result.facial_transformation_matrixes[i], dtype=np.float32).reshape(4, 4)
        faces.append(FaceObservation(timestamp_ms, image_size, landmarks, blend, transform))
    return faces


class FaceTracker:
    """Wraps one MediaPipe ``FaceLandmarker``. Build it with :meth:`create`.

    Use as a context manager, or call :meth:`close` (idempotent) when done.
    """

    def __init__(self, landmarker, mode: Mode, mp_module, selector: FaceSelector | None = None,
                 min_in_frame: float = 0.0) -> None:
        """``selector`` picks the face to follow among the faces of a frame (``None``: the
        first face MediaPipe reports); a face with less than ``min_in_frame`` of its
        landmarks inside the frame counts as not seen (``video`` and ``live_stream`` mode)."""
        self._landmarker = landmarker
        self._mp = mp_module
        self.mode = mode
        self.selector = selector
        self.min_in_frame = float(min_in_frame)
        self._last_ts = -1
        self._closed = False
        self._listener: Callable[[FaceObservation], None] | None = None
        self._sizes: dict[int, tuple[int, int]] = {}
        self._lock = threading.Lock()

    # -- factory ---------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        model_path: Path,
        options: TrackingOptions | None = None,
        *,
        mode: Mode | None = None,
        num_faces: int | None = None,
        on_result: Callable[[FaceObservation], None] | None = None,
    ) -> "FaceTracker":
        """Load the model at ``model_path`` (already hash-checked by the caller).

        ``on_result`` is required in ``live_stream`` mode; it is called on MediaPipe's
        thread with the newest observation (possibly empty). ``num_faces``: how many faces
        MediaPipe looks for (default 1 in ``image`` mode, else ``options.follow_one_of``); in
        ``video`` and ``live_stream`` mode a :class:`FaceSelector` follows one of them.
        """
        options = options or TrackingOptions()
        mode = mode or options.mode
        if num_faces is None:  # a still is measured face by face; a stream follows one of several
            num_faces = 1 if mode == "image" else options.follow_one_of
        num_faces = int(num_faces)
        if num_faces < 1:
            raise ValueError(f"num_faces must be ≥ 1, got {num_faces}")
        mp, BaseOptions, vision = _import_mediapipe()
        running = {
            "video": vision.RunningMode.VIDEO,
            "live_stream": vision.RunningMode.LIVE_STREAM,
            "image": vision.RunningMode.IMAGE,
        }[mode]
        if mode == "live_stream" and on_result is None:
            raise ValueError("live_stream mode needs on_result")
        holder: dict[str, FaceTracker] = {}

        def _callback(result, image, timestamp_ms):  # runs on MediaPipe's thread
            tracker = holder.get("t")
            if tracker is None or tracker._listener is None:
                return
            try:
                size = tracker._sizes.pop(timestamp_ms, (image.width, image.height))
                faces = observations_from_result(result, timestamp_ms, size)
                tracker._listener(tracker._choose(faces, timestamp_ms, size))
            except Exception:  # a callback error must not kill MediaPipe's thread
                log.exception("face tracker result handler failed")

        kwargs = dict(
            base_options=BaseOptions(model_asset_path=str(model_path)),
            running_mode=running,
            num_faces=num_faces,
            min_face_detection_confidence=options.min_face_detection_confidence,
            min_face_presence_confidence=options.min_face_presence_confidence,
            min_tracking_confidence=options.min_tracking_confidence,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        if mode == "live_stream":
            kwargs["result_callback"] = _callback
        try:
            with _native_stderr_silenced():
                landmarker = vision.FaceLandmarker.create_from_options(vision.FaceLandmarkerOptions(**kwargs))
        except Exception as err:  # MediaPipe raises RuntimeError/ValueError with long texts
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise TrackingError(f"cannot load face model {model_path}: {first}") from None
        selector = None if mode == "image" else FaceSelector(options.follow_gate, options.reacquire_after_ms)
        tracker = cls(landmarker, mode, mp, selector, 0.0 if mode == "image" else options.min_face_in_frame)
        tracker._listener = on_result
        holder["t"] = tracker
        _open_trackers.add(tracker)
        _register_exit_hook()
        return tracker

    # -- use -------------------------------------------------------------------------------
    def _image(self, rgb: np.ndarray):
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise TypeError(f"expected (H, W, 3) uint8 RGB, got {rgb.shape} {rgb.dtype}")
        return self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))

    def _check_ts(self, timestamp_ms: int) -> bool:
        if timestamp_ms <= self._last_ts:
            log.debug("dropping non-monotonic frame %d <= %d", timestamp_ms, self._last_ts)
            return False
        self._last_ts = timestamp_ms
        return True

    def _choose(self, faces: list[FaceObservation], timestamp_ms: int, size: tuple[int, int]) -> FaceObservation:
        if self.min_in_frame > 0.0:
            faces = [f for f in faces if share_in_frame(f) >= self.min_in_frame]
        if self.selector is not None:
            return self.selector.select(faces, timestamp_ms, size)
        return faces[0] if faces else FaceObservation.empty(timestamp_ms, size)

    def track(self, frame: Frame) -> FaceObservation:
        """``video`` mode: the observation of the followed face in ``frame`` (empty when
        that face is not in view, see :mod:`vcam_me.tracking.selector`).

        A frame whose timestamp does not increase is answered with an empty observation
        (MediaPipe would reject it).
        """
        if self.mode != "video":
            raise RuntimeError(f"track() needs video mode, tracker is in {self.mode} mode")
        self._ensure_open()
        size = frame.size
        if not self._check_ts(frame.timestamp_ms):
            return FaceObservation.empty(frame.timestamp_ms, size)
        return self._choose(self._detect_video(frame), frame.timestamp_ms, size)

    def track_all_faces(self, frame: Frame) -> list[FaceObservation]:
        """``video`` mode: every face MediaPipe tracks in ``frame`` (``num_faces`` at most), in
        MediaPipe's order, with no selection; empty for a non-increasing timestamp."""
        if self.mode != "video":
            raise RuntimeError(f"track_all_faces() needs video mode, tracker is in {self.mode} mode")
        self._ensure_open()
        if not self._check_ts(frame.timestamp_ms):
            return []
        return self._detect_video(frame)

    def _detect_video(self, frame: Frame) -> list[FaceObservation]:
        result = self._landmarker.detect_for_video(self._image(frame.image), int(frame.timestamp_ms))
        return observations_from_result(result, frame.timestamp_ms, frame.size)

    def submit(self, frame: Frame) -> bool:
        """``live_stream`` mode: hand ``frame`` over; the result arrives at ``on_result``.

        Returns False when the frame was dropped for a non-increasing timestamp.
        """
        if self.mode != "live_stream":
            raise RuntimeError(f"submit() needs live_stream mode, tracker is in {self.mode} mode")
        self._ensure_open()
        if not self._check_ts(frame.timestamp_ms):
            return False
        self._sizes[frame.timestamp_ms] = frame.size
        if len(self._sizes) > 64:  # results MediaPipe dropped never pop their size
            for key in sorted(self._sizes)[:-32]:
                self._sizes.pop(key, None)
        self._landmarker.detect_async(self._image(frame.image), int(frame.timestamp_ms))
        return True

    def detect_image(self, rgb: np.ndarray) -> list[FaceObservation]:
        """``image`` mode: every face found in a still image (``num_faces`` at most)."""
        if self.mode != "image":
            raise RuntimeError(f"detect_image() needs image mode, tracker is in {self.mode} mode")
        self._ensure_open()
        result = self._landmarker.detect(self._image(rgb))
        return observations_from_result(result, 0, (int(rgb.shape[1]), int(rgb.shape[0])))

    def track_still(self, frame: Frame) -> FaceObservation:
        """``image`` mode: the first face in ``frame`` on its own, with no temporal filter (what
        a measurement of rendered frames wants), stamped with the frame's time."""
        faces = self.detect_image(frame.image)
        if not faces:
            return FaceObservation.empty(frame.timestamp_ms, frame.size)
        face = faces[0]
        return FaceObservation(frame.timestamp_ms, face.image_size, face.landmarks, face.blendshapes, face.transform)

    # -- lifetime --------------------------------------------------------------------------
    def _ensure_open(self) -> None:
        if self._closed:
            raise RuntimeError("face tracker is closed")

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._listener = None
        landmarker, self._landmarker = self._landmarker, None
        try:
            landmarker.close()
        except Exception:  # closing twice or at interpreter exit: nothing useful to report
            log.debug("closing face landmarker failed", exc_info=True)
        # Drop the last reference now, while the interpreter is whole: MediaPipe's own
        # finaliser closes again and crashes if it only runs during shutdown.
        del landmarker

    def __enter__(self) -> "FaceTracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # MediaPipe's own __del__ crashes at interpreter exit if left open
        try:
            self.close()
        except Exception:
            pass
