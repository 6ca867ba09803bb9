"""Per-avatar side balance: a gain per lateral feature so that both sides of *this* face read alike.

The shared AU basis is fitted over several avatars; on any one portrait MediaPipe may read a
feature drawn on the left side weaker or stronger than the same feature drawn on the right
(the sample's left lip stretcher read at a third of its right). The balance is measured on
the avatar itself, outside this package (the measurement needs the tracker; see
:mod:`vcam_me.side_balance`), and stored in the avatar folder as ``side_balance.json``:
the renderer only multiplies its feature gain by these numbers.

``side_balance.json``::

    {"format": "vcam_me.side_balance", "version": 1,
     "basis_sha256": "...",          # the AU basis it was measured with (stale when it changes)
     "intensity": 0.3,                # the feature value drawn for the measurement
     "gains": {"AU20_L": 1.6, "AU20_R": 0.62, ...},   # lateral features only; absent = 1
     "readings": {"AU20_L": 0.04, ...},               # what each side read before (evidence)
     "made_by": "..."}                # the command that wrote it
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from vcam_me.avatar.basis import FEATURE_NAMES
from vcam_me.errors import AvatarError

FILE_NAME = "side_balance.json"
FORMAT = "vcam_me.side_balance"
VERSION = 1
#: A stored gain outside this range is refused as damaged (the calibration bounds its own
#: gains tighter, 0.5–2.0 by default).
ACCEPTED_GAIN_RANGE = (0.25, 4.0)
#: The features that have a left and a right version: ``(left, right)`` name pairs.
LATERAL_PAIRS: tuple[tuple[str, str], ...] = tuple(
    (name, name[:-2] + "_R") for name in FEATURE_NAMES if name.endswith("_L") and name[:-2] + "_R" in FEATURE_NAMES
)
_LATERAL = frozenset(n for pair in LATERAL_PAIRS for n in pair)


@dataclass(frozen=True)
class SideBalance:
    """Gains per lateral feature (absent ones are 1) and how they were measured."""

    gains: dict[str, float] = field(default_factory=dict)
    basis_sha256: str = ""
    intensity: float = 0.0
    readings: dict[str, float] = field(default_factory=dict)
    made_by: str = ""

    def vector(self) -> np.ndarray:
        """``(len(FEATURE_NAMES),) float32``: the gain of every feature, 1 where none is stored."""
        out = np.ones(len(FEATURE_NAMES), np.float32)
        for name, gain in self.gains.items():
            out[FEATURE_NAMES.index(name)] = gain
        return out

    def to_json(self) -> str:
        body = {"format": FORMAT, "version": VERSION, "basis_sha256": self.basis_sha256,
                "intensity": self.intensity, "gains": self.gains, "readings": self.readings,
                "made_by": self.made_by}
        return json.dumps(body, indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str, origin: str = FILE_NAME) -> SideBalance:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as err:
            raise AvatarError(f"{origin} cannot be read: {str(err).splitlines()[0][:200]}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise AvatarError(f"{origin} is not a vcam_me side balance")
        if data.get("version") != VERSION:
            raise AvatarError(f"{origin}: side balance version {data.get('version')!r} is not supported (expected {VERSION})")
        gains = data.get("gains")
        if not isinstance(gains, dict):
            raise AvatarError(f"{origin}: 'gains' must be a table of feature name → gain")
        low, high = ACCEPTED_GAIN_RANGE
        for name, gain in gains.items():
            if name not in _LATERAL:
                raise AvatarError(f"{origin}: {str(name)[:40]!r} is not a left or right feature of the AU basis")
            if not _is_number(gain) or not low <= gain <= high:
                raise AvatarError(f"{origin}: gain of {name} must be a number in [{low}, {high}], got {gain!r}"[:200])
        readings = data.get("readings", {})
        if not isinstance(readings, dict) or not all(_is_number(v) for v in readings.values()):
            raise AvatarError(f"{origin}: 'readings' must be a table of feature name → number")
        intensity = data.get("intensity", 0.0)
        basis = data.get("basis_sha256", "")
        made_by = data.get("made_by", "")
        if not _is_number(intensity) or not isinstance(basis, str) or not isinstance(made_by, str):
            raise AvatarError(f"{origin}: 'intensity' must be a number, 'basis_sha256' and 'made_by' text")
        return cls({str(k): float(v) for k, v in gains.items()}, basis, float(intensity),
                   {str(k): float(v) for k, v in readings.items()}, made_by)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
