"""MediaPipe blendshapes → FACS action-unit channels, by the crosswalk in ``config/au_crosswalk.toml``.

The conversion is a pure function of the 52 blendshape scores; the crosswalk (which
blendshape feeds which channel, and the derived-AU rules) is data with its sources.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from vcam_me.config import PROJECT_ROOT
from vcam_me.errors import ConfigError
from vcam_me.types import AU_CHANNELS, AU_INDEX, BLENDSHAPE_INDEX, DERIVED_AU_CHANNELS

DEFAULT_CROSSWALK_PATH = PROJECT_ROOT / "config" / "au_crosswalk.toml"

_DERIVED_RULES = ("lips_part", "mouth_stretch")


@dataclass(frozen=True)
class Crosswalk:
    """Which blendshape drives each AU channel, plus derived-AU rules and gaze wiring.

    Attributes:
        source_index: ``(n_driving,)`` blendshape index for each non-derived channel.
        channel_index: ``(n_driving,)`` position of those channels in :data:`AU_CHANNELS`.
        derived: derived channel name → rule name.
        gaze_pairs: ``(2, 2, 2)`` blendshape indices ``[eye][axis] = (plus, minus)``.
    """

    source_index: np.ndarray
    channel_index: np.ndarray
    derived: dict[str, str]
    gaze_pairs: np.ndarray

    @classmethod
    def from_dict(cls, data: dict, origin: str = "crosswalk") -> "Crosswalk":
        channels = data.get("channel", {})
        derived = data.get("derived", {})
        expected = set(AU_CHANNELS) - set(DERIVED_AU_CHANNELS)
        if set(channels) != expected:
            missing, extra = sorted(expected - set(channels)), sorted(set(channels) - expected)
            raise ConfigError(f"{origin}: channels must match AU_CHANNELS (missing {missing}, unknown {extra})")
        src, dst = [], []
        for name, row in channels.items():
            shape = row.get("blendshape")
            if shape not in BLENDSHAPE_INDEX:
                raise ConfigError(f"{origin}: channel.{name}.blendshape = {shape!r} is not a MediaPipe blendshape")
            src.append(BLENDSHAPE_INDEX[shape])
            dst.append(AU_INDEX[name])
        rules = {}
        for name in DERIVED_AU_CHANNELS:
            rule = derived.get(name, {}).get("rule")
            if rule not in _DERIVED_RULES:
                raise ConfigError(f"{origin}: derived.{name}.rule = {rule!r}, allowed {_DERIVED_RULES}")
            rules[name] = rule
        gaze = data.get("gaze", {})
        pairs = np.zeros((2, 2, 2), np.int64)
        for e, eye in enumerate(("left_eye", "right_eye")):
            for a, axis in enumerate(("horizontal", "vertical")):
                key = f"{eye}_{axis}"
                pair = gaze.get(key)
                if not (isinstance(pair, list) and len(pair) == 2 and all(p in BLENDSHAPE_INDEX for p in pair)):
                    raise ConfigError(f"{origin}: gaze.{key} must be [plus_blendshape, minus_blendshape]")
                pairs[e, a] = [BLENDSHAPE_INDEX[p] for p in pair]
        return cls(np.array(src), np.array(dst), rules, pairs)

    @classmethod
    def load(cls, path: Path = DEFAULT_CROSSWALK_PATH) -> "Crosswalk":
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise ConfigError(f"cannot read AU crosswalk {path}: {err}") from None
        return cls.from_dict(data, str(path))


@lru_cache(maxsize=1)
def default_crosswalk() -> Crosswalk:
    return Crosswalk.load(DEFAULT_CROSSWALK_PATH)


def raw_channels(blendshapes: np.ndarray, crosswalk: Crosswalk | None = None) -> np.ndarray:
    """Copy the mapped blendshapes into AU channel order; derived channels are left at 0.

    ``blendshapes``: ``(..., 52) float`` → ``(..., len(AU_CHANNELS)) float32``.
    """
    cw = crosswalk or default_crosswalk()
    b = np.asarray(blendshapes, dtype=np.float32)
    out = np.zeros(b.shape[:-1] + (len(AU_CHANNELS),), np.float32)
    out[..., cw.channel_index] = b[..., cw.source_index]
    return out


_I = AU_INDEX


def fill_derived(au: np.ndarray, crosswalk: Crosswalk | None = None) -> np.ndarray:
    """Compute the derived channels (AU25, AU27) in place from the others; returns ``au``."""
    cw = crosswalk or default_crosswalk()
    for name, rule in cw.derived.items():
        if rule == "lips_part":
            jaw = np.clip(au[..., _I["AU26"]] - au[..., _I["AU8"]], 0.0, 1.0)
            lips = np.maximum(
                np.maximum(au[..., _I["AU16_L"]], au[..., _I["AU16_R"]]),
                np.maximum(au[..., _I["AU10_L"]], au[..., _I["AU10_R"]]),
            )
            au[..., _I[name]] = np.maximum(jaw, lips)
        elif rule == "mouth_stretch":
            au[..., _I[name]] = np.clip((au[..., _I["AU26"]] - 0.6) / 0.4, 0.0, 1.0)
    return au


def blendshapes_to_au(blendshapes: np.ndarray, crosswalk: Crosswalk | None = None) -> np.ndarray:
    """AU intensities in [0, 1] straight from blendshape scores (no calibration).

    ``(..., 52)`` → ``(..., len(AU_CHANNELS)) float32`` in :data:`AU_CHANNELS` order.
    """
    au = np.clip(raw_channels(blendshapes, crosswalk), 0.0, 1.0)
    return fill_derived(au, crosswalk)


def gaze_from_blendshapes(blendshapes: np.ndarray, crosswalk: Crosswalk | None = None) -> np.ndarray:
    """Gaze ``(..., 2, 2)`` in [-1, 1]: ``[eye (left, right)][axis (horizontal, vertical)]``.

    +horizontal is toward the subject's left, +vertical is up.
    """
    cw = crosswalk or default_crosswalk()
    b = np.asarray(blendshapes, dtype=np.float32)
    plus = b[..., cw.gaze_pairs[..., 0]]
    minus = b[..., cw.gaze_pairs[..., 1]]
    return np.clip(plus - minus, -1.0, 1.0).astype(np.float32)


def au_to_blendshapes(au: np.ndarray, crosswalk: Crosswalk | None = None) -> np.ndarray:
    """The blendshape vector that AU channels correspond to (inverse of the crosswalk).

    Derived channels are not written back. ``(..., n_au)`` → ``(..., 52) float32``.
    """
    cw = crosswalk or default_crosswalk()
    a = np.asarray(au, dtype=np.float32)
    out = np.zeros(a.shape[:-1] + (len(BLENDSHAPE_INDEX),), np.float32)
    out[..., cw.source_index] = a[..., cw.channel_index]
    return out
