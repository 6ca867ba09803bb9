"""The avatar renderer on the bundled sample avatar and the shipped AU basis."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vcam_me.avatar import AUBasis, Avatar, AvatarRenderer
from vcam_me.avatar import mesh as M
from vcam_me.avatar.basis import FEATURE_NAMES
from vcam_me.config import AvatarOptions
from vcam_me.errors import ModelError
from vcam_me.types import AU_INDEX, ExpressionState

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "assets" / "avatars" / "sample"

#: Neutral render vs the framed reference: mean absolute grey-level difference allowed.
NEUTRAL_MEAN_TOLERANCE = 0.5
#: Largest jump of the displacement field between neighbouring grid cells near the face
#: outline, as a fraction of the largest displacement: a tear would jump by the full motion.
MAX_FIELD_STEP_FRACTION = 0.25


def state(au: dict | None = None, gaze=None, pose=(0.0, 0.0, 0.0)) -> ExpressionState:
    s = ExpressionState.neutral(0)
    a = s.au.copy()
    for k, v in (au or {}).items():
        a[AU_INDEX[k]] = v
    g = s.gaze if gaze is None else np.asarray(gaze, np.float32)
    return ExpressionState(0, a, g, np.asarray(pose, np.float32))


@pytest.fixture(scope="module")
def renderer() -> AvatarRenderer:
    return AvatarRenderer.create(Avatar.load(SAMPLE))


@pytest.fixture(scope="module")
def neutral(renderer) -> np.ndarray:
    return renderer.render(state())


def _box(points: np.ndarray, pad: float = 0.0) -> tuple[slice, slice]:
    lo = np.floor(points.min(0) - pad).astype(int)
    hi = np.ceil(points.max(0) + pad).astype(int)
    return slice(lo[1], hi[1]), slice(lo[0], hi[0])


def test_shape_and_dtype(renderer, neutral):
    assert neutral.shape == (720, 1280, 3) and neutral.dtype == np.uint8
    assert renderer.size == (1280, 720)


def test_other_size():
    r = AvatarRenderer.create(Avatar.load(SAMPLE), (640, 360), AvatarOptions(warp_downscale=2))
    out = r.render(state({"AU26": 0.8}, pose=(10, 0, 0)))
    assert out.shape == (360, 640, 3) and out.dtype == np.uint8


def test_neutral_is_the_framed_reference(renderer, neutral):
    diff = np.abs(neutral.astype(np.int16) - renderer.canvas.astype(np.int16))
    assert diff.mean() < NEUTRAL_MEAN_TOLERANCE


def test_face_is_framed_sensibly(renderer):
    rest = renderer.rest[:, :2]
    w, h = renderer.size
    assert 0.3 * w < rest[:, 0].mean() < 0.7 * w
    assert 0.25 * h < rest[:, 1].mean() < 0.65 * h
    face_h = rest[M.CHIN, 1] - rest[M.FOREHEAD_TOP, 1]
    assert 0.3 * h < face_h < 0.55 * h


@pytest.mark.parametrize("size, badge_top", [((640, 480), 299), ((720, 720), 388), ((1280, 720), 527)])
def test_face_is_framed_above_a_row_to_keep_clear(size, badge_top):
    """The label's badge climbs to the chin on frames narrower than 16:9: the renderer moves the
    face up (then makes it smaller) so the chin stays above the badge; where it already is, the
    framing is the usual one."""
    from vcam_me.avatar.renderer import CHIN_CLEARANCE, FACE_TOP_LIMIT, frame_portrait

    avatar = Avatar.load(SAMPLE)
    _, usual = frame_portrait(avatar.image, avatar.landmarks, size)
    _, kept = frame_portrait(avatar.image, avatar.landmarks, size, keep_clear_row=badge_top)
    px = M.landmarks_to_pixels(avatar.landmarks, avatar.image_size)[:, :2]
    chin, forehead = (kept[:, :2] @ px[i] + kept[:, 2] for i in (M.CHIN, M.FOREHEAD_TOP))
    usual_chin = usual[:, :2] @ px[M.CHIN] + usual[:, 2]
    h = size[1]
    if usual_chin[1] <= badge_top - CHIN_CLEARANCE * h:
        np.testing.assert_allclose(kept, usual)
        return
    assert chin[1] <= badge_top - CHIN_CLEARANCE * h + 1e-6
    assert forehead[1] >= FACE_TOP_LIMIT * h - 1e-6
    assert kept[0, 0] >= 0.5 * usual[0, 0]
    # the renderer built with it draws its rest mesh there
    r = AvatarRenderer.create(avatar, size=size, keep_clear_row=badge_top)
    assert r.rest[M.CHIN, 1] <= badge_top - CHIN_CLEARANCE * h + 1e-3


def test_jaw_open_darkens_the_mouth(renderer, neutral):
    open_ = renderer.render(state({"AU26": 1.0}))
    lips = renderer.mesh(state({"AU26": 1.0}))[list(M.INNER_LIPS), :2]
    rows, cols = _box(lips)
    centre = (rows.start + (rows.stop - rows.start) // 4, cols.start + (cols.stop - cols.start) // 4)
    inner = (slice(centre[0], rows.stop - (rows.stop - rows.start) // 4), slice(centre[1], cols.stop - (cols.stop - cols.start) // 4))
    before = neutral[inner].mean()
    after = open_[inner].mean()
    assert after < before - 30, (before, after)


def test_blink_closes_the_eyes(renderer, neutral):
    closed = renderer.render(state({"AU43_L": 1.0, "AU43_R": 1.0}))
    for eye in (M.LEFT_EYE, M.RIGHT_EYE):
        rows, cols = _box(renderer.rest[list(eye), :2])
        diff = np.abs(closed[rows, cols].astype(np.int16) - neutral[rows, cols].astype(np.int16))
        assert diff.mean() > 8
        v = renderer.mesh(state({"AU43_L": 1.0, "AU43_R": 1.0}))
        upper, lower = (159, 145) if eye is M.RIGHT_EYE else (386, 374)
        assert v[lower, 1] - v[upper, 1] < 0.2 * (renderer.rest[lower, 1] - renderer.rest[upper, 1])


def test_lid_closure_ignores_the_cross_identity_gain():
    """The lid is shut by BLINK_GAIN · AU43 (after the mixing), whatever the basis's gain: the
    closure is already set to what the tracker reads, and with the gain on top a photo
    avatar's eye was shut from AU43 ≈ 0.19 (benchmarks/README.md, "Eye closure")."""
    from vcam_me.avatar.renderer import BLINK_GAIN

    shipped = AUBasis.load()
    tripled = AUBasis(shipped.basis, 3.0 * np.asarray(shipped.gain), shipped.pose_gain, shipped.pose_coupling,
                      shipped.mixing)
    closures = []
    for basis in (shipped, tripled, shipped.as_measured()):
        r = AvatarRenderer.create(Avatar.load(SAMPLE), (640, 360), basis=basis)
        r.mesh(state({"AU43_L": 0.1}))
        closures.append(r._closure[FEATURE_NAMES.index("AU43_L")])
    assert closures[0] == pytest.approx(closures[1])
    # the owner's basis (no mixing) closes by exactly BLINK_GAIN · AU43; the shipped mixing
    # strengthens a one-sided AU43 but stays far from the old gain-doubled 5.4 ×
    assert closures[2] == pytest.approx(BLINK_GAIN * 0.1)
    assert closures[2] < closures[0] < 2.0 * BLINK_GAIN * 0.1 * 1.1


