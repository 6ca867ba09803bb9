"""Per-user calibration: a neutral baseline and an optional range for each AU channel.

The baseline is a slow running low percentile: it falls quickly to a lower value (the face
relaxed) and creeps up only slowly, so a held smile is not absorbed into "neutral" while a
resting frown or squint that never goes away is. A calibrated maximum (from the setup
wizard's "as strong as you can" prompts) maps one person's full smile to the avatar's full
smile; without one, intensities are the tracker's change from neutral, unscaled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vcam_me.errors import ConfigError
from vcam_me.storage import atomic_write_text
from vcam_me.types import AU_CHANNELS


@dataclass
class Calibration:
    """Saved per-user calibration. Arrays are ``(len(AU_CHANNELS),) float32``.

    ``pose_zero`` is the user's neutral head pose (yaw, pitch, roll in degrees), if known.
    """

    baseline: np.ndarray
    maximum: np.ndarray | None = None
    pose_zero: np.ndarray | None = None

    @classmethod
    def from_observations(cls, observations, low_percentile: float = 5.0) -> "Calibration | None":
        """Neutral baseline and pose from a recording of the user (every frame with a face).

        The baseline is each channel's low percentile: the face at its most relaxed, ignoring
        the odd tracker glitch. The neutral pose is the median pose. ``None`` if no face.
        """
        from vcam_me.expression.action_units import raw_channels
        from vcam_me.geometry import pose_from_transform

        faces = [o for o in observations if o.has_face and o.blendshapes is not None]
        if not faces:
            return None
        raw = raw_channels(np.stack([o.blendshapes for o in faces]))
        poses = [pose_from_transform(o.transform) for o in faces if o.transform is not None]
        pose_zero = np.median(np.stack(poses), axis=0).astype(np.float32) if poses else None
        return cls(np.percentile(raw, low_percentile, axis=0).astype(np.float32), None, pose_zero)

    def save(self, path: Path) -> None:
        data = {
            "channels": list(AU_CHANNELS),
            "baseline": [round(float(v), 5) for v in self.baseline],
            "maximum": None if self.maximum is None else [round(float(v), 5) for v in self.maximum],
            "pose_zero": None if self.pose_zero is None else [round(float(v), 4) for v in self.pose_zero],
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(data, indent=1))

    @classmethod
    def load(cls, path: Path) -> "Calibration":
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            channels = data["channels"]
            with np.errstate(over="ignore"):  # a number too big for float32 becomes inf, refused below
                baseline = np.array(data["baseline"], np.float32)
                maximum = None if data.get("maximum") is None else np.array(data["maximum"], np.float32)
                pose_zero = None if data.get("pose_zero") is None else np.array(data["pose_zero"], np.float32)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            raise ConfigError(f"calibration file {path} is unreadable: {str(err).splitlines()[0][:200]}") from None
        except RecursionError:
            raise ConfigError(f"calibration file {path} is unreadable: nested too deeply") from None
        if not isinstance(channels, list) or channels != list(AU_CHANNELS):
            raise ConfigError(f"calibration file {path} was made for other AU channels; run the setup again")
        for name, values, shape in (("baseline", baseline, (len(AU_CHANNELS),)), ("maximum", maximum, (len(AU_CHANNELS),)),
                                    ("pose_zero", pose_zero, (3,))):
            if values is not None and (values.shape != shape or not np.isfinite(values).all()):
                raise ConfigError(f"calibration file {path}: {name} must be {shape[0]} finite numbers")
        return cls(baseline, maximum, pose_zero)


class NeutralBaseline:
    """Running per-channel low percentile of raw AU values, updated once per camera frame."""

    def __init__(self, fall_rate: float, rise_rate: float, initial: np.ndarray | None = None) -> None:
        self.fall_rate = fall_rate
        self.rise_rate = rise_rate
        self.value: np.ndarray | None = None if initial is None else np.asarray(initial, np.float32).copy()

    def update(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, np.float32)
        if self.value is None:
            self.value = raw.copy()
        else:
            rate = np.where(raw < self.value, self.fall_rate, self.rise_rate).astype(np.float32)
            self.value += rate * (raw - self.value)
        return self.value


def apply_calibration(raw: np.ndarray, baseline: np.ndarray, maximum: np.ndarray | None, gain: float = 1.0) -> np.ndarray:
    """AU intensity in [0, 1] from raw channel values: change from neutral, scaled to the user's range."""
    delta = raw - baseline
    if maximum is not None:
        delta = delta / np.maximum(maximum - baseline, 0.05)
    return np.clip(delta * gain, 0.0, 1.0).astype(np.float32)
