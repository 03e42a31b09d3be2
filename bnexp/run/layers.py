"""The pieces a network is built from, as registries: name -> builder.

- ACTIVATIONS: `act=NAME` -> the activation module.
- NORMS: `norm=NAME` -> a NormSpec: how to build the layer from its `norm.*` keys, which keys it
  reads (the config hash covers those), whether it centres its input (then the weight layer
  before it needs no bias), whether it normalises with batch statistics (then batch_size >= 2),
  and its own checks of the config. `get_norm_layer(cfg, spatial)` turns a config into a
  factory `norm_layer(channels) -> nn.Module`; model code takes that factory and never branches
  on the norm's name. A new norm is one NORMS entry and one configs/norm/NAME.yaml (plus
  config.NormConfig fields and their value rules if it brings keys of its own).
- Block: weight layer -> norm -> activation (-> dropout), the unit every measurement addresses.

Pure PyTorch: no I/O, no Hydra. The config arrives duck-typed (bnexp.run.config imports this
module for the registry, not the other way round).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnexp.errors import UserError
from bnexp.run.renorm import (
    PAPER_MOMENTUM,
    PAPER_TRAINING_STEPS,
    BatchRenorm1d,
    BatchRenorm2d,
    RenormSchedule,
)

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


def noise_generator(
    seed: int, layer: int, step: int, stream: str, device: torch.device | str = "cpu"
) -> torch.Generator:
    """The generator of one noisy layer's draws at one step, on `device`: seeded by a hash of
    (run seed, layer, step, stream), so a draw depends on nothing else (see _NoisyAfter). A
    CUDA generator (Philox) draws other numbers from the same seed than the CPU's (Mersenne
    Twister): noisy runs on a GPU see noise of the same distribution, not the same noise."""
    digest = hashlib.sha256(f"bnexp-noise:{seed}:{layer}:{step}:{stream}".encode()).digest()
    return torch.Generator(device=device).manual_seed(int.from_bytes(digest[:8], "little") >> 1)


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
      (N, C) or (N, C, H, W), dtype = a's, drawn on a's device (the CPU's stream is the
      convention; a GPU's generator gives other numbers) in this order:
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
        # Drawn where `out` lives: a copy of a feature map's noise from the CPU each step would
        # cost a host transfer the size of the activations.
        scale, shift = self.draw(tuple(out.shape), out.dtype, step, stream, out.device)
        return out * scale + shift

    def draw(
        self, shape: tuple[int, ...], dtype: torch.dtype, step: int, stream: str,
        device: torch.device | str = "cpu",
    ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """(s, m), each of `shape`, on `device`: step `step`'s per-activation scales and shifts
        (the class docstring gives the exact order of the draws)."""
        channels = shape[1]
        g = noise_generator(self.noise_seed, self.noise_layer, step, "train", device)
        draw = {"generator": g, "dtype": dtype, "device": device}
        mu = self.noise_shift * (2 * torch.rand(channels, **draw) - 1)
        sigma = 1 + (self.noise_scale - 1) * torch.rand(channels, **draw)
        if stream != "train":
            draw["generator"] = noise_generator(
                self.noise_seed, self.noise_layer, step, stream, device
            )
        u = torch.rand(shape, **draw)
        z = torch.randn(shape, **draw)
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


# ---------------------------------------------------------------------------------------------
# Norm builders: build(channels, site, **keys) with the keys' defaults (the papers' constants).
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NormSite:
    """What the network around a norm layer fixes, the same for every norm."""

    spatial: bool  # feature maps N×C×H×W (CNN) rather than features N×C (MLP)
    affine: bool  # learnable gamma/beta (false: fixed at 1/0)
    run_steps: int | None = None  # training steps of the run (schedules scaled to the run)


NOISE_DEFAULTS = dict(
    noise_shift=0.5, noise_scale=1.25, noise_shift_jitter=0.1, noise_scale_jitter=0.1
)  # Santurkar et al. 2018, Algorithm 1


def _identity(channels: int, site: NormSite) -> nn.Module:
    return nn.Identity()


def _batch(channels: int, site: NormSite, *, momentum: float = 0.1, eps: float = 1e-5) -> nn.Module:
    cls = nn.BatchNorm2d if site.spatial else nn.BatchNorm1d
    return cls(channels, eps=eps, momentum=momentum, affine=site.affine)


def _noisy(
    channels: int, site: NormSite, *, momentum: float = 0.1, eps: float = 1e-5, **noise: float
) -> nn.Module:
    cls = NoisyBatchNorm2d if site.spatial else NoisyBatchNorm1d
    return cls(
        channels, eps=eps, momentum=momentum, affine=site.affine, **{**NOISE_DEFAULTS, **noise}
    )


def _noise_only(channels: int, site: NormSite, **noise: float) -> nn.Module:
    return ActivationNoise(channels, **{**NOISE_DEFAULTS, **noise})


def _layer(channels: int, site: NormSite, *, eps: float = 1e-5) -> nn.Module:
    if site.spatial:
        return ChannelLayerNorm(channels, eps=eps, affine=site.affine)
    return nn.LayerNorm(channels, eps=eps, elementwise_affine=site.affine)


def _group(
    channels: int, site: NormSite, *, eps: float = 1e-5, groups: int | None = None
) -> nn.Module:
    groups = default_groups(channels) if groups is None else groups
    if channels % groups:
        raise UserError(
            f"norm.groups={groups} is not allowed: it must divide the number of channels "
            f"({channels}). Choose a divisor of {channels}, or norm.groups=null for min(32, channels)."
        )
    return nn.GroupNorm(groups, channels, eps=eps, affine=site.affine)


# The paper's schedule (Ioffe 2017, Sec. 4): plain BN for 5k steps, r_max 3 by 40k, d_max 5 by
# 25k, written for runs of 130k steps; a run of `steps` gets it scaled by steps / 130k.
RENORM_DEFAULTS = dict(
    renorm_r_max=3.0, renorm_d_max=5.0, renorm_warmup_steps=5_000, renorm_r_max_at=40_000,
    renorm_d_max_at=25_000, renorm_schedule_steps=PAPER_TRAINING_STEPS,
)  # fmt: skip
# The least plain-BN warm-up, in time constants (1/momentum steps) of the moving averages, that
# norm=renorm accepts: below it the averages still hold mostly their initial values (mean 0,
# std 1) when r and d start to correct towards them. The paper's warm-up holds 50.
RENORM_MIN_WARMUP_TIME_CONSTANTS = 1.0


def renorm_schedule(run_steps: int | None, **keys: float) -> RenormSchedule:
    """The r_max/d_max schedule that the `renorm_*` keys describe for a run of `run_steps`:
    scaled by run_steps / renorm_schedule_steps, or unscaled (absolute steps) when
    renorm_schedule_steps is None or the run's length is unknown."""
    k = {**RENORM_DEFAULTS, **keys}
    fields = dict(
        warmup_steps=k["renorm_warmup_steps"], r_max_final=k["renorm_r_max"],
        r_max_reached_at=k["renorm_r_max_at"], d_max_final=k["renorm_d_max"],
        d_max_reached_at=k["renorm_d_max_at"],
    )  # fmt: skip
    if k["renorm_schedule_steps"] is None or run_steps is None:
        return RenormSchedule(**fields)
    return RenormSchedule.for_run(run_steps, reference_steps=k["renorm_schedule_steps"], **fields)


