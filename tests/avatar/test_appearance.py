"""The appearance network at run time: the shipped ONNX prior, its provider, compositing, threading."""

from __future__ import annotations

import logging

import cv2
import numpy as np
from pathlib import Path

import pytest

from vcam_me.avatar import AvatarRenderer
from vcam_me.avatar import appearance as A
from vcam_me.avatar.crop import CROP_SIZE, crop_points, similarity_transform
from vcam_me.config import load_config
from vcam_me.errors import ModelError
from vcam_me.types import AU_CHANNELS, AU_INDEX, ExpressionState

from ..helpers import wait_until

SIZE = (640, 360)


@pytest.fixture(scope="module")
def cfg():
    return load_config(use_user_config=False)


def shipped_files() -> A.AppearanceFiles:
    from vcam_me.models import verified_model_path

    return A.AppearanceFiles(verified_model_path("transfer_appearance"), verified_model_path("transfer_appearance_int8"))


@pytest.fixture(scope="module")
def shipped():
    return shipped_files()


@pytest.fixture(scope="module")
def avatar(cfg):
    from vcam_me.app import resolve_avatar

    return resolve_avatar(None, cfg)


def _state(jaw: float = 0.0, yaw: float = 0.0) -> ExpressionState:
    au = np.zeros(len(AU_CHANNELS), np.float32)
    au[AU_INDEX["AU26"]] = jaw
    return ExpressionState(0, au, np.zeros((2, 2), np.float32), np.array([yaw, 0.0, 0.0], np.float32), 0, True)


def test_condition_has_the_layout_the_network_was_trained_on():
    from vcam_me.training.reenact_data import CONDITION_NAMES

    assert A.condition_of(_state()).shape == (1, len(CONDITION_NAMES))
    c = A.condition_of(_state(jaw=0.5, yaw=15.0))[0]
    assert c[CONDITION_NAMES.index("AU26")] == pytest.approx(0.5)
    assert c[CONDITION_NAMES.index("pose_yaw")] == pytest.approx(0.5)  # 15° in units of 30°


def test_similarity_transform_puts_the_alignment_points_where_the_crop_wants_them():
    from vcam_me.avatar import mesh

    v = mesh.canonical_mesh().vertices[:, :2]
    points = np.vstack([v, np.zeros((10, 2))])
    angle = np.deg2rad(20)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    image_points = points @ rot.T * 40 + (300, 200)
    m = similarity_transform(image_points)
    from vcam_me.avatar.crop import ALIGN_IDS

    mapped = image_points[list(ALIGN_IDS)] @ m[:, :2].T + m[:, 2]
    assert np.abs(mapped - crop_points()).max() < 1e-6
    assert similarity_transform(np.zeros((478, 2))) is None


def test_a_residual_that_changes_nothing_is_dropped_and_a_small_one_keeps_its_box():
    zero = np.zeros((CROP_SIZE, CROP_SIZE, 3), np.float32)
    assert A.Residual.of(zero) is None
    zero[10:12, 100:105, 1] = -0.5
    r = A.Residual.of(zero)
    assert r.box == (100, 10, 105, 12) and r.delta.shape == (2, 5, 3) and r.delta.min() == -128


def test_residual_lands_where_the_crop_came_from():
    out = np.full((200, 300, 3), 100, np.uint8)
    m = np.array([[0.5, 0.0, -20.0], [0.0, 0.5, -10.0]])  # image → crop: crop = 0.5 * image − (20, 10)
    residual = np.zeros((CROP_SIZE, CROP_SIZE, 3), np.float32)
    residual[60:70, 60:70] = 0.2  # crop pixels 60..69 ↔ image pixels 160..159+20 and 140..159
    A.add_residual(out, A.Residual.of(residual), m)
    assert out[150, 170, 0] == 100 + 51  # 0.2 · 255, rounded
    assert out[145, 165].tolist() == [151, 151, 151]
    assert out[100, 100, 0] == 100 and out[190, 290, 0] == 100
    before = out.copy()
    A.add_residual(out, A.Residual.of(np.full_like(residual, -1.0)), m)
    assert out.min() == 0 and np.array_equal(out[:, :19], before[:, :19])  # clipped, and only the crop's footprint


def test_shipped_prior_loads_on_the_cpu_with_its_provider_read_back(shipped, caplog):
    net = A.AppearanceNet.load(shipped, device="cpu")
    assert net.provider == A.CPU and net.size == CROP_SIZE
    assert net.session.get_providers()[0] == A.CPU
    with caplog.at_level(logging.WARNING):
        gpu = A.AppearanceNet.load(shipped, device="gpu")
    if gpu.provider != A.CUDA:  # no CUDA here: it says so instead of pretending
        assert "CUDA was asked for" in caplog.text or "CUDAExecutionProvider" not in __import__("onnxruntime").get_available_providers()
    crop = np.full((CROP_SIZE, CROP_SIZE, 3), 128, np.uint8)
    res = net(crop, A.condition_of(_state(jaw=0.6)))
    assert res.shape == (CROP_SIZE, CROP_SIZE, 3) and res.dtype == np.float32 and np.abs(res).max() <= 1.0


