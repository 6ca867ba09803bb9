import numpy as np
import pytest

from vcam_me.errors import ConfigError
from vcam_me.expression.action_units import (
    DEFAULT_CROSSWALK_PATH,
    Crosswalk,
    au_to_blendshapes,
    blendshapes_to_au,
    gaze_from_blendshapes,
)
from vcam_me.types import AU_CHANNELS, AU_INDEX, BLENDSHAPE_INDEX, DERIVED_AU_CHANNELS


def _blend(**scores):
    b = np.zeros(52, np.float32)
    for name, value in scores.items():
        b[BLENDSHAPE_INDEX[name]] = value
    return b


def test_crosswalk_covers_every_channel_once():
    cw = Crosswalk.load(DEFAULT_CROSSWALK_PATH)
    assert sorted(cw.channel_index) == sorted(AU_INDEX[c] for c in AU_CHANNELS if c not in DERIVED_AU_CHANNELS)
    assert len(set(cw.source_index.tolist())) == len(cw.source_index)  # no blendshape used twice


@pytest.mark.parametrize(
    "shape, channel",
    [("mouthSmileLeft", "AU12_L"), ("mouthSmileRight", "AU12_R"), ("browInnerUp", "AU1"),
     ("browDownLeft", "AU4_L"), ("jawOpen", "AU26"), ("eyeBlinkRight", "AU43_R"),
     ("mouthShrugLower", "AU17_lower"), ("mouthPucker", "AU18"), ("eyeSquintLeft", "AU7_L")],
)
def test_crosswalk_rows_follow_metas_facs_names(shape, channel):
    au = blendshapes_to_au(_blend(**{shape: 0.7}))
    assert au[AU_INDEX[channel]] == pytest.approx(0.7)
    others = np.delete(au, [AU_INDEX[channel], AU_INDEX["AU25"], AU_INDEX["AU27"]])
    assert np.all(others == 0)


def test_derived_lips_part_and_mouth_stretch():
    au = blendshapes_to_au(_blend(jawOpen=0.9, mouthClose=0.1))
    assert au[AU_INDEX["AU25"]] == pytest.approx(0.8)
    assert au[AU_INDEX["AU27"]] == pytest.approx(0.75)
    closed = blendshapes_to_au(_blend(jawOpen=0.3, mouthClose=0.3))
    assert closed[AU_INDEX["AU25"]] == pytest.approx(0.0)
    assert closed[AU_INDEX["AU27"]] == 0.0


def test_gaze_signs():
    g = gaze_from_blendshapes(_blend(eyeLookOutLeft=0.5, eyeLookInRight=0.5, eyeLookUpLeft=0.2, eyeLookUpRight=0.2))
    assert g[0, 0] == pytest.approx(0.5) and g[1, 0] == pytest.approx(0.5)  # both toward subject's left
    assert g[0, 1] == pytest.approx(0.2) and g[1, 1] == pytest.approx(0.2)
    g = gaze_from_blendshapes(_blend(eyeLookDownLeft=0.4, eyeLookDownRight=0.4))
    assert g[0, 1] < 0 and g[1, 1] < 0


def test_batch_shapes_and_round_trip():
    rng = np.random.default_rng(0)
    b = rng.random((10, 52)).astype(np.float32)
    au = blendshapes_to_au(b)
    assert au.shape == (10, len(AU_CHANNELS))
    back = au_to_blendshapes(au)
    cw = Crosswalk.load(DEFAULT_CROSSWALK_PATH)
    np.testing.assert_allclose(back[:, cw.source_index], b[:, cw.source_index])


def test_bad_crosswalk_names_the_problem():
    with pytest.raises(ConfigError, match="channels must match"):
        Crosswalk.from_dict({"channel": {"AU1": {"blendshape": "browInnerUp"}}})
