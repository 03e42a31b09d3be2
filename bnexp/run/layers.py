"""Small registries that turn config names into layers; swappable layers share one signature.

A norm layer is made by `make_norm(name, channels, spatial=..., ...)`; an activation by
`make_activation(name)`. Model code asks for a name and never branches on the type itself.
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F
from torch import nn

from bnexp.errors import UserError

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


def noise_generator(seed: int, layer: int, step: int, stream: str) -> torch.Generator:
    """The CPU generator of one noisy layer's draws at one step: seeded by a hash of
    (run seed, layer, step, stream), so a draw depends on nothing else (see _NoisyAfter)."""
    digest = hashlib.sha256(f"bnexp-noise:{seed}:{layer}:{step}:{stream}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


class _NoisyAfter:
    """Santurkar et al.'s "noisy" BatchNorm (arXiv 1805.11604v3, Sec. 2.1; Appendix A.2.1 and
    Algorithm 1, pp. 13-14): noise after the layer it is mixed into that perturbs each
    activation of each sample with i.i.d. noise of non-zero mean and non-unit variance, whose
    distribution changes every step. Mixed into BatchNorm it is `norm=noisy`; into Identity,
    `norm=noise_only` (the paper's control: "the same amount of noise" without BN, p. 4).

    Noise model (Algorithm 1), with n_mu = noise_shift, n_sigma = noise_scale,
    r_mu = noise_shift_jitter, r_sigma = noise_scale_jitter (the paper's 0.5, 1.25, 0.1, 0.1):
    at every training step t, for each unit (channel) j, mu_j ~ U(-n_mu, n_mu) and
    sigma_j ~ U(1, n_sigma); then for each activation (sample i, unit j, and for feature maps each
    position: "treating the height and width dimensions as part of the batch"),
    m ~ U(mu_j - r_mu, mu_j + r_mu) and s ~ N(sigma_j, r_sigma^2) (r_sigma read as the standard
    deviation), and the output is a * s + m, where a is the wrapped layer's output (BN's after
    gamma and beta). jitters of 0 give one scale and shift per unit shared by the whole batch.

    Random numbers (an exact convention: tests/test_reference.py reproduces it). No draw uses
    torch's global generator. Each comes from `noise_generator(seed, layer, t, stream)`, where
    seed = the run's seed and layer = the layer's 1-based index among the hidden blocks
    (layers.csv's `layer`), both set by `seed_noise` in build_model, and t is a step index:
    - A training pass (train mode, autograd on) is step t = the number of training passes this
      layer made before it (in bnexp's loop: the training step, 0 ... steps). With a of shape
      (N, C) or (N, C, H, W), dtype = a's, drawn on the CPU in this order:
          g = noise_generator(seed, layer, t, "train")
          mu = n_mu * (2 * torch.rand(C, generator=g, dtype=dtype) - 1)
          sigma = 1 + (n_sigma - 1) * torch.rand(C, generator=g, dtype=dtype)
          u = torch.rand(a.shape, generator=g, dtype=dtype)
          z = torch.randn(a.shape, generator=g, dtype=dtype)
          s = sigma[per channel] + r_sigma * z;  m = mu[per channel] + r_mu * (2 * u - 1)
          output = a * s + m
    - A pass in train mode without autograd (bnexp's probe batch, of another size) is not a
      step and does not count: it sees step t = (training passes so far) - 1 (0 before any), the
      step whose distribution the training batch just saw: mu and sigma are that step's (the
      same two first draws of noise_generator(seed, layer, t, "train")), u and z are drawn, in
      the same order, from noise_generator(seed, layer, t, "probe") instead of g.
    So the training noise never depends on how often a run logs, and a probe pass at step t
    draws the same noise whenever it runs.
    - Eval mode: the noise is replaced by its expectation, output = a * (1 + n_sigma) / 2
      (E[s] = E[sigma], E[m] = E[mu] = 0), as dropout does; no step is counted.
    """

    def __init__(
        self,
        channels: int,
        *,
        noise_shift: float,
        noise_scale: float,
        noise_shift_jitter: float,
        noise_scale_jitter: float,
        **norm_options,
    ):
        super().__init__(channels, **norm_options)  # the layer it is mixed into
        self.noise_shift, self.noise_scale = noise_shift, noise_scale
        self.noise_shift_jitter, self.noise_scale_jitter = noise_shift_jitter, noise_scale_jitter
        self.noise_seed, self.noise_layer = 0, 0  # set by seed_noise (build_model)
        self.noise_steps = 0  # training passes so far

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if not self.training:
            return out * ((1 + self.noise_scale) / 2)
        if torch.is_grad_enabled():
            step, stream = self.noise_steps, "train"
            self.noise_steps += 1
        else:
            step, stream = max(self.noise_steps - 1, 0), "probe"
        scale, shift = self.draw(tuple(out.shape), out.dtype, step, stream)
        return out * scale.to(out.device) + shift.to(out.device)

    def draw(
        self, shape: tuple[int, ...], dtype: torch.dtype, step: int, stream: str
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(s, m), each of `shape`: step `step`'s per-activation scales and shifts (the class
        docstring gives the exact order of the draws)."""
        channels = shape[1]
        g = noise_generator(self.noise_seed, self.noise_layer, step, "train")
        mu = self.noise_shift * (2 * torch.rand(channels, generator=g, dtype=dtype) - 1)
        sigma = 1 + (self.noise_scale - 1) * torch.rand(channels, generator=g, dtype=dtype)
        if stream != "train":
            g = noise_generator(self.noise_seed, self.noise_layer, step, stream)
        u = torch.rand(shape, generator=g, dtype=dtype)
        z = torch.randn(shape, generator=g, dtype=dtype)
        view = (1, channels) + (1,) * (len(shape) - 2)  # per channel: (1, C) or (1, C, 1, 1)
        scale = sigma.view(view) + self.noise_scale_jitter * z
        shift = mu.view(view) + self.noise_shift_jitter * (2 * u - 1)
        return scale, shift

    def extra_repr(self) -> str:
        noise = (
            f"noise_shift={self.noise_shift}, noise_scale={self.noise_scale}, "
            f"noise_shift_jitter={self.noise_shift_jitter}, noise_scale_jitter={self.noise_scale_jitter}"
        )
        inner = super().extra_repr()
        return f"{inner}, {noise}" if inner else noise


class NoisyBatchNorm1d(_NoisyAfter, nn.BatchNorm1d):
    """Noisy BN over (N, C) features: one noise draw per sample and unit."""


class NoisyBatchNorm2d(_NoisyAfter, nn.BatchNorm2d):
    """Noisy BN over (N, C, H, W) feature maps: one noise draw per sample, channel and position."""


class ActivationNoise(_NoisyAfter, nn.Identity):
    """The noisy-BN noise without BN (`norm=noise_only`): Santurkar et al.'s control, "adding
    the same amount of noise to the activations of the standard (non-BatchNorm) network"."""


NOISY_LAYERS = (NoisyBatchNorm1d, NoisyBatchNorm2d, ActivationNoise)


def seed_noise(model: nn.Module, seed: int) -> None:
    """Gives every noise layer of `model` its identity for noise_generator: the run's seed and
    its 1-based index among the model's noise layers in module order (one per hidden block, so
    the index is layers.csv's `layer`)."""
    layers = [m for m in model.modules() if isinstance(m, _NoisyAfter)]
    for index, layer in enumerate(layers, start=1):
        layer.noise_seed, layer.noise_layer = seed, index


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
    noise_shift: float = 0.5,
    noise_scale: float = 1.25,
    noise_shift_jitter: float = 0.1,
    noise_scale_jitter: float = 0.1,
) -> nn.Module:
    """The norm layer `name` over `channels` features (spatial=True: feature maps N×C×H×W)."""
    if name == "none":
        return nn.Identity()
    if name == "batch":
        cls = nn.BatchNorm2d if spatial else nn.BatchNorm1d
        return cls(channels, eps=eps, momentum=momentum, affine=affine)
    noise = dict(
        noise_shift=noise_shift, noise_scale=noise_scale,
        noise_shift_jitter=noise_shift_jitter, noise_scale_jitter=noise_scale_jitter,
    )  # fmt: skip
    if name == "noisy":
        cls = NoisyBatchNorm2d if spatial else NoisyBatchNorm1d
        return cls(channels, eps=eps, momentum=momentum, affine=affine, **noise)
    if name == "noise_only":
        return ActivationNoise(channels, **noise)
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
    raise UserError(
        f"norm={name} is not known: choose one of batch, noisy, noise_only, layer, group, none."
    )
