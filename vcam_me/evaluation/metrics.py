"""Closed-loop expression-fidelity metrics (``docs/metrics.md``, "Expression fidelity").

Pure functions on arrays: the driver's per-frame tracker output and the re-tracked avatar
output, frame-aligned. Nothing here tracks, renders or maps blendshapes to AUs; the caller
hands in AU intensities it computed with the project's crosswalk, so this module imports no
stage.

Inputs and conventions:

* blendshapes ``(N, 52)`` in :data:`vcam_me.types.BLENDSHAPE_NAMES` order;
* facial transformation matrices ``(N, 4, 4)``;
* AU intensities ``(N, K)`` with ``K`` channel names;
* a frame without a face is a row of NaN (or ``False`` in an optional ``(N,)`` mask).
  Frame-pair metrics use the frames where *both* sides have a face; each side's rest state
  and median pose use that side's own face frames.

Definitions:

* **rest state** of a side: per-channel 5th percentile over the clip (:func:`rest_state`);
* **AED**: mean over frames and channels (``_neutral`` left out) of
  ``|(B_out − rest_out) − (B_drv − rest_drv)|``;
* **frozen AED**: the AED the same clip scores when the output is one still frame
  of the avatar, i.e. a constant output. A constant's 5th percentile is itself, so its
  changes are all zero and the frozen AED equals ``mean |B_drv − rest_drv|`` whatever still
  frame is chosen. :func:`frozen_aed` computes it literally (builds the constant output and
  calls :func:`aed`), so the baseline always follows the metric's definition;
* **AED ratio** = AED / frozen AED: 0 is perfect transfer, 1 no transfer at all;
* **APD**, frozen APD, APD ratio: the same on (yaw, pitch, roll) in degrees from
  :func:`vcam_me.geometry.pose_from_transform`, with changes taken from each side's per-clip
  median pose (angle differences wrapped to ±180°);
* **per-AU Pearson r** between driver and output AU intensities, for every AU whose driver
  range (max − min over the compared frames) exceeds 0.2. An output channel that does not
  move at all has no defined r; it scores 0.0 so that it fails a target instead of being
  skipped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from vcam_me.geometry import pose_from_transform
from vcam_me.types import BLENDSHAPE_NAMES

#: Percentile that defines a side's rest state.
REST_PERCENTILE = 5.0
#: Channels left out of AED (``_neutral`` is not an expression).
AED_EXCLUDED_CHANNELS: tuple[str, ...] = ("_neutral",)
#: An AU takes part in the Pearson check when its driver range exceeds this.
MOVING_AU_RANGE = 0.2


# -- masks and basic statistics --------------------------------------------------------------
def face_rows(values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """``(N,) bool``: rows that are entirely finite (and ``True`` in ``mask`` when given)."""
    arr = np.asarray(values, dtype=np.float64)
    rows = np.isfinite(arr.reshape(arr.shape[0], -1)).all(axis=1)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != rows.shape:
            raise ValueError(f"mask has shape {mask.shape}, expected {rows.shape}")
        rows &= mask
    return rows


def rest_state(values: np.ndarray, rows: np.ndarray | None = None,
               percentile: float = REST_PERCENTILE) -> np.ndarray:
    """Per-channel ``percentile`` over the rows with a face: ``(N, K) → (K,)`` (NaN if none)."""
    arr = _as_2d(values, "values")
    rows = face_rows(arr) if rows is None else np.asarray(rows, dtype=bool) & face_rows(arr)
    if not rows.any():
        return np.full(arr.shape[1], np.nan)
    return np.percentile(arr[rows], percentile, axis=0)


def head_pose(transforms: np.ndarray) -> np.ndarray:
    """``(N, 4, 4)`` facial transformation matrices → ``(N, 3)`` yaw, pitch, roll in degrees.

    Rows whose matrix is not finite stay NaN.
    """
    tf = np.asarray(transforms, dtype=np.float64)
    if tf.ndim != 3 or tf.shape[1:] != (4, 4):
        raise ValueError(f"transforms must be (N, 4, 4), got {tf.shape}")
    out = np.full((tf.shape[0], 3), np.nan)
    for i, m in enumerate(tf):
        if np.isfinite(m).all():
            out[i] = pose_from_transform(m)
    return out


def _wrap_deg(x: np.ndarray) -> np.ndarray:
    return (np.asarray(x) + 180.0) % 360.0 - 180.0


def _as_2d(values: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be (N, K), got shape {arr.shape}")
    return arr


def _check_pair(drv: np.ndarray, out: np.ndarray, what: str) -> None:
    if drv.shape != out.shape:
        raise ValueError(f"driver and output {what} differ in shape: {drv.shape} vs {out.shape}")


def _channel_keep(n_channels: int, channel_names: Sequence[str] | None, exclude: Sequence[str]) -> np.ndarray:
    if channel_names is None:
        channel_names = BLENDSHAPE_NAMES if n_channels == len(BLENDSHAPE_NAMES) else ()
    if channel_names and len(channel_names) != n_channels:
        raise ValueError(f"{len(channel_names)} channel names for {n_channels} channels")
    keep = np.ones(n_channels, dtype=bool)
    for i, name in enumerate(channel_names):
        if name in exclude:
            keep[i] = False
    return keep


# -- AED -------------------------------------------------------------------------------------
def aed(drv: np.ndarray, out: np.ndarray, *, drv_mask: np.ndarray | None = None,
        out_mask: np.ndarray | None = None, compare_mask: np.ndarray | None = None,
        channel_names: Sequence[str] | None = None,
        exclude: Sequence[str] = AED_EXCLUDED_CHANNELS) -> float:
    """Average expression distance on changes from each side's rest state.

    Args:
        drv, out: ``(N, K)`` frame-aligned scores (blendshapes by default: with ``K = 52``
            the channel names default to MediaPipe's and ``_neutral`` is left out).
        drv_mask, out_mask: ``(N,)`` True where that side has a face (NaN rows count as
            no face anyway).
        compare_mask: ``(N,)`` frames allowed in the average (e.g. False inside injected
            micro-expressions); rest states still use every face frame.

    Returns:
        The mean absolute difference, or NaN when no frame has a face on both sides.
    """
    per_channel = aed_per_channel(drv, out, drv_mask=drv_mask, out_mask=out_mask, compare_mask=compare_mask)
    if per_channel is None:
        return math.nan
    keep = _channel_keep(per_channel.size, channel_names, exclude)
    return float(np.mean(per_channel[keep]))


def aed_per_channel(drv: np.ndarray, out: np.ndarray, *, drv_mask: np.ndarray | None = None,
                    out_mask: np.ndarray | None = None,
                    compare_mask: np.ndarray | None = None) -> np.ndarray | None:
    """``(K,)`` mean absolute difference of changes from rest, per channel (what :func:`aed`
    averages); ``None`` when no frame has a face on both sides."""
    drv, out = _as_2d(drv, "driver"), _as_2d(out, "output")
    _check_pair(drv, out, "scores")
    drv_rows, out_rows = face_rows(drv, drv_mask), face_rows(out, out_mask)
    both = _compared_rows(drv_rows, out_rows, compare_mask)
    if not both.any():
        return None
    d = drv - rest_state(drv, drv_rows)
    o = out - rest_state(out, out_rows)
    return np.mean(np.abs(o[both] - d[both]), axis=0)


def aed_largest_channels(drv: np.ndarray, out: np.ndarray, *, top: int = 8,
                         drv_mask: np.ndarray | None = None, out_mask: np.ndarray | None = None,
                         compare_mask: np.ndarray | None = None,
                         channel_names: Sequence[str] | None = None,
                         exclude: Sequence[str] = AED_EXCLUDED_CHANNELS) -> dict[str, dict[str, float]]:
    """The ``top`` channels that add most to AED, largest first: ``{name: {"error": e,
    "frozen": f}}``, with ``frozen`` what a still avatar scores on that channel. A channel
    whose error exceeds its frozen score moves the wrong way or when the driver does not
    (an expression drawn as another); one with error close to frozen barely moves."""
    drv, out = _as_2d(drv, "driver"), _as_2d(out, "output")
    error = aed_per_channel(drv, out, drv_mask=drv_mask, out_mask=out_mask, compare_mask=compare_mask)
    if error is None:
        return {}
    still = aed_per_channel(drv, _seen_still(out, out_mask), drv_mask=drv_mask, compare_mask=compare_mask)
    keep = _channel_keep(error.size, channel_names, exclude)
    names = list(channel_names) if channel_names is not None else (
        list(BLENDSHAPE_NAMES) if error.size == len(BLENDSHAPE_NAMES) else [str(i) for i in range(error.size)])
    order = [i for i in np.argsort(-error) if keep[i]][:top]
    return {names[i]: {"error": round(float(error[i]), 4), "frozen": round(float(still[i]), 4)} for i in order}


def frozen_output(out: np.ndarray, out_mask: np.ndarray | None = None) -> np.ndarray:
    """What a frozen avatar's re-tracked output looks like: one still frame, repeated.

    The still frame is the output's first frame with a face (zeros when there is none).
    Works for ``(N, K)`` scores and ``(N, 4, 4)`` matrices alike.
    """
    arr = np.asarray(out, dtype=np.float64)
    rows = face_rows(arr, out_mask)
    still = arr[int(np.argmax(rows))] if rows.any() else np.zeros(arr.shape[1:])
    return np.broadcast_to(still, arr.shape).copy()


def frozen_aed(drv: np.ndarray, out: np.ndarray | None = None, *, drv_mask: np.ndarray | None = None,
               out_mask: np.ndarray | None = None, compare_mask: np.ndarray | None = None,
               channel_names: Sequence[str] | None = None,
               exclude: Sequence[str] = AED_EXCLUDED_CHANNELS) -> float:
    """The AED a frozen avatar scores on this clip, over the same frames as :func:`aed`.

    The frozen output is one still frame (see :func:`frozen_output`); it has a face in the
    frames where the real output has one, so the ratio compares like with like. Because a
    constant has no change from its own rest, this equals ``mean |B_drv − rest_drv|``.
    """
    drv = _as_2d(drv, "driver")
    out = drv if out is None else _as_2d(out, "output")
    _check_pair(drv, out, "scores")
    return aed(drv, _seen_still(out, out_mask), drv_mask=drv_mask, compare_mask=compare_mask,
               channel_names=channel_names, exclude=exclude)


def _seen_still(out: np.ndarray, out_mask: np.ndarray | None) -> np.ndarray:
    """The frozen avatar's scores (:func:`frozen_output`), NaN where the real output had no
    face: the still avatar is "seen" exactly where the real one was."""
    frozen = frozen_output(out, out_mask)
    frozen[~face_rows(out, out_mask)] = np.nan
    return frozen


# -- APD -------------------------------------------------------------------------------------
def _pose_changes(pose: np.ndarray, rows: np.ndarray) -> np.ndarray:
    if not rows.any():
        return np.full_like(pose, np.nan)
    centre = np.median(pose[rows], axis=0)
    return _wrap_deg(pose - centre)


def apd(drv_transforms: np.ndarray, out_transforms: np.ndarray, *, drv_mask: np.ndarray | None = None,
        out_mask: np.ndarray | None = None, compare_mask: np.ndarray | None = None) -> float:
    """Average pose distance (degrees) on yaw/pitch/roll changes from each side's median pose."""
    drv_pose, out_pose = head_pose(drv_transforms), head_pose(out_transforms)
    _check_pair(drv_pose, out_pose, "transforms")
    return _apd_from_pose(drv_pose, out_pose, drv_mask, out_mask, compare_mask)


def _compared_rows(drv_rows: np.ndarray, out_rows: np.ndarray, compare_mask) -> np.ndarray:
    """Frames with a face on both sides, restricted to ``compare_mask`` when given."""
    both = drv_rows & out_rows
    if compare_mask is not None:
        both &= np.asarray(compare_mask, dtype=bool)
    return both


def _apd_from_pose(drv_pose, out_pose, drv_mask, out_mask, compare_mask) -> float:
    drv_rows, out_rows = face_rows(drv_pose, drv_mask), face_rows(out_pose, out_mask)
    both = _compared_rows(drv_rows, out_rows, compare_mask)
    if not both.any():
        return math.nan
    d = _pose_changes(drv_pose, drv_rows)
    o = _pose_changes(out_pose, out_rows)
    return float(np.mean(np.abs(_wrap_deg(o[both] - d[both]))))


def frozen_apd(drv_transforms: np.ndarray, out_transforms: np.ndarray | None = None, *,
               drv_mask: np.ndarray | None = None, out_mask: np.ndarray | None = None,
               compare_mask: np.ndarray | None = None) -> float:
    """The APD a frozen avatar (one still pose) scores: ``mean |Δpose_drv|`` over the same frames."""
    drv_t = np.asarray(drv_transforms, dtype=np.float64)
    out_t = drv_t if out_transforms is None else np.asarray(out_transforms, dtype=np.float64)
    rows = face_rows(out_t, out_mask)
    frozen = frozen_output(out_t, out_mask)
    frozen[~rows] = np.nan
    return apd(drv_t, frozen, drv_mask=drv_mask, compare_mask=compare_mask)


# -- per-AU correlation ----------------------------------------------------------------------
def pearson_r(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of two 1-D series; 0.0 when ``y`` is constant, NaN when ``x`` is."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.size < 2:
        return math.nan
    if np.ptp(x) == 0.0:  # exact test: a mean-subtracted constant can leave rounding noise
        return math.nan
    if np.ptp(y) == 0.0:
        return 0.0
    dx, dy = x - x.mean(), y - y.mean()
    sx, sy = math.sqrt(float(dx @ dx)), math.sqrt(float(dy @ dy))
    return float(np.clip((dx @ dy) / (sx * sy), -1.0, 1.0))


def per_au_pearson(drv_au: np.ndarray, out_au: np.ndarray, channel_names: Sequence[str], *,
                   drv_mask: np.ndarray | None = None, out_mask: np.ndarray | None = None,
                   compare_mask: np.ndarray | None = None,
                   min_range: float = MOVING_AU_RANGE) -> dict[str, float]:
    """Pearson r per AU, for every AU whose driver range over the compared frames exceeds ``min_range``.

    Args:
        drv_au, out_au: ``(N, K)`` AU intensities in [0, 1], frame-aligned.
        channel_names: the ``K`` AU names (keys of the result, in this order).

    Returns:
        ``{name: r}`` for the moving AUs only (see the module docstring for constant output).
    """
    drv, out = _as_2d(drv_au, "driver AUs"), _as_2d(out_au, "output AUs")
    _check_pair(drv, out, "AUs")
    if len(channel_names) != drv.shape[1]:
        raise ValueError(f"{len(channel_names)} channel names for {drv.shape[1]} AU channels")
    both = face_rows(drv, drv_mask) & face_rows(out, out_mask)
    if compare_mask is not None:
        both &= np.asarray(compare_mask, dtype=bool)
    result: dict[str, float] = {}
    if both.sum() < 2:
        return result
    d, o = drv[both], out[both]
    for k, name in enumerate(channel_names):
        if float(d[:, k].max() - d[:, k].min()) > min_range:
            result[name] = pearson_r(d[:, k], o[:, k])
    return result


def per_au_pearson_from_blendshapes(drv_blend: np.ndarray, out_blend: np.ndarray,
                                    au_from_blendshapes: Callable[[np.ndarray], np.ndarray],
                                    channel_names: Sequence[str], **kwargs) -> dict[str, float]:
    """:func:`per_au_pearson` after mapping both sides with ``au_from_blendshapes`` ``(N, 52) → (N, K)``.

    Rows without a face stay without a face (the mapping only sees face rows).
    """
    def convert(blend: np.ndarray) -> np.ndarray:
        blend = _as_2d(blend, "blendshapes")
        rows = face_rows(blend)
        au = np.full((blend.shape[0], len(channel_names)), np.nan)
        if rows.any():
            au[rows] = np.asarray(au_from_blendshapes(blend[rows]), dtype=np.float64)
        return au

    return per_au_pearson(convert(drv_blend), convert(out_blend), channel_names, **kwargs)


# -- report ----------------------------------------------------------------------------------
def _ratio(num: float, den: float) -> float:
    if not (math.isfinite(num) and math.isfinite(den)) or den <= 0.0:
        return math.nan
    return num / den


def _json_float(x: float | None, digits: int = 6) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), digits)