def _renorm(
    channels: int,
    site: NormSite,
    *,
    momentum: float = PAPER_MOMENTUM,
    eps: float = 1e-5,
    **schedule_keys: float,
) -> nn.Module:
    cls = BatchRenorm2d if site.spatial else BatchRenorm1d
    schedule = renorm_schedule(site.run_steps, **schedule_keys)
    return cls(channels, eps=eps, momentum=momentum, affine=site.affine, schedule=schedule)


# ---------------------------------------------------------------------------------------------
# Norm checks: what a norm needs of the rest of the config (value ranges of every key are
# checked for every run by bnexp.run.config.validate).
# ---------------------------------------------------------------------------------------------


def _check_group(cfg: Any) -> None:
    # Every layer has width units (MLP) or width·2^k channels (CNN), so dividing width suffices.
    groups, width = cfg.norm.groups, cfg.width
    if groups is not None and width % groups:
        divisors = [d for d in range(1, min(width, 64) + 1) if width % d == 0]
        raise UserError(
            f"norm.groups={groups} is not allowed with width={width}: GroupNorm's "
            f"groups must divide the number of channels (units) of every layer. Choose a divisor "
            f"of {width} (e.g. {', '.join(map(str, divisors))}), or norm.groups=null for the largest divisor of the channels up to 32."
        )


