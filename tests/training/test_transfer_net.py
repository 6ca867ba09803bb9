"""The transfer network: shapes, MAC budget, starting point, and that the core stays torch-free."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from vcam_me.training.reenact_data import CROP_SIZE, N_CONDITION
from vcam_me.training.transfer_net import (
    N_VERTICES,
    GeometryRefinement,
    NetConfig,
    TransferNet,
    composite,
    count_macs,
)

#: design.md §2/§4: the appearance net may cost at most 0.7 GMAC per call at its crop.
MAC_BUDGET = 0.7e9



@pytest.fixture(autouse=True, scope="module")
def _one_thread(torch_one_thread):
    yield

@pytest.fixture(scope="module")
def net() -> TransferNet:
    torch.manual_seed(0)
    return TransferNet().eval()


def test_output_shapes_and_ranges(net):
    warped, cond = torch.rand(2, 3, CROP_SIZE, CROP_SIZE), torch.rand(2, N_CONDITION)
    with torch.no_grad():
        disp, residual, mask = net(warped, cond)
    assert disp.shape == (2, N_VERTICES, 3)
    assert residual.shape == (2, 3, CROP_SIZE, CROP_SIZE) and residual.abs().max() <= 1.0
    assert mask.shape == (2, 1, CROP_SIZE, CROP_SIZE) and 0.0 <= mask.min() and mask.max() <= 1.0


def test_appearance_head_fits_the_mac_budget(net):
    macs = count_macs(net.appearance, torch.rand(1, 3, CROP_SIZE, CROP_SIZE), torch.rand(1, N_CONDITION))
    assert 0.2e9 < macs <= MAC_BUDGET


def test_count_macs_of_one_conv_and_one_linear():
    conv = nn.Conv2d(4, 6, 3, padding=1)
    assert count_macs(conv, torch.rand(1, 4, 10, 10)) == 6 * 10 * 10 * 4 * 9
    lin = nn.Linear(5, 7)
    assert count_macs(lin, torch.rand(3, 5)) == 3 * 7 * 5


def test_untrained_appearance_returns_the_warp(net):
    warped = torch.rand(1, 3, CROP_SIZE, CROP_SIZE)
    with torch.no_grad():
        _, residual, mask = net(warped, torch.rand(1, N_CONDITION))
    assert mask.max() < 0.05
    assert (composite(warped, residual, mask) - warped).abs().max() < 0.05


def test_geometry_starts_at_the_basis_or_zero():
    rng = np.random.default_rng(0)
    k = N_CONDITION - 3  # the AU basis has no pose rows
    basis = rng.normal(0, 0.01, (k, N_VERTICES, 3)).astype(np.float32)
    cond = torch.from_numpy(rng.uniform(0, 1, (2, N_CONDITION)).astype(np.float32))
    with torch.no_grad():
        from_basis = TransferNet(NetConfig(), basis).geometry(cond).numpy()
        from_zero = TransferNet(NetConfig()).geometry(cond).numpy()
    expected = np.einsum("bk,kvc->bvc", cond.numpy()[:, :k], basis)
    np.testing.assert_allclose(from_basis, expected, atol=1e-5)
    assert np.abs(from_zero).max() == 0.0


def test_runs_at_other_crop_sizes(net):
    with torch.no_grad():
        _, residual, _ = net(torch.rand(1, 3, 64, 64), torch.rand(1, N_CONDITION))
    assert residual.shape == (1, 3, 64, 64)


def test_the_geometry_refinement_is_the_heads_mlp_anchored_at_rest(tmp_path):
    torch.manual_seed(1)
    net = TransferNet().eval()
    for p in net.geometry.mlp.parameters():  # a trained-looking head (the last layer starts at zero)
        nn.init.normal_(p, std=0.05)
    c = torch.rand(3, N_CONDITION)
    refinement = GeometryRefinement(net.geometry)
    with torch.no_grad():
        want = (net.geometry.mlp(c) - net.geometry.mlp(torch.zeros(1, N_CONDITION))).reshape(-1, N_VERTICES, 3)
        np.testing.assert_allclose(refinement(c).numpy(), want.numpy(), atol=1e-6)
        assert float(refinement(torch.zeros(1, N_CONDITION)).abs().max()) == 0.0
        assert float(net.geometry.mlp(torch.zeros(1, N_CONDITION)).abs().max()) > 0.01, "the head alone is not anchored"

    from vcam_me.avatar.geometry_refiner import GeometryRefiner
    from vcam_me.training.train_prior import export_geometry_refinement

    runtime = GeometryRefiner.load(export_geometry_refinement(net, tmp_path))
    with torch.no_grad():
        np.testing.assert_allclose(runtime(c[:1].numpy()), refinement(c[:1])[0].numpy(), atol=1e-5)


def test_the_core_never_imports_torch():
    code = (
        "import sys, vcam_me.app, vcam_me.cli, vcam_me.avatar, vcam_me.tracking, vcam_me.expression; "
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=120).returncode == 0


def test_reducing_before_upsampling_is_the_same_function():
    """The decoder reduces channels, then upsamples; that commutes with nearest upsampling, so
    weights trained with the other order (the shipped prior was) keep their function."""
    from torch.nn import functional as F

    from vcam_me.training.transfer_net import _Up

    torch.manual_seed(1)
    up = _Up(32, 16, 8).eval()
    for p in up.parameters():
        nn.init.normal_(p, std=0.3)  # FiLM starts at zero; make every term count
    x, skip, h = torch.rand(2, 32, 8, 8), torch.rand(2, 16, 16, 16), torch.rand(2, 8)
    with torch.no_grad():
        upsampled_first = up.fuse(torch.cat([up.reduce(F.interpolate(x, scale_factor=2.0, mode="nearest")), skip], 1))
        gamma, beta = up.film(h).chunk(2, dim=1)
        expected = upsampled_first * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]
        assert torch.allclose(up(x, skip, h), expected, atol=1e-5)


def test_net_config_is_read_back_from_a_state_dict():
    for config in (NetConfig(widths=(8, 12, 24, 40)), NetConfig(widths=(8, 12, 24, 40), stem="shuffle"),
                   NetConfig(stem="full"), NetConfig(stem="shuffle"), NetConfig()):
        assert NetConfig.of_state_dict(TransferNet(config).state_dict()) == config


def test_an_unknown_stem_is_refused():
    with pytest.raises(ValueError, match="stem"):
        NetConfig(stem="half")


def test_the_shuffle_stem_reads_and_draws_every_pixel_at_full_size():
    torch.manual_seed(0)
    shuffled = TransferNet(NetConfig(widths=(32, 48, 96, 128), stem="shuffle")).eval()
    warped, cond = torch.rand(2, 3, CROP_SIZE, CROP_SIZE), torch.rand(2, N_CONDITION)
    with torch.no_grad():
        _, residual, mask = shuffled(warped, cond)
        assert residual.shape == (2, 3, CROP_SIZE, CROP_SIZE) and mask.shape == (2, 1, CROP_SIZE, CROP_SIZE)
        # untrained, it is the warp: the mask's logits are the last four of the 16 channels
        assert mask.max() < 0.05
        assert (composite(warped, residual, mask) - warped).abs().max() < 0.05
        # one input pixel changes the output at full resolution, not just its 2×2 block
        poked = warped.clone()
        poked[:, :, 41, 40] = 1.0 - poked[:, :, 41, 40]
        for p in shuffled.appearance.out.parameters():
            nn.init.normal_(p, std=0.3)
        a, b = shuffled.appearance(warped, cond)[0], shuffled.appearance(poked, cond)[0]
    changed = (a - b).abs().sum(dim=(0, 1)) > 0
    assert changed[41, 40] and changed.sum() > 4


def test_the_shuffle_stem_costs_less_at_the_same_widths():
    x, c = torch.rand(1, 3, CROP_SIZE, CROP_SIZE), torch.rand(1, N_CONDITION)
    widths = (32, 48, 96, 128)
    full = count_macs(TransferNet(NetConfig(widths=widths, stem="full")).appearance, x, c)
    shuffle = count_macs(TransferNet(NetConfig(widths=widths, stem="shuffle")).appearance, x, c)
    assert shuffle < 0.3 * full and shuffle <= MAC_BUDGET