class _OnnxRuntimeWithCuda:
    """A seam: an onnxruntime that lists CUDA and records whether its CUDA libraries were
    preloaded before the session was asked for (the real CUDA run is benchmarks/gpu_check.py)."""

    def __init__(self, real, can_preload: bool = True):
        self._real = real
        self.events = []
        if can_preload:
            self.preload_dlls = lambda: (self.events.append("preload"), print("some warning it prints"))

    def __getattr__(self, name):
        return getattr(self._real, name)

    def get_available_providers(self):
        return [A.CUDA, A.CPU]

    def InferenceSession(self, path, opts, providers):  # noqa: N802 - onnxruntime's name
        self.events.append(("session", tuple(providers)))
        return self._real.InferenceSession(path, opts, providers=[A.CPU])


@pytest.mark.parametrize("can_preload", [True, False])
def test_cuda_libraries_are_preloaded_once_before_a_cuda_session(shipped, monkeypatch, can_preload, capsys):
    import onnxruntime

    fake = _OnnxRuntimeWithCuda(onnxruntime, can_preload)
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", fake)
    monkeypatch.setattr(A, "_cuda_preloaded", False)
    for _ in range(2):
        session, provider = A.open_session(shipped.fp32, device="auto")
        assert provider == A.CPU  # what really ran is what is reported
    A.open_session(shipped.fp32, device="cpu")
    sessions = [e for e in fake.events if e != "preload"]
    assert sessions == [("session", (A.CUDA, A.CPU))] * 2 + [("session", (A.CPU,))]
    assert fake.events.count("preload") == (1 if can_preload else 0)
    if can_preload:
        assert fake.events[0] == "preload"
    assert "some warning" not in capsys.readouterr().out  # its prints go to the log, not the console


@pytest.mark.parametrize("driver_loads", [True, False])
def test_the_cuda_report_names_loaded_libraries_and_the_driver(monkeypatch, tmp_path, driver_loads):
    """doctor's CUDA line: a real library loaded from a folder shows up with that folder (a copy
    of a system library under a CUDA library's name stands in for libcudart, which this CPU
    machine lacks), and the driver's absence is said with its consequence."""
    import _ctypes
    import ctypes

    import onnxruntime

    if not Path("/proc/self/maps").is_file():
        pytest.skip("reads /proc/self/maps (Linux)")
    fake = _OnnxRuntimeWithCuda(onnxruntime)
    stand_in = tmp_path / "nvidia" / "libcudart.so.99"
    stand_in.parent.mkdir()
    stand_in.write_bytes(Path(_ctypes.__file__).read_bytes())  # any real shared library will do
    fake.preload_dlls = lambda: ctypes.CDLL(str(stand_in))
    monkeypatch.setattr(A, "_cuda_preloaded", False)
    real_cdll = ctypes.CDLL

    def cdll(name, *args, **kwargs):
        if name in ("libcuda.so.1", "nvcuda.dll"):
            if not driver_loads:
                raise OSError(f"{name}: cannot open shared object file")
            return None
        return real_cdll(name, *args, **kwargs)

    monkeypatch.setattr(ctypes, "CDLL", cdll)
    line = A.cuda_report(fake)
    assert f"CUDA libraries loaded: libcudart.so.99 (from {stand_in.parent})" in line
    if driver_loads:
        assert line.endswith("NVIDIA driver: found (libcuda.so.1)")
    else:
        assert line.endswith("NVIDIA driver: not found (libcuda.so.1), so the CPU runs the network")


def test_a_corrupt_network_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "appearance.onnx"
    bad.write_bytes(b"not an onnx graph")
    with pytest.raises(ModelError, match="cannot be loaded"):
        A.AppearanceNet.load(A.AppearanceFiles(bad), device="cpu")


def test_network_output_follows_the_conditioning_and_stays_on_the_face(avatar, cfg, shipped):
    warp = AvatarRenderer.create(avatar, SIZE, cfg.avatar)
    warp.draw_details = False
    plain = AvatarRenderer.create(avatar, SIZE, cfg.avatar)
    plain.draw_details = False
    net = A.AppearanceNet.load(shipped, device="cpu")
    neural = A.NeuralAvatarRenderer(warp, net, asynchronous=False)
    state = _state(jaw=0.7)
    with_net, without = neural.render(state), plain.render(state)
    assert not np.array_equal(with_net, without)
    # away from the face nothing changes
    assert np.array_equal(with_net[:, :40], without[:, :40])
    m = similarity_transform(warp.last_mesh[:, :2])
    crop = cv2.warpAffine(without, m, (CROP_SIZE, CROP_SIZE))
    closed, opened = net(crop, A.condition_of(_state(jaw=0.0))), net(crop, A.condition_of(state))
    assert np.abs(opened - closed).mean() > 1e-3, "the AUs condition what the network draws"