@dataclass
class MetricsReport:
    """Closed-loop expression fidelity of one clip. NaN means "not defined on this clip".

    Attributes:
        aed, frozen_aed, aed_ratio: blendshape distance, its frozen-avatar baseline and ratio.
        apd, frozen_apd, apd_ratio: head-pose distance (degrees), baseline and ratio.
        pearson_r: ``{AU: r}`` for the AUs whose driver range exceeds :data:`MOVING_AU_RANGE`.
        frames: frames in the clip; ``driver_face_frames`` / ``output_face_frames``: frames
            where each side has a face; ``compared_frames``: frames both have (and allowed).
    """

    aed: float
    frozen_aed: float
    aed_ratio: float
    apd: float
    frozen_apd: float
    apd_ratio: float
    pearson_r: dict[str, float] = field(default_factory=dict)
    frames: int = 0
    driver_face_frames: int = 0
    output_face_frames: int = 0
    compared_frames: int = 0
    aed_largest: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def min_pearson_r(self) -> float:
        values = [v for v in self.pearson_r.values() if math.isfinite(v)]
        return min(values) if values else math.nan

    def to_dict(self) -> dict:
        """Plain JSON-ready values; NaN becomes ``None``."""
        row = asdict(self)
        for key, value in row.items():
            if isinstance(value, float):
                row[key] = _json_float(value)
        row["pearson_r"] = {k: _json_float(v, 4) for k, v in self.pearson_r.items()}
        row["min_pearson_r"] = _json_float(self.min_pearson_r, 4)
        row["definitions"] = {
            "rest_percentile": REST_PERCENTILE,
            "aed_excluded_channels": list(AED_EXCLUDED_CHANNELS),
            "moving_au_range": MOVING_AU_RANGE,
            "frozen_baseline": "one still output frame repeated (its changes are zero)",
        }
        return row