def test_gaze_moves_the_iris(renderer):
    left = renderer.mesh(state(gaze=[[1.0, 0.0], [1.0, 0.0]]))
    right = renderer.mesh(state(gaze=[[-1.0, 0.0], [-1.0, 0.0]]))
    # +horizontal = toward the subject's left = image right (+x)
    assert np.all(left[[468, 473], 0] > right[[468, 473], 0] + 2.0)


def test_background_far_from_face_is_static(renderer, neutral):
    busy = renderer.render(state({"AU26": 1.0, "AU12_L": 1.0, "AU43_R": 1.0}, gaze=[[0.5, 0.2], [0.5, 0.2]], pose=(20, -10, 8)))
    x0, y0, x1, y1 = renderer.bbox
    mask = np.ones(neutral.shape[:2], bool)
    mask[y0:y1, x0:x1] = False
    assert mask.sum() > 0.3 * mask.size
    assert np.array_equal(busy[mask], neutral[mask])
    assert not np.array_equal(busy[~mask], neutral[~mask])


def test_head_turn_moves_the_face(renderer):
    a = renderer.mesh(state(pose=(15, 0, 0)))
    b = renderer.mesh(state(pose=(-15, 0, 0)))
    # nose tip moves toward +x (image right) for +yaw (turning toward the subject's left)
    assert a[1, 0] > b[1, 0] + 10