def test_live_renderer_runs_the_network_off_the_render_thread_and_catches_up(avatar, cfg, shipped):
    net = A.AppearanceNet.load(shipped, device="cpu")
    sync = A.NeuralAvatarRenderer(_warp(avatar, cfg), net, asynchronous=False)
    live = A.NeuralAvatarRenderer(_warp(avatar, cfg), net, asynchronous=True, min_interval_ms=0)
    try:
        state = _state(jaw=0.6)
        expected = sync.render(state)
        first = live.render(state)  # the network has not answered yet: the warp alone
        assert not np.array_equal(first, expected)
        assert wait_until(lambda: np.array_equal(live.render(state), expected), timeout_s=10.0, poll_s=0.05), \
            "the live renderer never showed the network's output"
    finally:
        live.close()


def test_live_renderer_calls_the_network_again_only_when_the_face_changed(avatar, cfg, shipped):
    net = A.AppearanceNet.load(shipped, device="cpu")
    live = A.NeuralAvatarRenderer(_warp(avatar, cfg), net, asynchronous=True, min_interval_ms=0)

    def settle(state, calls):
        """Render ``state`` until the network has answered ``calls`` times in all, then 20 frames more."""
        assert wait_until(lambda: (live.render(state), net.calls >= calls)[1] and not live._worker.busy,
                          timeout_s=10.0, poll_s=0.02), f"no network call number {calls}"
        for _ in range(20):
            live.render(state)
        return net.calls

    try:
        assert settle(_state(jaw=0.6), 1) == 1  # the same face, frame after frame: one call
        below = 0.5 * A.STILL_CONDITION
        assert settle(_state(jaw=0.6 + below), 1) == 1  # a change under the threshold reuses it
        assert settle(_state(jaw=0.6 + 3 * below), 2) == 2  # small steps add up against the last call
        assert settle(_state(jaw=0.6 + 3 * below, yaw=1.5), 3) == 3  # a head turn of 1.5° is a change
    finally:
        live.close()


def _warp(avatar, cfg) -> AvatarRenderer:
    warp = AvatarRenderer.create(avatar, SIZE, cfg.avatar)
    warp.draw_details = False
    return warp


def test_app_builds_the_configured_renderer(avatar, cfg, tmp_path):
    import dataclasses

    from vcam_me.app import build_renderer

    warp_cfg = dataclasses.replace(cfg, avatar=dataclasses.replace(cfg.avatar, appearance="warp"))
    assert isinstance(build_renderer(avatar, SIZE, warp_cfg), AvatarRenderer)
    auto_cfg = dataclasses.replace(cfg, avatar=dataclasses.replace(cfg.avatar, appearance="auto"))
    assert isinstance(build_renderer(avatar, SIZE, auto_cfg), AvatarRenderer), "a photo avatar: the warp"
    from vcam_me.avatar.avatar import add_network, save_avatar

    own = add_network(save_avatar(avatar, tmp_path / "own"), shipped_files().fp32, shipped_files().int8)
    personal = build_renderer(own, SIZE, auto_cfg)
    assert isinstance(personal, A.NeuralAvatarRenderer) and not personal.asynchronous
    # an avatar with its own network is drawn for its owner ([avatar] driver = "auto"): the
    # basis as measured, a commanded AU drawn as it is, where a photo avatar's gains change it
    from vcam_me.avatar.basis import FEATURE_NAMES
    from vcam_me.types import AU_INDEX, ExpressionState

    au = ExpressionState.neutral(0).au.copy()
    au[AU_INDEX["AU7_L"]] = 0.3
    squint = ExpressionState(0, au, ExpressionState.neutral(0).gaze, ExpressionState.neutral(0).head_pose)
    k = FEATURE_NAMES.index("AU7_L")
    assert personal.warp.drive(squint)[k] == pytest.approx(0.3)
    assert build_renderer(avatar, SIZE, auto_cfg).drive(squint)[k] != pytest.approx(0.3)
    net_cfg = dataclasses.replace(cfg, avatar=dataclasses.replace(cfg.avatar, appearance="network", appearance_device="cpu"))
    live = build_renderer(avatar, SIZE, net_cfg, live=True)
    try:
        assert isinstance(live, A.NeuralAvatarRenderer) and live.asynchronous and not live.warp.draw_details
    finally:
        live.close()


def test_a_magnified_residual_is_composited_like_a_full_resolution_warp():
    rng = np.random.default_rng(0)
    smooth = cv2.GaussianBlur(rng.normal(0, 0.15, (CROP_SIZE, CROP_SIZE, 3)).astype(np.float32), (0, 0), 2)
    residual = A.Residual.of(smooth)
    angle = np.deg2rad(8)
    scale = 0.3  # a 128² crop of a face ~430 px wide, as at 720p
    m = np.array([[scale * np.cos(angle), -scale * np.sin(angle), -40.0], [scale * np.sin(angle), scale * np.cos(angle), -30.0]])
    out = np.full((720, 1280, 3), 120, np.uint8)
    A.add_residual(out, residual, m)
    full = cv2.warpAffine(residual.delta, m, (1280, 720), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    expected = np.clip(120 + np.rint(full).astype(int), 0, 255)
    assert np.abs(out.astype(int) - expected).max() <= 3
    assert np.abs(out.astype(int) - 120).max() > 20  # something was added