def closed_loop_report(drv_blend: np.ndarray, drv_transforms: np.ndarray, out_blend: np.ndarray,
                       out_transforms: np.ndarray, drv_au: np.ndarray, out_au: np.ndarray,
                       au_names: Sequence[str], *, drv_mask: np.ndarray | None = None,
                       out_mask: np.ndarray | None = None,
                       compare_mask: np.ndarray | None = None) -> MetricsReport:
    """Every expression-fidelity metric of one clip.

    Args:
        drv_blend, out_blend: ``(N, 52)`` blendshapes, NaN rows where no face.
        drv_transforms, out_transforms: ``(N, 4, 4)``, NaN where no face.
        drv_au, out_au: ``(N, K)`` AU intensities (from the project's crosswalk), NaN where no face.
        au_names: the ``K`` AU channel names.
        drv_mask, out_mask: optional ``(N,)`` face masks (ANDed with the NaN test).
        compare_mask: optional ``(N,)`` frames to score (False e.g. inside injected events).
    """
    drv_b, out_b = _as_2d(drv_blend, "driver blendshapes"), _as_2d(out_blend, "output blendshapes")
    _check_pair(drv_b, out_b, "blendshapes")
    n = drv_b.shape[0]
    for name, arr in (("driver transforms", drv_transforms), ("output transforms", out_transforms),
                      ("driver AUs", drv_au), ("output AUs", out_au)):
        if np.shape(arr)[0] != n:
            raise ValueError(f"{name} have {np.shape(arr)[0]} frames, blendshapes have {n}")
    # One face mask per side for every metric: a frame counts when its blendshapes and pose exist.
    drv_rows = face_rows(drv_b, drv_mask) & face_rows(drv_transforms)
    out_rows = face_rows(out_b, out_mask) & face_rows(out_transforms)
    masks = dict(drv_mask=drv_rows, out_mask=out_rows, compare_mask=compare_mask)
    a = aed(drv_b, out_b, **masks)
    fa = frozen_aed(drv_b, out_b, **masks)
    drv_pose, out_pose = head_pose(drv_transforms), head_pose(out_transforms)
    p = _apd_from_pose(drv_pose, out_pose, drv_rows, out_rows, compare_mask)
    frozen_pose = frozen_output(out_pose, out_rows)
    frozen_pose[~out_rows] = np.nan
    fp = _apd_from_pose(drv_pose, frozen_pose, drv_rows, None, compare_mask)
    rs = per_au_pearson(drv_au, out_au, list(au_names), **masks)
    compared = drv_rows & out_rows
    if compare_mask is not None:
        compared &= np.asarray(compare_mask, dtype=bool)
    return MetricsReport(
        aed=a, frozen_aed=fa, aed_ratio=_ratio(a, fa),
        apd=p, frozen_apd=fp, apd_ratio=_ratio(p, fp),
        pearson_r=rs, frames=n, driver_face_frames=int(drv_rows.sum()),
        output_face_frames=int(out_rows.sum()), compared_frames=int(compared.sum()),
        aed_largest=aed_largest_channels(drv_b, out_b, **masks),
    )


__all__ = [
    "AED_EXCLUDED_CHANNELS", "MOVING_AU_RANGE", "REST_PERCENTILE", "MetricsReport", "aed", "aed_largest_channels",
    "aed_per_channel", "apd",
    "closed_loop_report", "face_rows", "frozen_aed", "frozen_apd", "frozen_output", "head_pose",
    "pearson_r", "per_au_pearson", "per_au_pearson_from_blendshapes", "rest_state",
]
