"""Self-reenactment samples for the transfer network, from real face videos read in place.

Per clip (each clip shows one person):

1. every ``stride``-th frame is tracked with the project's own MediaPipe tracker (video mode);
   AUs come from the crosswalk, gaze from the blendshapes, head pose from the facial
   transformation matrix;
2. the *reference* is the rest frame (:func:`rest_frame`): the least expression and the least
   unlike the clip's median face (no hand over the mouth); every other face frame is a *target*;
3. each frame is cut to an aligned crop (:data:`CROP_SIZE` = 128 px square) by a 2-D
   similarity from a few landmarks that expressions barely move (eye corners, nose bridge
   and tip) to their places on MediaPipe's canonical face. 128 px is the crop design.md §4
   budgets for (a 0.7 GMAC U-Net at 128²); the face is then ≈ 38 px between the eyes, enough
   for teeth, lids and folds, and 256² would cost 4× the MACs;
4. the reference crop is warped to each target's geometry by a piecewise-affine warp over
   MediaPipe's canonical triangles (:func:`warp_to_geometry`), so the appearance head only has
   to learn what a warp cannot make (mouth interior, lid closure, folds).

Conditioning vector per target (:data:`CONDITION_NAMES`): the driving AU channels and gaze
of :mod:`vcam_me.training.features`, then head pose (yaw, pitch, roll) relative to the
reference's, in units of 30°. The AUs are calibrated as the app calibrates its user
(:func:`calibrated_features`): each channel's change from the clip's own neutral, not the
tracker's raw score, since that is what the network is fed at run time.

Extracted clips are cached as ``.npz`` under the user cache folder (never in the repository),
keyed by the clip's path, size, mtime and the extraction settings.
"""

from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from vcam_me.avatar import mesh
from vcam_me.avatar.crop import ALIGN_IDS, CROP_SIZE, POSE_UNIT_DEG, crop_points
from vcam_me.errors import CaptureError, TrackingError
from vcam_me.geometry import pose_from_transform
from vcam_me.storage import atomic_write_bytes
from vcam_me.training.features import (
    FEATURE_NAMES,
    blendshapes_to_au_and_gaze,
    features_from,
    mirror_features,
)
from vcam_me.types import NUM_LANDMARKS

log = logging.getLogger(__name__)

CONDITION_NAMES: tuple[str, ...] = FEATURE_NAMES + ("pose_yaw", "pose_pitch", "pose_roll")
N_CONDITION = len(CONDITION_NAMES)
_CACHE_VERSION = 2


@dataclass(frozen=True)
class ClipSamples:
    """One clip's self-reenactment samples (``n`` targets).

    Attributes:
        clip: the video it came from.
        reference_crop: ``(S, S, 3) uint8 RGB`` aligned crop of the rest frame.
        reference_mesh: ``(478, 3) float32`` pose-normalised rest landmarks (canonical IOD units).
        warped: ``(n, S, S, 3) uint8 RGB`` the reference crop warped to each target's geometry.
        target: ``(n, S, S, 3) uint8 RGB`` the target crops.
        face_mask: ``(n, S, S) uint8`` 1 inside each target's face oval.
        condition: ``(n, N_CONDITION) float32`` AUs, gaze and relative pose of each target.
        displacement: ``(n, 478, 3) float32`` target minus reference pose-normalised mesh.
        frame_index: ``(n,) int`` source frame numbers; ``reference_index`` the rest frame's.
    """

    clip: Path
    reference_crop: np.ndarray
    reference_mesh: np.ndarray
    warped: np.ndarray
    target: np.ndarray
    face_mask: np.ndarray
    condition: np.ndarray
    displacement: np.ndarray
    frame_index: np.ndarray
    reference_index: int

    def __len__(self) -> int:
        return len(self.target)


