"""Avatar creation, storage and loading: errors the user can cause, hashes, round trip."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from vcam_me.avatar import MIN_FACE_PX, Avatar, create_avatar, read_photo
from vcam_me.errors import AvatarError, VcamError
from vcam_me.types import FaceObservation

ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = ROOT / ".." / "shared" / "data"
SAMPLE = ROOT / "assets" / "avatars" / "sample"
needs_shared = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason="real media not present: ../shared/data beside the repository root"
)


@pytest.fixture(scope="module")
def tracker():
    from vcam_me.models import verified_model_path
    from vcam_me.tracking.mediapipe_tracker import FaceTracker

    with FaceTracker.create(verified_model_path("face_landmarker"), mode="image", num_faces=4) as t:
        yield t


@pytest.fixture(scope="module")
def sample() -> Avatar:
    return Avatar.load(SAMPLE)


def _fake_face(sample: Avatar, size: tuple[int, int], box_px: float) -> FaceObservation:
    """The sample's landmarks shrunk so that their box is ``box_px`` tall in an image of ``size``."""
    lm = sample.landmarks.astype(np.float64).copy()
    px = lm[:, :2] * sample.image_size
    centre = px.mean(0)
    scale = box_px / np.ptp(px[:, 1])
    px = (px - centre) * scale + np.array(size) / 2
    lm[:, :2] = px / size
    lm[:, 2] *= scale * sample.image_size[0] / size[0]
    return FaceObservation(0, size, lm.astype(np.float32), sample.blendshapes, sample.transform)


# -- read_photo ------------------------------------------------------------------------------
def test_read_photo_missing(tmp_path):
    with pytest.raises(AvatarError, match="not found"):
        read_photo(tmp_path / "nope.jpg")


