"""The fitted AU → face-mesh displacement basis (``models/au_basis.npz``).

Made by :mod:`vcam_me.training.fit_au_basis` from real driving videos. Each feature (the
driving AU channels, then gaze ``left_h, left_v, right_h, right_v``) moves the 478 landmarks
linearly, in MediaPipe's canonical, pose-normalised frame (x right, y down, z away from the
camera) with the canonical inter-ocular distance as the unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vcam_me.errors import ModelError
from vcam_me.types import AU_INDEX, DRIVING_AU_CHANNELS, NUM_LANDMARKS, ExpressionState

GAZE_FEATURES = ("gaze_left_h", "gaze_left_v", "gaze_right_h", "gaze_right_v")
FEATURE_NAMES: tuple[str, ...] = DRIVING_AU_CHANNELS + GAZE_FEATURES
_DRIVING_INDEX = np.array([AU_INDEX[c] for c in DRIVING_AU_CHANNELS])


def state_features(state: ExpressionState) -> np.ndarray:
    """``(len(FEATURE_NAMES),) float32``: driving AUs clipped to [0, 1], then gaze in [-1, 1]."""
    au = np.clip(np.asarray(state.au, np.float32)[_DRIVING_INDEX], 0.0, 1.0)
    gaze = np.clip(np.asarray(state.gaze, np.float32).reshape(4), -1.0, 1.0)
    return np.concatenate([au, gaze])


@dataclass(frozen=True)
class AUBasis:
    """Attributes:
        basis: ``(len(FEATURE_NAMES), 478, 3) float32`` displacement per unit feature (IOD).
        gain: ``(len(FEATURE_NAMES),) float32`` closed-loop gain per feature (what the
            renderer multiplies each feature by, so that MediaPipe reads back on the render
            what it read on the driver; calibrated by :mod:`vcam_me.training.calibrate_gains`).
        pose_gain: ``(3,) float32`` the same for yaw, pitch, roll.
        pose_coupling: ``(3, len(FEATURE_NAMES)) float32`` degrees of yaw, pitch, roll that
            MediaPipe reads on the render per unit feature when the head does not turn (a
            deformed face reads as slightly turned). The driver's pose already carries the
            same kind of reading, so the renderer subtracts this to avoid counting it twice.
        mixing: ``(len(FEATURE_NAMES), len(FEATURE_NAMES)) float32`` cross-talk compensation
            (the renderer drives ``gain · (mixing @ features)``): MediaPipe reads one AU on the
            render partly as others and the two sides unevenly, so a commanded feature is
            drawn as a blend that reads back as itself (calibrated by
            :mod:`vcam_me.training.calibrate_mixing`). Identity when absent.
    """

    basis: np.ndarray
    gain: np.ndarray | None = None
    pose_gain: np.ndarray | None = None
    pose_coupling: np.ndarray | None = None
    mixing: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.pose_coupling is None:
            object.__setattr__(self, "pose_coupling", np.zeros((3, len(FEATURE_NAMES)), np.float32))
        if self.gain is None:
            object.__setattr__(self, "gain", np.ones(len(FEATURE_NAMES), np.float32))
        if self.pose_gain is None:
            object.__setattr__(self, "pose_gain", np.ones(3, np.float32))
        if self.mixing is None:
            object.__setattr__(self, "mixing", np.eye(len(FEATURE_NAMES), dtype=np.float32))

    @classmethod
    def zeros(cls) -> "AUBasis":
        """A basis that moves nothing (tests; an avatar that only turns its head)."""
        return cls(np.zeros((len(FEATURE_NAMES), NUM_LANDMARKS, 3), np.float32))

    @classmethod
    def load(cls, path: str | Path | None = None) -> "AUBasis":
        """Load ``path``, or the shipped ``au_basis`` after checking its manifest hash."""
        if path is None:
            from vcam_me.models import verified_model_path

            path = verified_model_path("au_basis")
        try:
            with np.load(path, allow_pickle=False) as data:
                basis = data["basis"].astype(np.float32)
                names = tuple(str(n) for n in data["feature_names"])
                gain = data["gain"].astype(np.float32) if "gain" in data else None
                pose_gain = data["pose_gain"].astype(np.float32) if "pose_gain" in data else None
                coupling = data["pose_coupling"].astype(np.float32) if "pose_coupling" in data else None
                mixing = data["mixing"].astype(np.float32) if "mixing" in data else None
        except (OSError, KeyError, ValueError) as err:
            raise ModelError(f"AU basis {path} cannot be read: {err}") from None
        if names != FEATURE_NAMES or basis.shape != (len(FEATURE_NAMES), NUM_LANDMARKS, 3):
            raise ModelError(f"AU basis {path} does not match this version's AU channels; refit it")
        if gain is not None and gain.shape != (len(FEATURE_NAMES),) or pose_gain is not None and pose_gain.shape != (3,):
            raise ModelError(f"AU basis {path} has gains of the wrong shape; refit it")
        if coupling is not None and coupling.shape != (3, len(FEATURE_NAMES)):
            raise ModelError(f"AU basis {path} has a pose coupling of the wrong shape; refit it")
        n = len(FEATURE_NAMES)
        if mixing is not None and (mixing.shape != (n, n) or not np.isfinite(mixing).all()):
            raise ModelError(f"AU basis {path} has a mixing matrix of shape {mixing.shape}, expected ({n}, {n}) "
                             "finite values; recalibrate it")
        return cls(basis, gain, pose_gain, coupling, mixing)

    def as_measured(self) -> "AUBasis":
        """This basis without its closed-loop gains and cross-talk mixing: each feature moves
        the mesh by what was measured on real faces, the head-pose terms unchanged.

        The gains and mixing were calibrated on avatars driven by *other* people, whose
        expressions MediaPipe reads weakly and coupled on a warped photo of another face. On a
        face driven by its own person the measured motion already reads back right, and the
        gains overdraw it (self-reenactment of 10 clips with the warp, benchmarks/README.md,
        "Driven by its own face": AED ratio and eye-region SSIM better on all 10)."""
        return AUBasis(self.basis, None, self.pose_gain, self.pose_coupling, None)