def crop_transform(points_px: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """``(2, 3)`` similarity mapping image pixels to the aligned crop, from ``(478, ≥2)`` landmarks."""
    src = np.asarray(points_px, np.float64)[list(ALIGN_IDS), :2]
    m, _ = cv2.estimateAffinePartial2D(src, crop_points(size), method=cv2.LMEDS)
    if m is None:
        raise TrackingError("cannot align the face crop: degenerate landmarks")
    return m


def _apply(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points[:, :2] @ m[:, :2].T + m[:, 2]


def _triangles() -> np.ndarray:
    return mesh.canonical_mesh().triangles


def warp_to_geometry(image: np.ndarray, src_points: np.ndarray, dst_points: np.ndarray) -> np.ndarray:
    """Piecewise-affine warp of ``image`` so its landmarks move from ``src`` to ``dst``.

    ``image``: ``(S, S, 3) uint8``; ``src_points``, ``dst_points``: ``(≥468, 2)`` in its pixels.
    Inside the face mesh each output pixel is pulled from the source through the affine map of
    the canonical triangle it falls in; outside, the outline's motion fades out over a few
    pixels and then pixels stay where they are (both crops are aligned on the same stable
    landmarks, so hair and background already line up).
    """
    h, w = image.shape[:2]
    tris = _triangles()
    dst = np.asarray(dst_points, np.float64)[:468, :2]
    src = np.asarray(src_points, np.float64)[:468, :2]
    owner = np.full((h, w), -1, np.int32)
    # Triangles overlap only where the mesh folds (a turned cheek); the last drawn wins there.
    for k, tri in enumerate(tris):
        cv2.fillConvexPoly(owner, np.round(dst[tri] * 16).astype(np.int32), int(k), lineType=cv2.LINE_8, shift=4)
    # Affine per triangle, dst → src: [x y 1] @ A = src.
    d = np.concatenate([dst[tris], np.ones((len(tris), 3, 1))], axis=2)  # (T, 3, 3)
    a = np.linalg.pinv(d) @ src[tris]  # (T, 3, 2); pinv copes with degenerate (closed-lid) triangles
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    inside = owner >= 0
    shift = np.zeros((h, w, 2), np.float32)
    ai = a[owner[inside]]
    px, py = xs[inside], ys[inside]
    shift[inside, 0] = px * ai[:, 0, 0] + py * ai[:, 1, 0] + ai[:, 2, 0] - px
    shift[inside, 1] = px * ai[:, 0, 1] + py * ai[:, 1, 1] + ai[:, 2, 1] - py
    # The face outline moves but the pixels outside the mesh would not: a visible seam. Carry
    # the outline's motion a few pixels outward, fading to none (a normalised blur of the
    # shift field, weighted by how close the mesh is).
    sigma = max(2.0, w / 32.0)
    weight = cv2.GaussianBlur(inside.astype(np.float32), (0, 0), sigma)
    spread = cv2.GaussianBlur(shift, (0, 0), sigma) / np.maximum(weight, 1e-6)[..., None]
    outside = ~inside
    shift[outside] = spread[outside] * np.clip(2.0 * weight[outside], 0.0, 1.0)[:, None]
    map_x = (xs + shift[..., 0]).astype(np.float32)
    map_y = (ys + shift[..., 1]).astype(np.float32)
    return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def face_mask(points: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """``(size, size) uint8`` 1 inside the face oval of ``(478, ≥2)`` crop-pixel landmarks."""
    out = np.zeros((size, size), np.uint8)
    cv2.fillPoly(out, [np.round(np.asarray(points)[list(mesh.FACE_OVAL), :2] * 16).astype(np.int32)], 1, shift=4)
    return out


@dataclass(frozen=True)
class TrackedClip:
    """A clip's tracked frames (cached): what samples and calibrations are made from."""

    index: np.ndarray  # (n,) frame numbers
    crops: np.ndarray  # (n, S, S, 3) uint8
    crop_landmarks: np.ndarray  # (n, 478, 2) float32
    aligned: np.ndarray  # (n, 478, 3) float32, pose-normalised
    features: np.ndarray  # (n, len(FEATURE_NAMES)) float32
    pose_deg: np.ndarray  # (n, 3) float32
    blendshapes: np.ndarray  # (n, 52) float32
    frames_read: np.ndarray  # () int: video frames looked at (every stride-th)


def _track(path: Path, max_frames: int, stride: int, size: int, progress=None) -> TrackedClip:
    from vcam_me.models import verified_model_path
    from vcam_me.tracking import FaceTracker
    from vcam_me.types import Frame

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise CaptureError(f"cannot open video {path}")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    expected = min(max_frames, max(1, (int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) + stride - 1) // stride))
    rows: dict[str, list] = {k: [] for k in ("index", "crops", "lm", "aligned", "blend", "pose")}
    seen = 0
    try:
        with FaceTracker.create(verified_model_path("face_landmarker"), mode="video") as tracker:
            i = 0
            while len(rows["index"]) < max_frames:
                ok, bgr = cap.read()
                if not ok:
                    break
                if i % stride == 0:
                    seen += 1
                    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                    obs = tracker.track(Frame(rgb, round(i * 1000.0 / fps) + 1, i))
                    if obs.has_face and obs.blendshapes is not None and obs.transform is not None:
                        px = mesh.landmarks_to_pixels(obs.landmarks, obs.image_size)
                        m = crop_transform(px, size)
                        rows["index"].append(i)
                        rows["crops"].append(cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT))
                        rows["lm"].append(_apply(m, px))
                        rows["aligned"].append(mesh.normalise_pose(px)[0])
                        rows["blend"].append(obs.blendshapes)
                        rows["pose"].append(pose_from_transform(obs.transform))
                    if progress is not None:
                        progress(min(seen, expected), expected)
                i += 1
    finally:
        cap.release()
    if seen == 0:
        raise CaptureError(f"no frames could be read from {path}")
    if len(rows["index"]) < 2:
        raise TrackingError(f"no face found in {path.name}: {len(rows['index'])} of {seen} frames had a face, need ≥ 2")
    au, gaze = blendshapes_to_au_and_gaze(np.asarray(rows["blend"], np.float32))
    return TrackedClip(
        index=np.asarray(rows["index"]),
        crops=np.asarray(rows["crops"], np.uint8),
        crop_landmarks=np.asarray(rows["lm"], np.float32),
        aligned=np.asarray(rows["aligned"], np.float32),
        features=features_from(au, gaze).astype(np.float32),
        pose_deg=np.asarray(rows["pose"], np.float32),
        blendshapes=np.asarray(rows["blend"], np.float32),
        frames_read=np.asarray(seen),
    )


#: Which tracked frames become targets: all of them, the first ``split`` fraction (training
#: part) or the rest (the held-back part a personalised model is scored on).
PARTS = ("all", "first", "rest")


#: Weight of a frame's difference from the clip's median face (0–1 grey scale, inside the
#: face oval) in the rest-frame score, next to its summed AU intensities: a hand over the
#: mouth reads as "no mouth movement" to MediaPipe, but as a large difference here.
OCCLUSION_WEIGHT = 20.0


def rest_frame(t: TrackedClip, cut: int | None = None) -> int:
    """Index (into the tracked frames ``[:cut]``) of the clip's rest frame: the least
    expression (summed driving AUs) and the least unlike the clip's median aligned face, so a
    relaxed face half hidden by a hand is not picked as the reference."""
    cut = len(t.index) if cut is None else cut
    n_au = len(FEATURE_NAMES) - 4
    au_sum = t.features[:cut, :n_au].sum(axis=1)
    pick = np.linspace(0, cut - 1, min(cut, 200)).astype(int)
    median = np.median(t.crops[pick].astype(np.float32), axis=0) / 255.0
    size = t.crops.shape[1]
    diff = np.empty(cut, np.float32)
    for k in range(cut):
        m = face_mask(t.crop_landmarks[k], size).astype(bool)
        diff[k] = float(np.abs(t.crops[k][m].astype(np.float32) / 255.0 - median[m]).mean()) if m.any() else 1.0
    return int(np.argmin(au_sum + OCCLUSION_WEIGHT * diff))


#: The neutral baseline of :func:`calibrated_features`: each channel's low percentile over the
#: frames the calibration may see (the app's :meth:`~vcam_me.expression.Calibration.from_observations`).
BASELINE_PERCENTILE = 5.0


def calibrated_features(t: TrackedClip, cut: int | None = None) -> np.ndarray:
    """``(n, len(FEATURE_NAMES)) float32``: every tracked frame's features as the app drives
    the avatar with them: each AU channel's rise above its neutral baseline (the
    :data:`BASELINE_PERCENTILE` over the frames ``[:cut]``, as a calibration over a recording
    of the user takes it), clipped to [0, 1], the derived channels from those; gaze as
    tracked.

    The raw scores carry each person's resting offsets (over liveportrait_d5's held-back frames
    AU7, from eyeSquint, averaged 0.69 raw and 0.06 calibrated). A network trained
    on raw scores and fed calibrated ones at run time saw a face it had never been shown
    (benchmarks/README.md, "The network's conditioning")."""
    from vcam_me.expression.action_units import fill_derived, gaze_from_blendshapes, raw_channels
    from vcam_me.expression.calibration import apply_calibration

    cut = len(t.index) if cut is None else cut
    raw = raw_channels(np.asarray(t.blendshapes, np.float32))
    baseline = np.percentile(raw[:cut], BASELINE_PERCENTILE, axis=0).astype(np.float32)
    au = fill_derived(apply_calibration(raw, baseline, None))
    return features_from(au, gaze_from_blendshapes(np.asarray(t.blendshapes, np.float32))).astype(np.float32)


def samples_from_tracked(clip: Path, t: TrackedClip, size: int = CROP_SIZE, *, split: float | None = None,
                         part: str = "all") -> ClipSamples:
    """Pick the rest frame, warp it to every other frame and build the conditioning.

    With ``split`` the rest frame is chosen from the first ``split`` fraction of the tracked
    frames only, so the ``"first"`` and ``"rest"`` parts share one reference and nothing of
    the held-back part is seen when training on the first.
    """
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    n = len(t.index)
    cut = n if split is None else int(round(float(split) * n))
    if split is not None and not (1 <= cut < n):
        raise ValueError(f"split {split} leaves no frames on one side of {n}")
    ref = rest_frame(t, cut)
    chosen = {"all": range(n), "first": range(cut), "rest": range(cut, n)}[part]
    targets = np.array([k for k in chosen if k != ref], dtype=int)
    if targets.size == 0:
        raise TrackingError(f"{clip.name}: no target frames in part {part!r}")
    ref_crop, ref_lm = t.crops[ref], t.crop_landmarks[ref]
    warped = np.stack([warp_to_geometry(ref_crop, ref_lm, t.crop_landmarks[k]) for k in targets])
    masks = np.stack([face_mask(t.crop_landmarks[k], size) for k in targets])
    pose = (t.pose_deg[targets] - t.pose_deg[ref]) / POSE_UNIT_DEG
    condition = np.concatenate([calibrated_features(t, cut)[targets], pose], axis=1).astype(np.float32)
    return ClipSamples(
        clip=clip,
        reference_crop=ref_crop,
        reference_mesh=t.aligned[ref],
        warped=warped,
        target=t.crops[targets],
        face_mask=masks,
        condition=condition,
        displacement=(t.aligned[targets] - t.aligned[ref]).astype(np.float32),
        frame_index=t.index[targets],
        reference_index=int(t.index[ref]),
    )


#: Bumped whenever :func:`warped_by_basis` draws differently: fine-tuning checkpoints are
#: resumed only when made with the same samples (``training.personalise`` keys them on it).
WARPED_BY_BASIS_VERSION = 3


def warped_by_basis(samples: ClipSamples, t: TrackedClip, basis: np.ndarray, progress=None) -> ClipSamples:
    """``samples`` with each warped reference drawn as the app draws the avatar's mesh: the
    reference moved by the AU basis (``(len(FEATURE_NAMES), 478, 3)``, drawn as measured)
    instead of to the target's true landmarks.

    The true mesh teaches the appearance head only what a warp cannot draw; at run time the
    warp follows the basis, whose mesh differs from the true one on every face. Trained on
    these, the head also learns to mend what the basis draws wrong on this face. The target's
    own head pose and crop placement are kept (the basis moves the expression only): each
    target's landmarks get the basis's expression displacement in place of the true one,
    mapped from the pose-normalised frame into that target's crop by the affine projection
    that best maps its own pose-normalised mesh onto its crop landmarks (so a turned head's
    displacements are turned with it).

    ``progress(done, total)`` is called per warped frame (about 20 ms each on one core).
    """
    basis = np.asarray(basis, np.float64)
    if basis.shape != (len(FEATURE_NAMES), NUM_LANDMARKS, 3):
        raise ValueError(f"basis of shape {basis.shape}, expected ({len(FEATURE_NAMES)}, {NUM_LANDMARKS}, 3)")
    ref = int(np.searchsorted(t.index, samples.reference_index))
    targets = np.searchsorted(t.index, samples.frame_index)
    if ref >= len(t.index) or t.index[ref] != samples.reference_index or not np.array_equal(t.index[targets], samples.frame_index):
        raise ValueError(f"{samples.clip.name}: the samples were not made from this tracked clip")
    # drawn with the samples' own (calibrated) features, as the app drives the basis
    drawn = np.einsum("nf,fpc->npc", samples.condition[:, :len(FEATURE_NAMES)].astype(np.float64), basis)
    true = (t.aligned[targets] - t.aligned[ref]).astype(np.float64)
    warped = np.empty_like(samples.warped)
    for k, target in enumerate(targets):
        mesh3 = t.aligned[target].astype(np.float64)
        crop_lm = t.crop_landmarks[target][:, :2].astype(np.float64)
        projection = np.linalg.lstsq(np.c_[mesh3, np.ones(len(mesh3))], crop_lm, rcond=None)[0]  # (4, 2)
        moved = crop_lm + (drawn[k] - true[k]) @ projection[:3]
        warped[k] = warp_to_geometry(samples.reference_crop, t.crop_landmarks[ref], moved)
        if progress is not None:
            progress(k + 1, len(targets))
    return replace(samples, warped=warped)


def mirror_condition(condition: np.ndarray) -> np.ndarray:
    """The conditioning of the left↔right mirrored face: sides and eyes swapped, horizontal
    gaze, yaw and roll negated (pitch is unchanged by a mirror)."""
    idx, sign = mirror_features()
    c = np.asarray(condition, np.float32)
    n = len(FEATURE_NAMES)
    out = c.copy()
    out[..., :n] = c[..., idx.astype(int)] * sign
    out[..., n] = -c[..., n]  # yaw
    out[..., n + 2] = -c[..., n + 2]  # roll
    return out


def mirror_displacement(displacement: np.ndarray) -> np.ndarray:
    """Pose-normalised mesh displacements ``(..., 478, 3)`` of the mirrored face."""
    d = np.asarray(displacement, np.float32)[..., mesh.mirror_index(), :]
    return d * np.array([-1.0, 1.0, 1.0], np.float32)


def default_cache_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("vcam-me", appauthor=False)) / "reenact"


def _cache_key(path: Path, max_frames: int, stride: int, size: int) -> str:
    st = path.stat()
    text = f"{_CACHE_VERSION}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{max_frames}|{stride}|{size}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def load_clip(
    path: Path,
    *,
    max_frames: int = 300,
    stride: int = 2,
    size: int = CROP_SIZE,
    cache_dir: Path | None = None,
    split: float | None = None,
    part: str = "all",
) -> ClipSamples:
    """Self-reenactment samples of one clip (tracked once, then read from the cache).

    ``max_frames``: at most this many tracked frames (every ``stride``-th of the video).
    ``cache_dir``: where extracted clips are kept; ``None`` = the user cache folder.
    ``split``, ``part``: see :func:`samples_from_tracked` (train on the first part of a clip,
    score on the rest).
    Raises :class:`CaptureError` for a missing/unreadable video and :class:`TrackingError`
    when fewer than two frames show a face.
    """
    t = load_tracked(path, max_frames=max_frames, stride=stride, size=size, cache_dir=cache_dir)
    return samples_from_tracked(Path(path), t, size, split=split, part=part)


def load_tracked(path: Path, *, max_frames: int = 300, stride: int = 2, size: int = CROP_SIZE,
                 cache_dir: Path | None = None, progress=None) -> TrackedClip:
    """Track a clip once (see :func:`load_clip`), then read it from the cache.

    ``progress(done, total)`` is called per tracked frame (not when read from the cache).
    """
    path = Path(path)
    if not path.is_file():
        raise CaptureError(f"no such video: {path}")
    if max_frames < 2 or stride < 1:
        raise ValueError(f"max_frames must be ≥ 2 and stride ≥ 1, got {max_frames}, {stride}")
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cached = cache_dir / f"{path.stem}-{_cache_key(path, max_frames, stride, size)}.npz"
    if cached.is_file():
        try:
            with np.load(cached, allow_pickle=False) as z:
                return TrackedClip(**{k: z[k] for k in TrackedClip.__dataclass_fields__})
        except Exception as err:  # noqa: BLE001 - numpy and zipfile raise many kinds for a damaged file
            log.warning("tracking cache %s is damaged (%s); tracking the clip again", cached, " ".join(str(err).split())[:120])
    t = _track(path, max_frames, stride, size, progress)
    cache_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **{k: getattr(t, k) for k in TrackedClip.__dataclass_fields__})
    atomic_write_bytes(cached, buffer.getvalue())
    return t