def test_read_photo_corrupt(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" + bytes(200))
    with pytest.raises(AvatarError, match="not a readable image") as err:
        read_photo(bad)
    assert "\n" not in str(err.value)


def test_read_photo_truncated(tmp_path, sample):
    ok, data = cv2.imencode(".png", sample.image)
    cut = tmp_path / "cut.png"
    cut.write_bytes(data.tobytes()[:100])
    with pytest.raises(AvatarError):
        read_photo(cut)


def test_read_photo_empty(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(AvatarError, match="empty"):
        read_photo(empty)


def test_read_photo_rgb(tmp_path):
    img = np.zeros((20, 30, 3), np.uint8)
    img[..., 0] = 255  # red in RGB
    path = tmp_path / "red.png"
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    out = read_photo(path)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == [255, 0, 0]


# -- create_avatar errors --------------------------------------------------------------------
def test_no_face_in_gradient(tracker):
    gradient = np.zeros((480, 640, 3), np.uint8)
    gradient[...] = np.linspace(0, 255, 640, dtype=np.uint8)[None, :, None]
    faces = tracker.detect_image(gradient)
    with pytest.raises(AvatarError, match="no face found"):
        create_avatar(gradient, faces, None)


def test_no_face_from_empty_observation():
    img = np.zeros((100, 100, 3), np.uint8)
    with pytest.raises(AvatarError, match="no face"):
        create_avatar(img, [FaceObservation.empty(0, (100, 100))], None)


@needs_shared
def test_several_faces(tracker):
    photo = read_photo(SHARED_DATA / "expected" / "mediapipe_samples_ios" / "face_detector_testImg.jpeg")
    faces = tracker.detect_image(photo)
    with pytest.raises(AvatarError, match=r"^2 faces found"):
        create_avatar(photo, faces, None)


def test_face_too_small_says_size_and_minimum(sample):
    size = (800, 600)
    face = _fake_face(sample, size, 60)
    with pytest.raises(AvatarError, match=rf"face too small: \d+x60 px, need at least {MIN_FACE_PX} px"):
        create_avatar(np.zeros((600, 800, 3), np.uint8), [face], None)


def test_avatar_error_is_vcam_error():
    assert issubclass(AvatarError, VcamError)


def test_wrong_photo_type(sample):
    with pytest.raises(TypeError):
        create_avatar(sample.image.astype(np.float32), [], None)


# -- storage ---------------------------------------------------------------------------------
def _make(sample: Avatar, out: Path | None, **kw) -> Avatar:
    face = FaceObservation(0, sample.image_size, sample.landmarks, sample.blendshapes, sample.transform)
    return create_avatar(sample.image, [face], out, **kw)


def test_round_trip(tmp_path, sample):
    made = _make(sample, tmp_path / "av", source_name="unit test")
    loaded = Avatar.load(tmp_path / "av")
    assert np.array_equal(loaded.image, sample.image)
    assert np.array_equal(loaded.landmarks, sample.landmarks)
    assert np.array_equal(loaded.transform, sample.transform)
    assert loaded.files == made.files and set(loaded.files) >= {"reference.png", "landmarks.npy", "transform.npy"}
    assert loaded.content_id == made.content_id
    meta = json.loads((tmp_path / "av" / "avatar.json").read_text())
    assert meta["source"] == "unit test"
    assert all(len(h) == 64 for h in meta["files"].values())


def test_tamper_detected(tmp_path, sample):
    _make(sample, tmp_path / "av")
    target = tmp_path / "av" / "landmarks.npy"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(AvatarError, match="landmarks.npy"):
        Avatar.load(tmp_path / "av")


def test_missing_file_detected(tmp_path, sample):
    _make(sample, tmp_path / "av")
    (tmp_path / "av" / "reference.png").unlink()
    with pytest.raises(AvatarError, match="reference.png"):
        Avatar.load(tmp_path / "av")


def test_not_an_avatar_folder(tmp_path):
    with pytest.raises(AvatarError, match="no avatar.json"):
        Avatar.load(tmp_path)
    with pytest.raises(AvatarError, match="not found"):
        Avatar.load(tmp_path / "missing")


def test_refuses_non_empty_folder(tmp_path, sample):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "something.txt").write_text("mine")
    with pytest.raises(AvatarError, match=str(out).replace("\\", "\\\\")):
        _make(sample, out)
    assert (out / "something.txt").read_text() == "mine"
    _make(sample, out, overwrite=True)
    Avatar.load(out)


def test_empty_folder_is_fine(tmp_path, sample):
    (tmp_path / "empty").mkdir()
    _make(sample, tmp_path / "empty")
    Avatar.load(tmp_path / "empty")


def test_large_photo_is_downscaled(sample):
    big = cv2.resize(sample.image, None, fx=2.0, fy=2.0)
    face = FaceObservation(0, (big.shape[1], big.shape[0]), sample.landmarks, sample.blendshapes, sample.transform)
    av = create_avatar(big, [face], None)
    box_h = np.ptp(av.landmarks[:, 1]) * av.image.shape[0]
    assert box_h <= 641


@needs_shared
def test_real_photo(tracker, tmp_path):
    photo = read_photo(SHARED_DATA / "avatars" / "fdtflite_iris-detection-ex1.jpg")
    av = create_avatar(photo, tracker.detect_image(photo), tmp_path / "iris")
    assert Avatar.load(tmp_path / "iris").landmarks.shape == (478, 3)
    assert av.folder == tmp_path / "iris"


def test_bundled_sample_loads(sample):
    assert sample.image.ndim == 3 and sample.landmarks.shape == (478, 3)
    assert (SAMPLE / "SOURCE.md").is_file()


@needs_shared
@pytest.mark.parametrize("name", ["mpsamples_business-person.png", "fdtflite_mesh-ex1.jpeg", "pyfeat_single_face.jpg", "stylized/liveportrait_s9_monalisa.jpg"])
def test_other_portraits_render(tracker, name):
    from vcam_me.avatar import AvatarRenderer
    from vcam_me.types import AU_INDEX, ExpressionState

    photo = read_photo(SHARED_DATA / "avatars" / name)
    av = create_avatar(photo, tracker.detect_image(photo), None)
    r = AvatarRenderer.create(av, (640, 360))
    neutral = r.render(ExpressionState.neutral(0))
    assert neutral.shape == (360, 640, 3)
    assert np.abs(neutral.astype(np.int16) - r.canvas).mean() < 0.5
    au = np.zeros_like(ExpressionState.neutral(0).au)
    au[AU_INDEX["AU26"]] = 0.7
    busy = r.render(ExpressionState(0, au, np.zeros((2, 2), np.float32), np.array([10, 5, 0], np.float32)))
    assert np.abs(busy.astype(np.int16) - neutral).mean() > 1.0


def test_a_flipped_byte_in_any_avatar_file_is_reported_naming_it(tmp_path, sample):
    made = _make(sample, tmp_path / "av")
    folder = made.folder
    for name in [*made.files, "avatar.json"]:
        path = folder / name
        original = path.read_bytes()
        for i in sorted({0, len(original) // 3, len(original) // 2, len(original) - 1}):
            damaged = bytearray(original)
            damaged[i] ^= 0x01
            path.write_bytes(bytes(damaged))
            with pytest.raises(AvatarError) as caught:
                Avatar.load(folder)
            assert str(path) in str(caught.value) and "\n" not in str(caught.value), (name, i)
        path.write_bytes(original)
    assert Avatar.load(folder).content_id == made.content_id


def test_every_flipped_bit_of_avatar_json_is_refused(tmp_path, sample):
    """The manifest's own checksum: even a changed "source" or "created" is caught."""
    folder = _make(sample, tmp_path / "av", source_name="portrait, CC0").folder
    path = folder / "avatar.json"
    original = path.read_bytes()
    for i in range(len(original)):
        damaged = bytearray(original)
        damaged[i] ^= 0x01
        path.write_bytes(bytes(damaged))
        with pytest.raises(AvatarError, match="avatar.json"):
            Avatar.load(folder)
    path.write_bytes(original)
    assert Avatar.load(folder).meta["source"] == "portrait, CC0"


def test_an_avatar_without_a_manifest_checksum_still_loads(tmp_path, sample):
    """Avatars saved before the checksum existed (the bundled sample among them) stay usable."""
    from vcam_me.avatar.avatar import MANIFEST_CHECKSUM

    folder = _make(sample, tmp_path / "av").folder
    meta = json.loads((folder / "avatar.json").read_text())
    del meta[MANIFEST_CHECKSUM]
    (folder / "avatar.json").write_text(json.dumps(meta, indent=2))
    assert Avatar.load(folder).files == meta["files"]
