"""The geometry head at run time: the shipped refinement of the AU basis, its checks, and
how the renderer adds it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from vcam_me.avatar import AvatarRenderer
from vcam_me.avatar.appearance import condition_of
from vcam_me.avatar.geometry_refiner import GeometryRefiner
from vcam_me.avatar import mesh as M
from vcam_me.config import load_config
from vcam_me.errors import ModelError
from vcam_me.models import verified_model_path
from vcam_me.types import AU_CHANNELS, AU_INDEX, ExpressionState

SIZE = (640, 360)


@pytest.fixture(scope="module")
def cfg():
    return load_config(use_user_config=False)


@pytest.fixture(scope="module")
def avatar(cfg):
    from vcam_me.app import resolve_avatar

    return resolve_avatar(None, cfg)


@pytest.fixture(scope="module")
def shipped():
    return GeometryRefiner.load(verified_model_path("transfer_geometry_refinement"))


def _state(**aus: float) -> ExpressionState:
    au = np.zeros(len(AU_CHANNELS), np.float32)
    for name, value in aus.items():
        au[AU_INDEX[name]] = value
    return ExpressionState(0, au, np.zeros((2, 2), np.float32), np.zeros(3, np.float32), 0, True)


def test_the_shipped_refinement_adds_nothing_at_rest(shipped):
    assert np.abs(shipped(np.zeros((1, shipped.n_condition), np.float32))).max() < 1e-6


def test_the_shipped_refinement_reshapes_an_open_smiling_mouth_more_than_the_brow(shipped, avatar):
    d = np.linalg.norm(shipped(condition_of(_state(AU12_L=0.8, AU12_R=0.8, AU26=0.6))), axis=1)
    face = M.landmarks_to_pixels(avatar.landmarks, avatar.image_size)  # an upright face, y down
    eyes_y = face[[33, 263], 1].mean()
    mouth = face[:, 1] > face[4, 1]  # below the nose tip
    brow = face[:, 1] < eyes_y - 0.2 * M.interocular(face)
    assert d[mouth].mean() > 2 * d[brow].mean() and d[mouth].max() > 0.01


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        GeometryRefiner.load(tmp_path / "nothing.onnx")


def test_a_damaged_file_is_one_clear_error(tmp_path):
    bad = tmp_path / "geometry_refinement.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="geometry refinement .* cannot be loaded"):
        GeometryRefiner.load(bad)


def test_another_network_is_refused():
    with pytest.raises(ModelError, match="does not take"):
        GeometryRefiner.load(verified_model_path("transfer_appearance"))


class _Lift:
    """A stand-in refinement: moves every vertex up by 0.05 IOD once any AU is active."""

    n_condition = 50

    def __call__(self, condition):
        out = np.zeros((478, 3), np.float32)
        out[:, 1] = -0.05 if np.any(condition[0, :-3]) else 0.0
        return out


def test_the_renderer_adds_the_refinement_to_the_basis(avatar):
    plain = AvatarRenderer.create(avatar, SIZE)
    lifted = AvatarRenderer.create(avatar, SIZE, refiner=_Lift())
    rest, smile = _state(), _state(AU12_L=0.5, AU12_R=0.5)
    np.testing.assert_array_equal(lifted.mesh(rest), plain.mesh(rest))
    moved = lifted.mesh(smile) - plain.mesh(smile)
    iod = M.interocular(plain.rest)
    # 0.05 IOD up, in the avatar's own frame (the sample's head is upright: mostly −y)
    assert np.median(moved[:, 1]) == pytest.approx(-0.05 * iod, rel=0.15)
    assert np.abs(np.median(moved[:, 0])) < 0.01 * iod


def test_the_real_refinement_keeps_the_avatar_at_rest_and_changes_an_expression(avatar, shipped):
    plain = AvatarRenderer.create(avatar, SIZE)
    refined = AvatarRenderer.create(avatar, SIZE, refiner=shipped)
    np.testing.assert_allclose(refined.render(_state()), plain.render(_state()), atol=1)
    smile = _state(AU12_L=0.8, AU12_R=0.8, AU26=0.5)
    assert np.abs(refined.mesh(smile) - plain.mesh(smile)).max() > 0.5  # pixels


def test_the_configuration_chooses_the_geometry(avatar, cfg, tmp_path):
    from vcam_me.app import build_renderer, geometry_refiner
    from vcam_me.avatar.avatar import add_network, save_avatar

    def with_geometry(mode: str, **avatar_options):
        return dataclasses.replace(cfg, avatar=dataclasses.replace(cfg.avatar, geometry=mode, **avatar_options))

    assert cfg.avatar.geometry == "basis"
    assert geometry_refiner(avatar, cfg) is None, "by default the basis alone"
    network = with_geometry("network")
    assert isinstance(geometry_refiner(avatar, network), GeometryRefiner), "a photo avatar: the generic head"
    own = add_network(save_avatar(avatar, tmp_path / "own"), verified_model_path("transfer_appearance"),
                      geometry=verified_model_path("transfer_geometry_refinement"))
    assert own.network_files()["geometry"].parent == tmp_path / "own" / "network"
    assert isinstance(geometry_refiner(own, network), GeometryRefiner), "a set-up avatar: its own head"
    assert geometry_refiner(own, cfg) is None
    kept_apart = verified_model_path("transfer_geometry_refinement")  # as the evaluation keeps a fine-tuned head
    assert isinstance(geometry_refiner(avatar, network, own=kept_apart), GeometryRefiner)
    assert geometry_refiner(avatar, cfg, own=kept_apart) is None
    assert build_renderer(avatar, SIZE, with_geometry("network", appearance="warp"))._refiner is not None
    assert build_renderer(own, SIZE, with_geometry("basis", appearance="warp"))._refiner is None


def test_a_wrong_geometry_setting_is_named(tmp_path):
    from vcam_me.errors import ConfigError

    bad = tmp_path / "bad.toml"
    bad.write_text('[avatar]\ngeometry = "learned"\n')
    with pytest.raises(ConfigError, match="avatar.geometry"):
        load_config(bad, use_user_config=False)


class _Recorder:
    n_condition = 50

    def __init__(self):
        self.seen = []

    def __call__(self, condition):
        self.seen.append(condition.copy())
        return np.zeros((478, 3), np.float32)


def test_injected_micro_expressions_are_left_to_the_basis(avatar):
    """The refinement sees the face as tracked; a micro-expression's increments are drawn by
    the basis alone, which keeps a one-sided action on its side."""
    from vcam_me.avatar.basis import FEATURE_NAMES

    seen = _Recorder()
    renderer = AvatarRenderer.create(avatar, SIZE, refiner=seen)
    tracked = np.zeros(len(AU_CHANNELS), np.float32)
    tracked[AU_INDEX["AU12_R"]] = 0.3
    injected = np.zeros_like(tracked)
    injected[AU_INDEX["AU12_L"]] = 0.2
    injected[AU_INDEX["AU12_R"]] = 0.1
    state = ExpressionState(0, tracked + injected, np.zeros((2, 2), np.float32), np.zeros(3, np.float32), 0, True,
                            components={"tracked": tracked, "injected": injected, "idle": np.zeros_like(tracked)})
    renderer.mesh(state)
    c = seen.seen[-1][0]
    assert c[FEATURE_NAMES.index("AU12_L")] == pytest.approx(0.0, abs=1e-6)
    assert c[FEATURE_NAMES.index("AU12_R")] == pytest.approx(0.3, abs=1e-6)
    # ... while the basis draws the whole face, injected part included
    plain = AvatarRenderer.create(avatar, SIZE)
    np.testing.assert_allclose(renderer.mesh(state), plain.mesh(state), atol=1e-4)
