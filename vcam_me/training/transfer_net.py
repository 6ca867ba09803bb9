"""The cross-identity transfer network of design.md §4 (PyTorch; training side only).

Two heads share one conditioning vector ``c`` (``(B, N_CONDITION)``: driving AUs, gaze and
head pose relative to the reference, see :mod:`vcam_me.training.reenact_data`):

- :class:`GeometryHead`: ``c`` → displacements ``(B, 478, 3)`` of the pose-normalised mesh
  (canonical IOD units). A linear path that can start as the shipped AU basis
  (``models/au_basis.npz``, features in the same order) plus a small MLP whose last layer
  starts at zero, so the head starts exactly where the basis (or zero) is.
- :class:`AppearanceHead`: a small U-Net on the aligned crop, its finest level at half the
  crop's resolution by default (:attr:`NetConfig.stem`). Input: the reference crop warped
  to the target geometry, ``(B, 3, S, S)`` float in [0, 1]; ``c`` enters every decoder level
  by FiLM (per-channel scale and shift). Output: an RGB residual ``(B, 3, S, S)`` in [-1, 1]
  and a soft mask ``(B, 1, S, S)`` in [0, 1]; the face is ``warped + mask * residual``
  (:func:`composite`). The mask starts near 0, so an untrained net returns the warp.

:func:`count_macs` counts multiply-accumulates per call with forward hooks on the conv and
linear layers; at the 128² crop the appearance head is ≈ 0.32 GMAC (the earlier full-resolution
stem at widths 16–128: 0.46), inside the 0.7 GMAC of design.md §2/§4.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from vcam_me.training.reenact_data import N_CONDITION

N_VERTICES = 478
#: Block size of the "shuffle" stem (see :class:`NetConfig`).
_SHUFFLE = 2


@dataclass(frozen=True)
class NetConfig:
    """Sizes of the transfer network.

    Attributes:
        n_condition: length of the conditioning vector.
        widths: channels of the U-Net's four levels, finest first.
        stem: where the finest level works. ``"full"``: at the crop's resolution (levels at
            1, ½, ¼, ⅛). ``"shuffle"``: at half of it (levels at ½ … 1/16 of the crop): the
            crop enters as its 2×2 pixel blocks stacked into 12 channels (pixel unshuffle)
            and the output leaves as 16 channels regrouped into 2×2 blocks of the 4 output
            channels (pixel shuffle). Every pixel is still read and drawn, but no convolution
            runs at full resolution, where the "full" stem spends a third of its time on
            few channels (benchmarks/README.md, "A lighter appearance head").
        geometry_hidden: hidden units of the geometry MLP.
        film_hidden: hidden units of the conditioning trunk feeding the FiLM layers.
    """

    n_condition: int = N_CONDITION
    widths: tuple[int, int, int, int] = (32, 48, 96, 128)
    stem: Literal["full", "shuffle"] = "shuffle"
    geometry_hidden: int = 256
    film_hidden: int = 128

    def __post_init__(self) -> None:
        if self.stem not in ("full", "shuffle"):
            raise ValueError(f"stem must be 'full' or 'shuffle', got {self.stem!r}")

    @classmethod
    def of_state_dict(cls, state: dict) -> NetConfig:
        """The sizes a saved :class:`TransferNet` state dict was made with (its U-Net widths
        are read from the encoder's weights, its stem from the first convolution's inputs;
        the rest are the defaults)."""
        widths = tuple(int(state[f"appearance.enc{i}.0.0.weight"].shape[0]) for i in range(4))
        stem = "shuffle" if int(state["appearance.enc0.0.0.weight"].shape[1]) == 3 * _SHUFFLE**2 else "full"
        return cls(widths=widths, stem=stem)


class GeometryHead(nn.Module):
    def __init__(self, config: NetConfig, basis: np.ndarray | None = None) -> None:
        super().__init__()
        n_out = N_VERTICES * 3
        self.linear = nn.Linear(config.n_condition, n_out, bias=False)
        nn.init.zeros_(self.linear.weight)
        if basis is not None:
            basis = np.asarray(basis, np.float32).reshape(basis.shape[0], -1)  # (k, 478*3)
            k = min(basis.shape[0], config.n_condition)
            with torch.no_grad():
                self.linear.weight[:, :k] = torch.from_numpy(basis[:k].T.copy())
        self.mlp = nn.Sequential(
            nn.Linear(config.n_condition, config.geometry_hidden), nn.SiLU(),
            nn.Linear(config.geometry_hidden, config.geometry_hidden), nn.SiLU(),
            nn.Linear(config.geometry_hidden, n_out),
        )
        last = self.mlp[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        """``(B, n_condition)`` → displacements ``(B, 478, 3)``."""
        return (self.linear(condition) + self.mlp(condition)).reshape(-1, N_VERTICES, 3)


class GeometryRefinement(nn.Module):
    """What the runtime adds to the fixed AU basis: the geometry head's non-linear part,
    anchored so that the neutral condition (all zeros) adds nothing.

    The linear path is left out because the renderer already draws the basis, with its
    closed-loop gains and cross-talk mixing, which a learnt linear map would bypass. The
    anchor matters: unanchored, the part adds a constant 0.013 IOD on average (0.04 at most)
    to every frame, a change of the avatar's resting face that no expression asked for.
    """

    def __init__(self, head: GeometryHead) -> None:
        super().__init__()
        self.mlp = head.mlp

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        """``(B, n_condition)`` → ``(B, 478, 3)`` displacement added to the basis's."""
        zero = torch.zeros_like(condition[:1])
        return (self.mlp(condition) - self.mlp(zero)).reshape(-1, N_VERTICES, 3)


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.1))