def _check_renorm(cfg: Any) -> None:
    norm = cfg.norm
    if norm.momentum <= 0:
        raise UserError(
            f"norm.momentum={norm.momentum} is not allowed with norm=renorm: it must lie in (0, 1] "
            "(the weight of each new batch in the moving averages; the paper used 0.01)."
        )
    for key in ("renorm_r_max_at", "renorm_d_max_at"):
        if getattr(norm, key) < norm.renorm_warmup_steps:
            raise UserError(
                f"norm.{key}={getattr(norm, key)} is not allowed: the limit is reached after the "
                f"plain-BN warm-up ends, so it must be >= norm.renorm_warmup_steps={norm.renorm_warmup_steps}."
            )
    keys = {k: getattr(norm, k) for k in RENORM_DEFAULTS}
    schedule = renorm_schedule(cfg.steps, **keys)
    warmup = schedule.warmup_steps * schedule.scale
    scaled = (
        f" (the schedule scaled to the run: {norm.renorm_warmup_steps} x steps / "
        f"norm.renorm_schedule_steps = {norm.renorm_warmup_steps} x {cfg.steps} / {norm.renorm_schedule_steps})"
        if norm.renorm_schedule_steps is not None
        else ""
    )
    if warmup >= cfg.steps:
        raise UserError(
            f"norm=renorm with steps={cfg.steps}: the plain-BN warm-up lasts {warmup:g} steps"
            f"{scaled}, the whole run, so r and d never act and the run is plain batch norm. "
            "Shorten norm.renorm_warmup_steps, or scale the schedule to the run "
            f"(norm.renorm_schedule_steps={PAPER_TRAINING_STEPS}, the paper's run length)."
        )
    constants = schedule.warmup_time_constants(norm.momentum)
    if constants < RENORM_MIN_WARMUP_TIME_CONSTANTS:
        least = RENORM_MIN_WARMUP_TIME_CONSTANTS / warmup
        raise UserError(
            f"norm=renorm with steps={cfg.steps} and norm.momentum={norm.momentum}: the plain-BN "
            f"warm-up lasts {warmup:g} steps{scaled}, only {constants:.2g} time constants "
            f"(1/momentum = {1 / norm.momentum:g} steps) of the moving averages, which then still "
            "hold mostly their initial values (mean 0, std 1) when r and d start to correct "
            f"towards them (the paper's warm-up holds 50). bnexp asks for at least "
            f"{RENORM_MIN_WARMUP_TIME_CONSTANTS:g}: raise norm.momentum to >= {least:.3g}, or "
            "make the run longer (steps), or the warm-up (norm.renorm_warmup_steps)."
        )


# ---------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NormSpec:
    """One norm: how to build it and what the rest of bnexp must know about it."""

    build: Callable[
        ..., nn.Module
    ]  # build(channels, site: NormSite, **{key: value for key in keys})
    keys: tuple[str, ...]  # the norm.* keys it reads (besides name); the config hash covers them
    centres: bool  # subtracts a mean: a bias right before it is dead weight (dropped)
    batch_statistics: bool  # normalises with the batch's statistics: needs batch_size >= 2
    check: Callable[[Any], None] | None = None  # check(cfg): UserError for what it cannot do
    summary: str = ""


NOISE_KEYS = tuple(NOISE_DEFAULTS)
NORMS: dict[str, NormSpec] = {
    "batch": NormSpec(_batch, ("momentum", "eps"), centres=True, batch_statistics=True,
                      summary="batch normalization (Ioffe & Szegedy 2015)"),
    "noisy": NormSpec(_noisy, ("momentum", "eps", *NOISE_KEYS), centres=True, batch_statistics=True,
                      summary="BN + Santurkar et al.'s per-activation noise"),
    "noise_only": NormSpec(_noise_only, NOISE_KEYS, centres=False, batch_statistics=False,
                           summary="the same noise without BN"),
    "layer": NormSpec(_layer, ("eps",), centres=True, batch_statistics=False,
                      summary="layer normalization (per-channel gamma/beta on feature maps)"),
    "group": NormSpec(_group, ("eps", "groups"), centres=True, batch_statistics=False,
                      check=_check_group, summary="group normalization (Wu & He 2018)"),
    "none": NormSpec(_identity, (), centres=False, batch_statistics=False,
                     summary="no normalization"),
    "renorm": NormSpec(_renorm, ("momentum", "eps", *RENORM_DEFAULTS), centres=True,
                       batch_statistics=True, check=_check_renorm,
                       summary="batch renormalization (Ioffe 2017), bnexp/run/renorm.py"),
}  # fmt: skip