def test_no_tear_at_face_boundary(renderer):
    # (a strong yaw legitimately compresses the far cheek toward the silhouette, so the
    # head turn here is moderate)
    s = state({"AU26": 1.0, "AU12_L": 1.0, "AU12_R": 1.0}, pose=(10, 8, -8))
    field = renderer.displacement_field(s)
    moved = np.abs(field).max()
    assert moved > 15  # it really moves
    # grid cells within a few cells of the reference face outline (the mouth and eyes
    # legitimately open up inside the face, so they are not looked at)
    x0, y0, _, _ = renderer.bbox
    k = renderer._k
    hl, wl = field.shape[:2]
    jj, ii = np.meshgrid(np.arange(wl), np.arange(hl))
    cells = np.stack([x0 + k * jj + (k - 1) / 2, y0 + k * ii + (k - 1) / 2], axis=2)
    oval = renderer.rest[list(M.FACE_OVAL), :2]
    dense = np.concatenate([np.linspace(a, b, 20) for a, b in zip(oval, np.roll(oval, -1, axis=0))])
    dist = np.min(np.linalg.norm(cells[:, :, None, :] - dense[None, None], axis=3), axis=2)
    near = dist < 4 * k
    step_x = np.abs(np.diff(field, axis=1)).max(axis=2)
    step_y = np.abs(np.diff(field, axis=0)).max(axis=2)
    worst = max(step_x[near[:, 1:] & near[:, :-1]].max(), step_y[near[1:] & near[:-1]].max())
    assert worst < MAX_FIELD_STEP_FRACTION * moved, (worst, moved)
    # and the field fades to zero at the edge of the warped box
    edge = np.concatenate([field[0], field[-1], field[:, 0], field[:, -1]])
    assert np.abs(edge).max() < 0.05 or renderer.bbox[0] == 0 or renderer.bbox[1] == 0


def test_no_tear_in_image(renderer, neutral):
    """Along the face outline the rendered image has no seam: its gradient there is like the reference's."""
    s = state({"AU26": 0.8}, pose=(15, 0, 0))
    out = renderer.render(s).astype(np.float32).mean(axis=2)
    ref = neutral.astype(np.float32).mean(axis=2)
    v = renderer.mesh(s)[list(M.FACE_OVAL), :2]
    v0 = renderer.rest[list(M.FACE_OVAL), :2]

    def edge_strength(img, pts):
        gy, gx = np.gradient(img)
        mag = np.hypot(gx, gy)
        xy = np.round(pts).astype(int)
        return float(np.mean(mag[xy[:, 1], xy[:, 0]]))

    assert edge_strength(out, v) < 1.5 * edge_strength(ref, v0) + 5


def test_deterministic(renderer):
    s = state({"AU12_L": 0.7, "AU1": 0.5}, pose=(5, 3, 1))
    assert np.array_equal(renderer.render(s), renderer.render(s))


def test_basis_shape_checked(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, basis=np.zeros((3, 478, 3), np.float32), feature_names=np.array(["a", "b", "c"]))
    with pytest.raises(ModelError, match="refit"):
        AUBasis.load(bad)


def test_zero_basis_only_turns_the_head():
    r = AvatarRenderer.create(Avatar.load(SAMPLE), (640, 360), basis=AUBasis.zeros())
    m = r.mesh(state({"AU12_L": 1.0, "AU1": 1.0}))
    assert np.allclose(m, r.rest.astype(np.float32), atol=1e-3)


def test_surround_is_filled(renderer):
    canvas = renderer.canvas
    # the sample photo is narrower than 16:9: the sides are blurred edge, never black
    assert canvas[:, :40].mean() > 30 and canvas[:, -40:].mean() > 30


# -- closed loop: MediaPipe reads back what was commanded ------------------------------------
@pytest.fixture(scope="module")
def tracker():
    from vcam_me.models import verified_model_path
    from vcam_me.tracking.mediapipe_tracker import FaceTracker

    with FaceTracker.create(verified_model_path("face_landmarker"), mode="image") as t:
        yield t


def _read(tracker, image):
    from vcam_me.geometry import pose_from_transform
    from vcam_me.types import BLENDSHAPE_INDEX

    faces = tracker.detect_image(image)
    assert len(faces) == 1
    f = faces[0]
    return {n: float(f.blendshapes[i]) for n, i in BLENDSHAPE_INDEX.items()}, pose_from_transform(f.transform)


def test_read_back_head_pose(renderer, tracker, neutral):
    _, rest = _read(tracker, neutral)
    for axis, angle in ((0, 12.0), (0, -12.0), (1, 10.0), (2, 10.0)):
        pose = [0.0, 0.0, 0.0]
        pose[axis] = angle
        _, got = _read(tracker, renderer.render(state(pose=pose)))
        change = got[axis] - rest[axis]
        assert np.sign(change) == np.sign(angle) and abs(change) > 0.5 * abs(angle), (axis, angle, change)