class _Up(nn.Module):
    """1×1 to the skip's width, upsample ×2, concatenate, 3×3, FiLM.

    A 1×1 convolution and nearest-neighbour upsampling commute (each output pixel is a copy
    of one input pixel, and the 1×1 acts on each pixel alone), so reducing first gives the
    same result as upsampling first (each output is the same sum of the same products: the
    prior trained with the other order, exported both ways, gives bitwise equal outputs), on
    a quarter of the pixels and with half the channels to upsample: 0.457 instead of 0.476
    GMAC, and the int8 head 9.6 → 9.0 ms per call on one CPU thread (median of 200 calls;
    measured on the earlier full-resolution-stem prior).
    """

    def __init__(self, cin: int, cskip: int, film_hidden: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(cin, cskip, 1)
        self.fuse = _conv(2 * cskip, cskip)
        self.film = nn.Linear(film_hidden, 2 * cskip)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, skip: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(self.reduce(x), scale_factor=2.0, mode="nearest")
        x = self.fuse(torch.cat([x, skip], dim=1))
        gamma, beta = self.film(h).chunk(2, dim=1)
        return x * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]


class AppearanceHead(nn.Module):
    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        w0, w1, w2, w3 = config.widths
        self.shuffled = config.stem == "shuffle"
        blocks = _SHUFFLE**2 if self.shuffled else 1
        self.trunk = nn.Sequential(nn.Linear(config.n_condition, config.film_hidden), nn.SiLU(),
                                   nn.Linear(config.film_hidden, config.film_hidden), nn.SiLU())
        self.enc0 = nn.Sequential(_conv(3 * blocks, w0), _conv(w0, w0))
        self.enc1 = nn.Sequential(_conv(w0, w1, 2), _conv(w1, w1))
        self.enc2 = nn.Sequential(_conv(w1, w2, 2), _conv(w2, w2))
        self.enc3 = nn.Sequential(_conv(w2, w3, 2), _conv(w3, w3))
        self.bottleneck_film = nn.Linear(config.film_hidden, 2 * w3)
        nn.init.zeros_(self.bottleneck_film.weight)
        nn.init.zeros_(self.bottleneck_film.bias)
        self.up2 = _Up(w3, w2, config.film_hidden)
        self.up1 = _Up(w2, w1, config.film_hidden)
        self.up0 = _Up(w1, w0, config.film_hidden)
        self.out = nn.Conv2d(w0, 4 * blocks, 3, 1, 1)
        with torch.no_grad():
            self.out.weight.mul_(0.1)
            self.out.bias.zero_()
            # mask ≈ 0.018: start as the plain warp (pixel shuffle takes channel 4k + j to
            # output channel k, so the mask's logits are the last ``blocks`` channels)
            self.out.bias[3 * blocks:] = -4.0

    def forward(self, warped: torch.Tensor, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3, S, S)`` in [0, 1] + ``(B, n_condition)`` → residual ``(B, 3, S, S)``, mask ``(B, 1, S, S)``.

        ``S`` must be a multiple of 8 (of 16 with the "shuffle" stem).
        """
        h = self.trunk(condition)
        x = warped * 2.0 - 1.0
        if self.shuffled:
            x = F.pixel_unshuffle(x, _SHUFFLE)
        e0 = self.enc0(x)
        e1 = self.enc1(e0)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        gamma, beta = self.bottleneck_film(h).chunk(2, dim=1)
        e3 = e3 * (1 + gamma[:, :, None, None]) + beta[:, :, None, None]
        d = self.up0(self.up1(self.up2(e3, e2, h), e1, h), e0, h)
        o = self.out(d)
        if self.shuffled:
            o = F.pixel_shuffle(o, _SHUFFLE)
        return torch.tanh(o[:, :3]), torch.sigmoid(o[:, 3:])


def composite(warped: torch.Tensor, residual: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The face the network draws: ``warped + mask * residual``, clamped to [0, 1]."""
    return (warped + mask * residual).clamp(0.0, 1.0)


class TransferNet(nn.Module):
    """Both heads; ``forward`` returns ``(displacement, residual, mask)``."""

    def __init__(self, config: NetConfig | None = None, basis: np.ndarray | None = None) -> None:
        super().__init__()
        self.config = config or NetConfig()
        self.geometry = GeometryHead(self.config, basis)
        self.appearance = AppearanceHead(self.config)

    def forward(self, warped: torch.Tensor, condition: torch.Tensor):
        residual, mask = self.appearance(warped, condition)
        return self.geometry(condition), residual, mask


def count_macs(module: nn.Module, *inputs: torch.Tensor) -> int:
    """Multiply-accumulates of one call ``module(*inputs)`` in its conv and linear layers.

    Counted by forward hooks from each layer's actual output size, so it follows whatever
    crop size the inputs have. Element-wise work (activations, FiLM, upsampling) is not
    counted; it is a few % of the convolutions.
    """
    total = 0

    def on_conv(layer: nn.Conv2d, _inp, out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = layer.kernel_size
        total += out.numel() * (layer.in_channels // layer.groups) * kh * kw

    def on_linear(layer: nn.Linear, _inp, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * layer.in_features

    hooks = []
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(on_conv))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(on_linear))
    try:
        with torch.no_grad():
            module(*inputs)
    finally:
        for h in hooks:
            h.remove()
    return total
