"""Face identity descriptors (dlib's ResNet, aligned by MediaPipe landmarks) on real faces."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from vcam_me.capture import VideoFileSource, read_image_rgb
from vcam_me.config import TrackingOptions
from vcam_me.models import verified_model_path
from vcam_me.tracking import FaceTracker
from vcam_me.tracking.identity import (
    SAME_PERSON_DISTANCE,
    FaceDescriber,
    descriptor_distance,
    five_points,
)

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "assets" / "avatars" / "sample"
CLIP = REPO / "assets" / "driving" / "pyfeat_WolfgangLanger_Pexels.mp4"


@pytest.fixture(scope="module")
def describer() -> FaceDescriber:
    return FaceDescriber.create(verified_model_path("face_recognition"))


@pytest.fixture(scope="module")
def tracker():
    with FaceTracker.create(verified_model_path("face_landmarker"), TrackingOptions(), mode="image", num_faces=1) as t:
        yield t


def _describe_image(describer, tracker, rgb: np.ndarray) -> np.ndarray:
    faces = tracker.detect_image(rgb)
    assert len(faces) == 1
    return describer.describe(rgb, faces[0].landmarks)


def _frames(path: Path, count: int) -> list[np.ndarray]:
    with VideoFileSource.open(path, pace="fast") as source:
        frames = [f.image for f in source]
    picks = np.linspace(0, len(frames) - 1, count + 2)[1:-1].astype(int)
    return [frames[i] for i in picks]


def test_five_points_follow_dlibs_order_on_an_upright_face():
    landmarks = np.load(SAMPLE / "landmarks.npy")
    points = five_points(landmarks, (761, 764))
    # 0/1: outer/inner corner of the eye on the image's right; 2/3: the other eye; 4: nose base
    assert points[0, 0] > points[1, 0] > points[3, 0] > points[2, 0]
    assert points[4, 1] > points[:4, 1].max()
    with pytest.raises(ValueError):
        five_points(landmarks[:10], (761, 764))


def test_same_image_rescaled_is_the_same_person_and_the_bundled_clip_is_not(describer, tracker):
    reference = read_image_rgb(SAMPLE / "reference.png")
    avatar = describer.describe(reference, np.load(SAMPLE / "landmarks.npy"))
    assert avatar.shape == (128,) and avatar.dtype == np.float32
    smaller = cv2.resize(reference, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
    assert descriptor_distance(avatar, _describe_image(describer, tracker, smaller)) < 0.2
    # the bundled driving clip shows another woman: clearly beyond the same-person radius
    others = [descriptor_distance(avatar, _describe_image(describer, tracker, f)) for f in _frames(CLIP, 3)]
    assert min(others) > SAME_PERSON_DISTANCE, others


def test_frames_of_one_clip_are_one_person(describer, tracker):
    a, b = (_describe_image(describer, tracker, f) for f in _frames(CLIP, 2))
    assert descriptor_distance(a, b) < SAME_PERSON_DISTANCE


def test_portrait_matches_a_video_of_the_same_man(describer, tracker, shared_file):
    # MANIFEST.md: avatars/liveportrait_drv_d19.jpg shows the man of driving/liveportrait_d18.mp4
    portrait = _describe_image(describer, tracker, read_image_rgb(shared_file("avatars/liveportrait_drv_d19.jpg")))
    same = [descriptor_distance(portrait, _describe_image(describer, tracker, f))
            for f in _frames(shared_file("driving/liveportrait_d18.mp4"), 3)]
    other = [descriptor_distance(portrait, _describe_image(describer, tracker, f))
             for f in _frames(shared_file("driving/liveportrait_d6.mp4"), 3)]
    assert np.median(same) < 0.45 < SAME_PERSON_DISTANCE < np.median(other), (same, other)


def test_describe_refuses_a_wrong_image_type(describer):
    landmarks = np.load(SAMPLE / "landmarks.npy")
    with pytest.raises(TypeError, match="uint8 RGB"):
        describer.describe(np.zeros((100, 100), np.uint8), landmarks)
    with pytest.raises(TypeError, match="uint8 RGB"):
        describer.describe(np.zeros((100, 100, 3), np.float32), landmarks)