def test_read_back_expressions(renderer, tracker, neutral):
    rest, _ = _read(tracker, neutral)
    checks = [
        ({"AU26": 0.6}, "jawOpen", 0.3),
        ({"AU43_L": 0.6, "AU43_R": 0.6}, "eyeBlinkLeft", 0.25),
        ({"AU12_L": 0.6, "AU12_R": 0.6}, "mouthSmileLeft", 0.25),
        ({"AU1": 0.8}, "browInnerUp", 0.2),
    ]
    for au, shape, min_rise in checks:
        got, _ = _read(tracker, renderer.render(state(au)))
        assert got[shape] - rest[shape] > min_rise, (au, shape, got[shape], rest[shape])


def test_drive_applies_the_cross_talk_mixing():
    shipped = AUBasis.load()
    mixing = np.eye(len(FEATURE_NAMES), dtype=np.float32)
    # commanding AU4_L draws it with a little less AU2_L, and AU2_L ×1.5
    mixing[FEATURE_NAMES.index("AU2_L"), FEATURE_NAMES.index("AU4_L")] = -0.3
    mixing[FEATURE_NAMES.index("AU2_L"), FEATURE_NAMES.index("AU2_L")] = 1.5
    mixed = AUBasis(shipped.basis, shipped.gain, shipped.pose_gain, shipped.pose_coupling, mixing)
    r = AvatarRenderer.create(Avatar.load(SAMPLE), (640, 360), basis=mixed)
    unmixed = AUBasis(shipped.basis, shipped.gain, shipped.pose_gain, shipped.pose_coupling)
    plain = AvatarRenderer.create(Avatar.load(SAMPLE), (640, 360), basis=unmixed)
    gain = shipped.gain
    f = r.drive(state({"AU4_L": 0.5, "AU2_L": 0.2}))
    assert f[FEATURE_NAMES.index("AU4_L")] == pytest.approx(0.5 * gain[FEATURE_NAMES.index("AU4_L")])
    assert f[FEATURE_NAMES.index("AU2_L")] == pytest.approx((1.5 * 0.2 - 0.3 * 0.5) * gain[FEATURE_NAMES.index("AU2_L")])
    # the mesh is the plain renderer's for the mixed features (pose coupling included: it
    # follows what is drawn)
    equivalent = state({"AU4_L": 0.5, "AU2_L": 1.5 * 0.2 - 0.3 * 0.5})
    np.testing.assert_allclose(r.mesh(state({"AU4_L": 0.5, "AU2_L": 0.2})), plain.mesh(equivalent), atol=1e-3)
    # bounded: a large compensating term stays within the mixed range, gaze keeps its range
    low = r.drive(state({"AU4_L": 1.0}, gaze=[[-1.0, 1.0], [-1.0, 1.0]]))
    assert low[FEATURE_NAMES.index("AU2_L")] == pytest.approx(-0.3 * gain[FEATURE_NAMES.index("AU2_L")])
    assert low[FEATURE_NAMES.index("gaze_left_h")] == pytest.approx(-1.0 * gain[FEATURE_NAMES.index("gaze_left_h")])


def test_the_warp_cache_gives_the_same_frames_and_a_damaged_one_is_recomputed(renderer, tmp_path, caplog):
    avatar = Avatar.load(SAMPLE)
    first = AvatarRenderer.create(avatar, cache_dir=tmp_path)  # computes and stores the warp
    files = list(tmp_path.glob("warp-*.npz"))
    assert len(files) == 1
    again = AvatarRenderer.create(avatar, cache_dir=tmp_path)  # reads it back
    smile = state({"AU12_L": 0.8, "AU12_R": 0.7, "AU26": 0.5, "AU43_L": 0.6}, gaze=[[0.3, 0.1], [0.3, 0.1]], pose=(8.0, -5.0, 2.0))
    for r in (first, again):
        assert np.array_equal(r.render(smile), renderer.render(smile))
    AvatarRenderer.create(avatar, size=(640, 360), cache_dir=tmp_path)  # another size: another entry
    assert len(list(tmp_path.glob("warp-*.npz"))) == 2
    files[0].write_bytes(files[0].read_bytes()[:1000])  # cut short
    with caplog.at_level("WARNING"):
        healed = AvatarRenderer.create(avatar, cache_dir=tmp_path)
    assert "damaged warp cache" in caplog.text
    assert np.array_equal(healed.render(smile), renderer.render(smile))
    assert files[0].stat().st_size > 1000  # rewritten whole
