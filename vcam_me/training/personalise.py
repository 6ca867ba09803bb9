"""Personalisation: fine-tune the generic prior on one person's setup capture (design.md §4).

``vcam-me setup --from-video CAPTURE.mp4`` and the wizard call :func:`personalise`:

1. **check** the capture: readable, one face (never two), enough frames with a face, enough
   expression range (the prompts were followed), usable lighting; each failure is one clear
   :class:`~vcam_me.errors.SetupError`;
2. **calibrate** the owner: neutral baseline and pose (the most relaxed frames) and each AU's
   range (a high percentile over the capture);
3. **fine-tune** the transfer network from the shipped prior on the capture's
   self-reenactment samples (its rest frame warped to every other frame, once to the frame's
   true mesh and once to the mesh the AU basis draws for it, as the app will draw the owner's
   face: :func:`~vcam_me.training.reenact_data.warped_by_basis`), on the GPU when PyTorch
   sees one;
4. **export** the appearance head to ONNX (fp32, and int8 for the CPU) and the owner's
   refinement of the AU basis (the geometry head's non-linear part), and write the avatar
   folder: the rest frame as the reference, the networks, the calibration.

A checkpoint is written every :data:`CHECKPOINT_EVERY` steps into a work folder keyed by the
capture's content and the settings, so an interrupted or cancelled run resumes where it
stopped when started again; the tracked capture is cached the same way. The output folder
is written only at the end and never over an existing one.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from vcam_me.errors import SetupError, VcamError

log = logging.getLogger(__name__)

#: Tracked frames: every STRIDE-th video frame, at most MAX_FRAMES (90 s at 30 fps → 1350).
STRIDE = 2
MAX_FRAMES = 1500
MIN_FACE_FRAMES = 40
MIN_FACE_FRACTION = 0.8
#: An AU "moved" when its 95th − 5th percentile over the capture reaches this; the capture
#: must move at least MIN_MOVING_AUS of the driving AUs (brows, eyes, smile, jaw …).
MOVED_RANGE = 0.25
MIN_MOVING_AUS = 4
#: Median grey level of the face crops: below, too dark for the network to see lids and
#: teeth; above, blown out.
LUMINANCE_RANGE = (45.0, 215.0)
DEFAULT_STEPS = 500
CHECKPOINT_EVERY = 50
FINE_TUNE_LR = 2e-4
#: Fine-tune on the reference warped by the AU basis as well as by the true mesh (half each).
#: The app draws an owner's avatar with the basis, so the network also learns to mend what
#: the basis draws wrong on this face (benchmarks/README.md, "Fine-tuned on the mesh the basis
#: draws": the mouth better on all 10 clips, mean AED no worse, APD somewhat worse).
BASIS_WARPED = True
#: The set-up's before/after face L1 is reported over at most this many frames of the capture.
REPORT_SAMPLES = 256

Progress = Callable[[str, int, int], None]


class Cancelled(VcamError):
    """The user cancelled; the work so far is kept and the next run resumes from it."""


@dataclass
class SetupResult:
    avatar_folder: Path
    steps: int
    seconds: float
    device: str
    checks: dict = field(default_factory=dict)
    face_l1: dict = field(default_factory=dict)


def _noop(stage: str, done: int, total: int) -> None:
    pass


def work_dir_for(capture: Path, settings: dict, root: Path | None = None) -> Path:
    """Where an interrupted run of this capture with these settings keeps its checkpoint."""
    import platformdirs

    digest = hashlib.sha256()
    with open(capture, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    digest.update(repr(sorted(settings.items())).encode())
    root = root or Path(platformdirs.user_cache_dir("vcam-me", appauthor=False)) / "setup"
    return root / digest.hexdigest()[:20]


def check_capture(samples, luminance: float) -> dict:
    """The capture checks that need the tracked samples; raises :class:`SetupError`."""
    from vcam_me.training.reenact_data import CONDITION_NAMES

    n = len(samples) + 1
    if n < MIN_FACE_FRAMES:
        raise SetupError(f"{samples.clip.name}: only {n} frames with a face (need ≥ {MIN_FACE_FRAMES}): "
                         "record longer, facing the camera")
    n_au = len(CONDITION_NAMES) - 7  # AUs, then 4 gaze and 3 pose
    au = samples.condition[:, :n_au]
    spread = np.percentile(au, 95, axis=0) - np.percentile(au, 5, axis=0)
    moving = [CONDITION_NAMES[i] for i in np.nonzero(spread >= MOVED_RANGE)[0]]
    if len(moving) < MIN_MOVING_AUS:
        raise SetupError(f"{samples.clip.name}: too little expression: {len(moving)} facial actions moved "
                         f"({', '.join(moving) or 'none'}), need ≥ {MIN_MOVING_AUS}; follow the prompts "
                         "(raise brows, frown, smile, open the jaw, blink)")
    lo, hi = LUMINANCE_RANGE
    if not lo <= luminance <= hi:
        word = "dark" if luminance < lo else "bright"
        raise SetupError(f"{samples.clip.name}: the face is too {word} (median grey {luminance:.0f}, "
                         f"need {lo:.0f}–{hi:.0f}): light the face evenly from the front")
    return {"face_frames": n, "moving_aus": moving, "face_luminance": round(float(luminance), 1)}


def count_faces(capture: Path, tracker_factory, samples: int = 5) -> tuple[int, int]:
    """``(frames read, most faces in one of them)`` over ``samples`` frames spread through the video."""
    import cv2


    cap = cv2.VideoCapture(str(capture))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    most, read = 0, 0
    try:
        with tracker_factory() as tracker:
            for k in range(samples):
                if total > 0:
                    cap.set(cv2.CAP_PROP_POS_FRAMES, int((k + 0.5) * total / samples))
                ok, bgr = cap.read()
                if not ok:
                    continue
                read += 1
                faces = tracker.detect_image(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                most = max(most, sum(f.has_face for f in faces))
    finally:
        cap.release()
    return read, most


def owner_calibration(observations_blendshapes: np.ndarray, poses: np.ndarray):
    """Neutral baseline (5th percentile), range (99th percentile) and neutral pose (median)."""
    from vcam_me.expression import Calibration
    from vcam_me.expression.action_units import raw_channels

    raw = raw_channels(np.asarray(observations_blendshapes, np.float32))
    baseline = np.percentile(raw, 5, axis=0).astype(np.float32)
    maximum = np.maximum(np.percentile(raw, 99, axis=0), baseline + 0.05).astype(np.float32)
    return Calibration(baseline, maximum, np.median(poses, axis=0).astype(np.float32))


def torch_device(device: str = "auto") -> str:
    import torch

    if device in ("auto", "gpu") and torch.cuda.is_available():
        return "cuda"
    if device == "gpu":
        log.warning("no GPU that PyTorch can use: fine-tuning on the CPU")
    return "cpu"


def load_prior(path: Path):
    """The shipped prior (a PyTorch state dict) as a :class:`TransferNet`."""
    import torch

    from vcam_me.training.transfer_net import NetConfig, TransferNet

    state = torch.load(path, map_location="cpu", weights_only=True)
    net = TransferNet(NetConfig.of_state_dict(state))
    net.load_state_dict(state)
    return net


def fine_tune(net, data, *, steps: int, work: Path, settings: dict, device: str = "cpu", seed: int = 0,
              progress: Progress = _noop, cancel: threading.Event | None = None, lr: float = FINE_TUNE_LR,
              batch: int = 8) -> list:
    """Fine-tune ``net`` on ``data`` for ``steps`` steps, resuming from ``work/checkpoint.pt``.

    ``cancel`` set → the checkpoint is saved and :class:`Cancelled` raised.
    """
    import torch

    from vcam_me.training.train_prior import CHECKPOINT, DamagedCheckpoint, load_checkpoint, save_checkpoint, train

    work.mkdir(parents=True, exist_ok=True)
    net.to(device)
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    ckpt = work / CHECKPOINT
    start, history = 0, []
    if ckpt.is_file():
        try:
            start, history = load_checkpoint(ckpt, net, optimiser, settings)
            log.info("resuming the fine-tuning at step %d", start)
        except DamagedCheckpoint as err:  # reported and set aside, never half-used
            log.warning("%s; starting the fine-tuning afresh", err)
            ckpt.replace(ckpt.with_name(ckpt.name + ".damaged"))
    progress("training", start, steps)

    class _Stop(Exception):
        pass

    def on_step(step: int, hist: list) -> None:
        progress("training", step, steps)
        if step % CHECKPOINT_EVERY == 0:
            save_checkpoint(ckpt, net, optimiser, step, hist, settings)
        if cancel is not None and cancel.is_set():
            save_checkpoint(ckpt, net, optimiser, step, hist, settings)
            raise _Stop

    try:
        train(net, optimiser, data, steps=steps, start=start, batch=batch, seed=seed, history=history,
              on_step=on_step, augmented=True, device=device)
    except _Stop:
        raise Cancelled(f"set-up cancelled at step {len(history)} of {steps}; run it again to resume") from None
    save_checkpoint(ckpt, net, optimiser, len(history), history, settings)
    net.to("cpu")
    return history


def training_samples(samples, tracked, basis_warped: bool = BASIS_WARPED, *, progress: Progress = _noop,
                     cancel: threading.Event | None = None) -> list:
    """The samples to fine-tune on: ``samples`` (warped to the true mesh) and, with
    ``basis_warped``, the same targets with the reference warped by the shipped AU basis drawn
    for its owner (as measured), as the app draws a set-up avatar (stage "preparing")."""
    if not basis_warped:
        return [samples]
    from vcam_me.avatar import AUBasis
    from vcam_me.training.reenact_data import warped_by_basis

    def step(done: int, total: int) -> None:
        progress("preparing", done, total)
        if cancel is not None and cancel.is_set():
            raise Cancelled("set-up cancelled before the fine-tuning; run it again to start it")

    return [samples, warped_by_basis(samples, tracked, AUBasis.load().as_measured().basis, progress=step)]


def export_network(net, data, out_dir: Path) -> tuple[Path, Path, Path]:
    """``appearance.onnx``, ``appearance.int8.onnx`` and ``geometry_refinement.onnx`` (the
    owner's own refinement of the AU basis) in ``out_dir``."""
    from vcam_me.training.train_prior import export_geometry_refinement, export_onnx, quantize_int8

    appearance, _ = export_onnx(net, out_dir)
    return appearance, quantize_int8(appearance, data), export_geometry_refinement(net, out_dir)


def personalise(capture: Path, out_dir: Path, *, prior: Path, steps: int = DEFAULT_STEPS, device: str = "auto",
                threads: int = 2, progress: Progress = _noop, cancel: threading.Event | None = None,
                cache_root: Path | None = None, source_name: str = "") -> SetupResult:
    """Check ``capture``, calibrate, fine-tune ``prior`` on it and write the avatar folder ``out_dir``."""
    import cv2
    import torch

    from vcam_me.avatar.avatar import add_network, create_avatar
    from vcam_me.errors import CaptureError
    from vcam_me.models import verified_model_path
    from vcam_me.storage import publish_folder
    from vcam_me.tracking import FaceTracker
    from vcam_me.training.reenact_data import default_cache_dir, load_tracked, samples_from_tracked
    from vcam_me.training.train_prior import TrainData, face_l1

    t0 = time.monotonic()
    capture, out_dir = Path(capture), Path(out_dir)
    if not capture.is_file():
        raise SetupError(f"capture not found: {capture}")
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise SetupError(f"{out_dir} already exists: choose a new avatar folder (nothing was changed)")
    if steps < 1:
        raise SetupError(f"steps must be ≥ 1, got {steps}")
    torch.set_num_threads(max(1, threads))
    model = verified_model_path("face_landmarker")

    progress("checking", 0, 2)
    frames_read, most = count_faces(capture, lambda: FaceTracker.create(model, mode="image", num_faces=2))
    if frames_read == 0:
        raise SetupError(f"{capture} is not a readable video")
    if most > 1:
        raise SetupError(f"{capture.name}: {most} faces in view; record the setup alone in the frame")
    progress("checking", 1, 2)
    cache = (cache_root / "reenact") if cache_root else default_cache_dir()
    try:
        tracked = load_tracked(capture, max_frames=MAX_FRAMES, stride=STRIDE, cache_dir=cache,
                               progress=lambda done, total: progress("tracking", done, total))
    except CaptureError as err:
        raise SetupError(str(err)) from None
    except VcamError as err:  # no face at all
        raise SetupError(f"{capture.name}: {err}") from None
    frac = len(tracked.index) / max(1, int(tracked.frames_read))
    if frac < MIN_FACE_FRACTION:
        raise SetupError(f"{capture.name}: a face in only {frac:.0%} of the frames (need ≥ {MIN_FACE_FRACTION:.0%}): "
                         "stay in view for the whole capture")
    samples = samples_from_tracked(capture, tracked)
    grey = cv2.cvtColor(np.ascontiguousarray(samples.target.reshape(-1, samples.target.shape[2], 3)), cv2.COLOR_RGB2GRAY)
    luminance = float(np.median(grey[np.concatenate(samples.face_mask).astype(bool)]))
    checks = check_capture(samples, luminance)
    checks["face_fraction"] = round(frac, 3)
    progress("checking", 2, 2)

    # the reference: the rest frame, at the capture's own resolution
    cap = cv2.VideoCapture(str(capture))
    cap.set(cv2.CAP_PROP_POS_FRAMES, samples.reference_index)
    ok, bgr = cap.read()
    cap.release()
    if not ok:
        raise SetupError(f"{capture.name}: cannot read back frame {samples.reference_index}")
    rest_rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    with FaceTracker.create(model, mode="image", num_faces=2) as still:
        faces = still.detect_image(rest_rgb)
    calibration = owner_calibration(tracked.blendshapes, tracked.pose_deg)

    settings = {"capture": capture.name, "steps": steps, "lr": FINE_TUNE_LR, "stride": STRIDE,
                "max_frames": MAX_FRAMES, "prior": _short_hash(prior), "basis_warped": _basis_warp_key(BASIS_WARPED)}
    work = work_dir_for(capture, settings, cache_root / "setup" if cache_root else None)
    dev = torch_device(device)
    net = load_prior(prior)
    data = TrainData.stack([samples])
    # the before/after figures: on the true mesh, over an even spread of the capture (each
    # pass over all 1350 frames of a 90 s capture would cost ~20 s of the 5-minute budget)
    report = data.spread(REPORT_SAMPLES)
    before = face_l1(net, report)
    train_on = TrainData.stack(training_samples(samples, tracked, progress=progress, cancel=cancel))
    fine_tune(net, train_on, steps=steps, work=work, settings=settings, device=dev, progress=progress, cancel=cancel)
    after = face_l1(net, report)

    progress("saving", 0, 1)
    # staged beside its final place: the last step is a rename, which only works on one file system
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # named as vcam_me.storage names its temporaries, so a killed set-up's leftovers are
    # skipped by avatar lists and cleared when stale
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        fp32, int8, geometry = export_network(net, data, staging)
        avatar = create_avatar(rest_rgb, faces, staging / "avatar", source_name=source_name or f"setup capture {capture.name}")
        calibration.save(staging / "calibration.json")
        add_network(avatar, fp32, int8, staging / "calibration.json", geometry=geometry)
        try:
            publish_folder(staging / "avatar", out_dir)  # whole or not at all
        except FileExistsError:
            raise SetupError(f"{out_dir} appeared meanwhile: choose a new avatar folder (nothing was changed)") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    progress("saving", 1, 1)
    shutil.rmtree(work, ignore_errors=True)  # done: nothing to resume
    return SetupResult(out_dir, steps, time.monotonic() - t0, dev, checks,
                       {"before": round(before["network"], 3), "after": round(after["network"], 3),
                        "warp_only": round(after["warp_only"], 3)})


def _basis_warp_key(basis_warped: bool) -> int:
    """The checkpoint settings' word on the basis-drawn samples: 0 for none, else the version of
    the drawing, so a checkpoint made from other samples is never resumed."""
    from vcam_me.training.reenact_data import WARPED_BY_BASIS_VERSION

    return WARPED_BY_BASIS_VERSION if basis_warped else 0


def _short_hash(path: Path) -> str:
    from vcam_me.models import sha256_of

    return sha256_of(Path(path))[:16]


def personalise_clip_part(clip: Path, out_dir: Path, *, prior: Path, split: float = 0.6, steps: int = DEFAULT_STEPS,
                          threads: int = 1, cache_root: Path | None = None, progress: Progress = _noop,
                          basis_warped: bool = BASIS_WARPED) -> dict:
    """Fine-tune ``prior`` on the first ``split`` of ``clip`` only (the evaluation's
    personalised renderer, scored on the held-back rest). Returns the ONNX files, the rest
    frame the avatar is to be made from (in the first part), the first held-back video frame
    and the face L1 on the held-back part before and after fine-tuning."""
    import torch

    from vcam_me.training.reenact_data import default_cache_dir, load_tracked, samples_from_tracked
    from vcam_me.training.train_prior import TrainData, face_l1

    torch.set_num_threads(max(1, threads))
    cache = (cache_root / "reenact") if cache_root else default_cache_dir()
    tracked = load_tracked(clip, max_frames=MAX_FRAMES, stride=STRIDE, cache_dir=cache)
    first = samples_from_tracked(clip, tracked, split=split, part="first")
    rest = samples_from_tracked(clip, tracked, split=split, part="rest")
    settings = {"capture": clip.name, "steps": steps, "lr": FINE_TUNE_LR, "stride": STRIDE, "max_frames": MAX_FRAMES,
                "prior": _short_hash(prior), "split": split, "basis_warped": _basis_warp_key(basis_warped)}
    work = work_dir_for(clip, settings, cache_root / "setup" if cache_root else None)
    net = load_prior(prior)
    held = TrainData.stack([rest])
    before = face_l1(net, held)
    train_on = TrainData.stack(training_samples(first, tracked, basis_warped))
    fine_tune(net, train_on, steps=steps, work=work, settings=settings, device=torch_device(), progress=progress)
    after = face_l1(net, held)
    out_dir.mkdir(parents=True, exist_ok=True)
    fp32, int8, geometry = export_network(net, train_on, out_dir)
    return {"fp32": fp32, "int8": int8, "geometry": geometry, "reference_frame": first.reference_index,
            "first_held_back_frame": int(rest.frame_index.min()),
            "held_back_face_l1": {"warp_only": round(before["warp_only"], 3), "prior": round(before["network"], 3),
                                  "personalised": round(after["network"], 3)}}
