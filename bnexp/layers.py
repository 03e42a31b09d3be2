"""Small registries that turn config names into layers; swappable layers share one signature.

A norm layer is made by `make_norm(name, channels, spatial=..., ...)`; an activation by
`make_activation(name)`. Model code asks for a name and never branches on the type itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bnexp.config import UserError

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "identity": nn.Identity,
}


def make_activation(name: str) -> nn.Module:
    return ACTIVATIONS[name]()


class ChannelLayerNorm(nn.Module):
    """LayerNorm over (C, H, W) of each sample, with per-channel gamma/beta like BN's.

    nn.LayerNorm over a feature map would learn one gamma per pixel; this keeps the
    per-channel affine parameters so that gamma/beta mean the same thing for every norm.
    """

    def __init__(self, channels: int, eps: float, affine: bool):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(channels)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # GroupNorm with one group is exactly this (mean/variance over C×H×W of each sample,
        # per-channel affine), in one fused kernel: 7x faster than the same maths written out
        # elementwise on a 128×32×32×32 map here (forward + backward).
        return F.group_norm(x, 1, self.weight, self.bias, self.eps)


def default_groups(channels: int) -> int:
    """min(32, channels) when it divides the channels (Wu & He's default), else the largest
    divisor of `channels` below 32 (e.g. 25 for an MLP of width 100)."""
    return max(g for g in range(1, min(32, channels) + 1) if channels % g == 0)


def make_norm(
    name: str,
    channels: int,
    *,
    spatial: bool,
    affine: bool,
    momentum: float = 0.1,
    eps: float = 1e-5,
    groups: int | None = None,
) -> nn.Module:
    """The norm layer `name` over `channels` features (spatial=True: feature maps N×C×H×W)."""
    if name == "none":
        return nn.Identity()
    if name == "batch":
        cls = nn.BatchNorm2d if spatial else nn.BatchNorm1d
        return cls(channels, eps=eps, momentum=momentum, affine=affine)
    if name == "layer":
        if spatial:
            return ChannelLayerNorm(channels, eps=eps, affine=affine)
        return nn.LayerNorm(channels, eps=eps, elementwise_affine=affine)
    if name == "group":
        groups = default_groups(channels) if groups is None else groups
        if channels % groups:
            raise UserError(
                f"norm.groups={groups} is not allowed: it must divide the number of channels "
                f"({channels}). Choose a divisor of {channels}, or norm.groups=null for min(32, channels)."
            )
        return nn.GroupNorm(groups, channels, eps=eps, affine=affine)
    raise UserError(f"norm={name} is not known: choose one of batch, layer, group, none.")
