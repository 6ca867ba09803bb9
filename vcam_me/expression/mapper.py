"""Stage ③: face observations (camera clock) → expression states (render clock).

:meth:`ExpressionMapper.update` runs on the tracking thread at the camera's rate; it turns
blendshapes into calibrated, One-Euro-smoothed AU intensities, gaze and head pose.
:meth:`ExpressionMapper.state_at` runs on the render thread at the output rate; it
interpolates between the two newest samples so a 30 fps camera drives a smooth 60 fps avatar.

Interpolation is done at ``render time − delay``. With the delay equal to one camera period
the two samples around that instant are usually both known, so motion is drawn smoothly;
when they are not (a late frame) the newest sample is held rather than extrapolated.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from vcam_me.config import ExpressionOptions
from vcam_me.expression.action_units import Crosswalk, default_crosswalk, fill_derived, gaze_from_blendshapes, raw_channels
from vcam_me.expression.calibration import Calibration, NeutralBaseline, apply_calibration
from vcam_me.expression.one_euro import OneEuroFilter
from vcam_me.geometry import pose_from_transform
from vcam_me.types import AU_CHANNELS, ExpressionState, FaceObservation

# When the face is lost, each camera frame moves the last expression this far toward neutral.
_LOSS_DECAY = 0.25
# Number of tracked frames averaged to fix the user's neutral head pose.
_POSE_BASELINE_FRAMES = 10


#: The soft limit leaves a turn unchanged up to this share of the limit, then bends it over.
_KNEE = 0.6


def soft_limit(angles: np.ndarray, limit_deg: float) -> np.ndarray:
    """Head-pose angles (degrees) bent smoothly into ``(-limit_deg, limit_deg)``.

    Unchanged up to 60 % of the limit, then a tanh knee with the same slope where it starts,
    so a turn toward the limit slows down and stops there instead of hitting a wall. Past
    about 30 degrees (yaw, roll; less for pitch) the portrait warp folds the head over the
    background (rendered with the sample avatar), so a user who turns far or a tracker that
    reads a rolled camera does not drive the avatar into a torn face.
    """
    a = np.asarray(angles, np.float64)
    knee = _KNEE * limit_deg
    span = limit_deg - knee
    bent = np.sign(a) * (knee + span * np.tanh((np.abs(a) - knee) / span))
    return np.where(np.abs(a) <= knee, a, bent).astype(np.float32)


@dataclass(frozen=True)
class _Sample:
    t_ms: int
    au: np.ndarray
    gaze: np.ndarray
    pose: np.ndarray
    face: bool
    baseline: np.ndarray | None


class ExpressionMapper:
    """Holds calibration and filter state; thread-safe between one writer and one reader."""

    def __init__(
        self,
        options: ExpressionOptions | None = None,
        calibration: Calibration | None = None,
        crosswalk: Crosswalk | None = None,
        *,
        adapt_baseline: bool = True,
    ) -> None:
        """``adapt_baseline=False`` keeps the calibration's baseline fixed (offline rendering
        of a recording calibrated from itself); otherwise it is refined online."""
        self.options = options or ExpressionOptions()
        self.crosswalk = crosswalk or default_crosswalk()
        self.maximum = None if calibration is None else calibration.maximum
        o = self.options
        self._baseline = NeutralBaseline(o.baseline_fall_rate, o.baseline_rise_rate, None if calibration is None else calibration.baseline)
        self._au_filter = OneEuroFilter(o.min_cutoff_hz, o.beta, o.derivative_cutoff_hz)
        self._gaze_filter = OneEuroFilter(o.min_cutoff_hz, o.beta, o.derivative_cutoff_hz)
        self._pose_filter = OneEuroFilter(o.pose_min_cutoff_hz, o.pose_beta, o.derivative_cutoff_hz)
        self._pose_samples: list[np.ndarray] = []
        self._pose_zero: np.ndarray | None = None if calibration is None else calibration.pose_zero
        self.adapt_baseline = adapt_baseline
        if not adapt_baseline and calibration is None:
            raise ValueError("a fixed baseline needs a calibration")
        self._lock = threading.Lock()
        self._prev: _Sample | None = None
        self._last: _Sample | None = None
        self._period_ms = 33.3  # running estimate of the camera period

    # -- camera clock ----------------------------------------------------------------------
    def update(self, obs: FaceObservation) -> None:
        """Take one tracker result (possibly empty). Call in capture-timestamp order."""
        last = self._last
        if last is not None and obs.timestamp_ms <= last.t_ms:
            return
        if obs.has_face and obs.blendshapes is not None:
            sample = self._tracked_sample(obs)
        else:
            sample = self._lost_sample(obs.timestamp_ms)
        with self._lock:
            if self._last is not None:
                dt = sample.t_ms - self._last.t_ms
                if 0 < dt < 250:
                    self._period_ms += 0.1 * (dt - self._period_ms)
            self._prev, self._last = self._last, sample

    def _tracked_sample(self, obs: FaceObservation) -> _Sample:
        t = obs.timestamp_ms
        raw = raw_channels(obs.blendshapes, self.crosswalk)
        base = self._baseline.update(raw) if self.adapt_baseline else self._baseline.value
        au = apply_calibration(raw, base, self.maximum, self.options.gain)
        au = np.clip(self._au_filter(au, t), 0.0, 1.0)
        fill_derived(au, self.crosswalk)
        gaze = np.clip(self._gaze_filter(gaze_from_blendshapes(obs.blendshapes, self.crosswalk), t), -1, 1)
        pose = np.zeros(3, np.float32)
        if obs.transform is not None:
            angles = pose_from_transform(obs.transform).astype(np.float32)
            if self._pose_zero is None:
                self._pose_samples.append(angles)
                if len(self._pose_samples) >= _POSE_BASELINE_FRAMES:
                    self._pose_zero = np.mean(self._pose_samples, axis=0).astype(np.float32)
            zero = self._pose_zero if self._pose_zero is not None else np.mean(self._pose_samples, axis=0)
            pose = soft_limit(self._pose_filter(angles - zero, t), self.options.max_head_turn_deg)
        return _Sample(t, au.astype(np.float32), gaze.astype(np.float32), pose.astype(np.float32), True, base.copy())

    def _lost_sample(self, t_ms: int) -> _Sample:
        last = self._last
        # Filters restart on re-acquisition so the avatar does not lag behind the returning face.
        self._au_filter.reset()
        self._gaze_filter.reset()
        self._pose_filter.reset()
        if last is None:
            z = np.zeros(len(AU_CHANNELS), np.float32)
            return _Sample(t_ms, z, np.zeros((2, 2), np.float32), np.zeros(3, np.float32), False, None)
        keep = 1.0 - _LOSS_DECAY
        return _Sample(t_ms, last.au * keep, last.gaze * keep, last.pose * keep, False, last.baseline)

    # -- render clock ----------------------------------------------------------------------
    @property
    def interpolation_delay_ms(self) -> float:
        d = self.options.interpolation_delay_ms
        return float(min(max(self._period_ms, 8.0), 100.0)) if d == "auto" else float(d)

    def state_at(self, t_ms: int) -> ExpressionState:
        """The expression to draw at render time ``t_ms``."""
        with self._lock:
            prev, last = self._prev, self._last
        if last is None:
            return ExpressionState.neutral(t_ms)
        tau = t_ms - self.interpolation_delay_ms
        if prev is None or tau >= last.t_ms:
            w = 1.0
        elif tau <= prev.t_ms:
            w = 0.0
        else:
            w = (tau - prev.t_ms) / (last.t_ms - prev.t_ms)
        if w >= 1.0 or prev is None:
            au, gaze, pose, src = last.au, last.gaze, last.pose, last.t_ms
        elif w <= 0.0:
            au, gaze, pose, src = prev.au, prev.gaze, prev.pose, prev.t_ms
        else:
            au = prev.au + w * (last.au - prev.au)
            gaze = prev.gaze + w * (last.gaze - prev.gaze)
            pose = prev.pose + w * (last.pose - prev.pose)
            src = last.t_ms
        au = np.asarray(au, np.float32)
        return ExpressionState(
            timestamp_ms=t_ms,
            au=au,
            gaze=np.asarray(gaze, np.float32),
            head_pose=np.asarray(pose, np.float32),
            source_timestamp_ms=src,
            face_present=last.face and not self._stale(last, t_ms),
            components={
                "tracked": au,
                "injected": np.zeros_like(au),
                "idle": np.zeros_like(au),
            },
            baseline=last.baseline,
        )

    def _stale(self, last: _Sample, t_ms: int) -> bool:
        """True when the newest sample is too old to stand for the face now: the camera has
        stalled or frozen, and holding its last expression would look like a frozen call."""
        return t_ms - self.interpolation_delay_ms - last.t_ms > self.options.stale_after_ms