@dataclass(frozen=True)
class NormLayer:
    """A norm factory: `norm_layer(channels)` makes one layer. `centres` tells the model builders
    whether the weight layer before it needs a bias."""

    name: str
    make: Callable[[int], nn.Module]
    centres: bool

    def __call__(self, channels: int) -> nn.Module:
        return self.make(channels)


def norm_spec(name: str) -> NormSpec:
    if name not in NORMS:
        raise UserError(f"norm={name} is not known: choose one of {', '.join(NORMS)}.")
    return NORMS[name]


def norm_layer_named(
    name: str, *, spatial: bool, affine: bool = True, run_steps: int | None = None, **keys: Any
) -> NormLayer:
    """The factory of norm `name` with its keys' defaults, overridden by `keys`."""
    spec = norm_spec(name)
    unknown = set(keys) - set(spec.keys)
    if unknown:
        raise TypeError(f"norm={name} reads {list(spec.keys)}, not {sorted(unknown)}")
    site = NormSite(spatial=spatial, affine=affine, run_steps=run_steps)
    return NormLayer(name, functools.partial(spec.build, site=site, **keys), spec.centres)


def get_norm_layer(cfg: Any, spatial: bool) -> NormLayer:
    """The factory of the norm a `bnexp.run.config.Config` asks for: norm.NAME with the norm.*
    keys it reads, the run's `affine` and `steps`."""
    name = getattr(cfg.norm.name, "value", cfg.norm.name)
    keys = {key: getattr(cfg.norm, key) for key in norm_spec(name).keys}
    return norm_layer_named(name, spatial=spatial, affine=cfg.affine, run_steps=cfg.steps, **keys)


def make_norm(name: str, channels: int, *, spatial: bool, affine: bool, **keys: Any) -> nn.Module:
    """One layer of norm `name` over `channels` features (spatial=True: feature maps N×C×H×W)."""
    return norm_layer_named(name, spatial=spatial, affine=affine, **keys)(channels)


def has_running_stats(module: nn.Module) -> bool:
    """A norm that keeps running statistics and updates them in train mode: it has
    `running_mean`/`running_var` buffers and `track_running_stats` on (torch's BatchNorm and
    every layer built like it, e.g. batch renorm)."""
    return (
        bool(getattr(module, "track_running_stats", False))
        and isinstance(getattr(module, "running_mean", None), Tensor)
        and isinstance(getattr(module, "running_var", None), Tensor)
    )


# ---------------------------------------------------------------------------------------------
# The hidden block
# ---------------------------------------------------------------------------------------------


class Block(nn.Module):
    """weight layer -> norm -> act (placement "pre") or weight layer -> act -> norm ("post").

    Every hidden block exposes the same three parts, which the measurements rely on:
    `weight_layer` (Linear or Conv2d), `norm` and `act` (the activation module, whose input is
    the "pre" measurement site and whose output is the "act" site).

    `dropout` > 0 adds nn.Dropout(dropout) on the block's output: right after the nonlinearity
    ("pre"), after the norm that follows it ("post"), so that a norm never sees dropped units
    (its running statistics would then not match inference, where nothing is dropped). The
    "act" site is the nonlinearity's output before dropout; dL/d(act) is the gradient there,
    which dropout zeroes for the dropped units.
    """

    def __init__(
        self,
        weight_layer: nn.Module,
        norm: nn.Module,
        act: nn.Module,
        placement: str,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.weight_layer = weight_layer
        self.norm = norm
        self.act = act
        self.placement = placement
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = self.weight_layer(x)
        if self.placement == "pre":
            return self.dropout(self.act(self.norm(x)))
        return self.dropout(self.norm(self.act(x)))


def hidden_blocks(model: nn.Module) -> list[Block]:
    """The measured blocks, in order: hidden layer 1 ... depth."""
    return [m for m in model.modules() if isinstance(m, Block)]


def weight_layer_bias(norm_layer: Callable[[int], nn.Module], placement: str) -> bool:
    """Whether a block's weight layer gets a bias: not when a centring norm directly follows it
    (the norm subtracts the mean, so the bias would be dead weight; the BN paper drops it). A
    plain callable without `centres` keeps the bias."""
    return placement == "post" or not getattr(norm_layer, "centres", False)
