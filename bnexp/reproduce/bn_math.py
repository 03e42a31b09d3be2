"""Batch normalization written out by hand, and identity checks of it against torch's layers.

Two texts bnexp answers derive BN's backward pass by hand, and one demonstrates what PyTorch's
`momentum` means for the running statistics. This module holds that algebra and the checks that
compare it with torch's real `nn.BatchNorm1d` / `nn.BatchNorm2d`. These are identity checks: true
by construction when both sides are right, so a report shows them apart from reproduced claims.
Everything here is pure (no printing, no files) and works in any float dtype; the checks run in
float64 so that the only differences left are rounding.

Shapes: x is (N, C) or (N, C, *spatial); statistics are per channel (dimension 1), over the
batch and every spatial position, as in nn.BatchNorm1d/2d. "Batch size" below means the number
of values each channel's statistics are taken over, m = x.numel() / C.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

# --------------------------------------------------------------------------------------------
# Forward and the two hand-derived backward passes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BNCache:
    """What the backward pass needs from the forward pass (all tensors broadcast against x)."""

    x: Tensor
    mean: Tensor  # batch mean per channel, shape (1, C, 1...)
    var: Tensor  # biased batch variance (divides by m), the one BN normalises with
    eps: float
    x_hat: Tensor  # (x - mean) / sqrt(var + eps)
    gamma: Tensor | None  # None: affine off (gamma = 1, beta = 0, no parameter gradients)
    count: int  # m, the values per channel


def _reduce_dims(x: Tensor) -> list[int]:
    if x.dim() < 2:
        raise ValueError(f"x must be (N, C) or (N, C, *spatial); got shape {tuple(x.shape)}.")
    return [0, *range(2, x.dim())]


def _per_channel(values: Tensor, x: Tensor) -> Tensor:
    """A (C,) tensor as (1, C, 1...) so that it broadcasts against x."""
    return values.reshape(1, -1, *([1] * (x.dim() - 2)))


def bn_forward(
    x: Tensor, gamma: Tensor | None, beta: Tensor | None, eps: float
) -> tuple[Tensor, BNCache]:
    """Training-mode BN: y = gamma * (x - mean_B) / sqrt(var_B + eps) + beta, var_B biased."""
    dims = _reduce_dims(x)
    count = x.numel() // x.shape[1]
    mean = x.mean(dim=dims, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)  # biased: divides by m, not m - 1
    x_hat = (x - mean) / torch.sqrt(var + eps)
    out = x_hat
    if gamma is not None:
        out = out * _per_channel(gamma, x)
    if beta is not None:
        out = out + _per_channel(beta, x)
    return out, BNCache(x=x, mean=mean, var=var, eps=eps, x_hat=x_hat, gamma=gamma, count=count)


def _parameter_grads(dout: Tensor, cache: BNCache) -> tuple[Tensor | None, Tensor | None]:
    if cache.gamma is None:
        return None, None
    dims = _reduce_dims(dout)
    return (dout * cache.x_hat).sum(dim=dims), dout.sum(dim=dims)


def bn_backward_closed_form(
    dout: Tensor, cache: BNCache
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """(dx, dgamma, dbeta) by the step-by-step chain rule the texts write out (MATLAB style):

        d_xhat   = dout * gamma
        d_sigma2 = -1/2 * sum(d_xhat * (x - mu)) * (sigma2 + eps)^(-3/2)
        d_mu     = -sum(d_xhat) / sqrt(sigma2 + eps) + d_sigma2 * (-2/m) * sum(x - mu)
        dx       = d_xhat / sqrt(sigma2 + eps) + d_sigma2 * 2 (x - mu) / m + d_mu / m
        dgamma   = sum(dout * x_hat),  dbeta = sum(dout)

    Sums run over the batch (and spatial positions) of each channel; sigma2 is the biased
    batch variance. sum(x - mu) is zero up to rounding; it is kept because the texts keep it.
    """
    dims = _reduce_dims(dout)
    m = cache.count
    centred = cache.x - cache.mean
    d_xhat = dout if cache.gamma is None else dout * _per_channel(cache.gamma, dout)
    var_eps = cache.var + cache.eps
    d_sigma2 = -0.5 * (d_xhat * centred).sum(dim=dims, keepdim=True) * var_eps**-1.5
    d_mu = -d_xhat.sum(dim=dims, keepdim=True) / torch.sqrt(var_eps) + d_sigma2 * (
        -2.0 / m
    ) * centred.sum(dim=dims, keepdim=True)
    dx = d_xhat / torch.sqrt(var_eps) + d_sigma2 * 2.0 * centred / m + d_mu / m
    return (dx, *_parameter_grads(dout, cache))


def bn_backward_compact(
    dout: Tensor, cache: BNCache
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """(dx, dgamma, dbeta) by the compact form of the same gradient:

    dx = (1/m) * gamma / sqrt(sigma2 + eps)
               * (m * dout - sum(dout) - x_hat * sum(dout * x_hat))
    """
    dims = _reduce_dims(dout)
    m = cache.count
    scale = 1.0 / torch.sqrt(cache.var + cache.eps)
    if cache.gamma is not None:
        scale = scale * _per_channel(cache.gamma, dout)
    dout_sum = dout.sum(dim=dims, keepdim=True)
    dout_xhat_sum = (dout * cache.x_hat).sum(dim=dims, keepdim=True)
    dx = scale / m * (m * dout - dout_sum - cache.x_hat * dout_xhat_sum)
    return (dx, *_parameter_grads(dout, cache))


# --------------------------------------------------------------------------------------------
# Identity check: the hand-derived backward against autograd through torch's own layer
# --------------------------------------------------------------------------------------------

Backward = Callable[[Tensor, BNCache], tuple[Tensor, Tensor | None, Tensor | None]]

BATCH_SIZES = (2, 3, 4, 8, 16, 32, 64, 128, 256)


def relative_error(measured: Tensor, reference: Tensor) -> float:
    """max |measured - reference| / max |reference|: an error relative to the tensor's scale.

    Element-wise relative errors blow up where a gradient entry is near zero; this normwise
    (infinity-norm) form does not, and is the usual measure for gradient checks.
    """
    scale = reference.abs().max().item()
    diff = (measured - reference).abs().max().item()
    return diff / scale if scale > 0 else diff


@dataclass(frozen=True)
class BackwardCase:
    """One input of the identity check and the relative errors measured on it."""

    batch_size: int
    affine: bool
    forward_error: float  # bn_forward's output against nn.BatchNorm1d's
    dx_error: float
    dgamma_error: float  # NaN when affine is off
    dbeta_error: float

    @property
    def max_error(self) -> float:
        errors = [self.forward_error, self.dx_error, self.dgamma_error, self.dbeta_error]
        return max(e for e in errors if e == e)  # NaN (affine off) left out


@dataclass(frozen=True)
class BackwardCheck:
    """The identity check over every batch size and affine setting."""

    cases: tuple[BackwardCase, ...]

    @property
    def max_relative_error(self) -> float:
        return max(case.max_error for case in self.cases)


def bn_backward_identity(
    backward: Backward = bn_backward_closed_form,
    *,
    batch_sizes: Sequence[int] = BATCH_SIZES,
    affine: Sequence[bool] = (True, False),
    features: int = 7,
    eps: float = 1e-5,
    seed: int = 0,
) -> BackwardCheck:
    """Compare `backward` with autograd through torch's nn.BatchNorm1d in float64 (train mode).

    For each batch size and affine setting: random x (per-feature offsets and scales, so that
    the statistics are not trivially 0 and 1), random gamma and beta (not torch's 1 and 0, so
    that a forgotten gamma shows) and a random upstream gradient dout.
    """
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    cases = []
    for with_affine in affine:
        for batch in batch_sizes:
            x = randn(batch, features) * (0.5 + 3 * randn(features).abs()) + 2 * randn(features)
            dout = randn(batch, features)
            layer = nn.BatchNorm1d(features, eps=eps, affine=with_affine).double().train()
            gamma = beta = None
            if with_affine:
                with torch.no_grad():
                    layer.weight.copy_(0.5 + randn(features).abs())
                    layer.bias.copy_(randn(features))
                gamma, beta = layer.weight.detach().clone(), layer.bias.detach().clone()
            x_leaf = x.clone().requires_grad_(True)
            reference_out = layer(x_leaf)
            reference_out.backward(dout)

            out, cache = bn_forward(x, gamma, beta, eps)
            dx, dgamma, dbeta = backward(dout, cache)
            nan = float("nan")
            cases.append(
                BackwardCase(
                    batch_size=batch,
                    affine=with_affine,
                    forward_error=relative_error(out, reference_out.detach()),
                    dx_error=relative_error(dx, x_leaf.grad),
                    dgamma_error=relative_error(dgamma, layer.weight.grad) if with_affine else nan,
                    dbeta_error=relative_error(dbeta, layer.bias.grad) if with_affine else nan,
                )
            )
    return BackwardCheck(cases=tuple(cases))


# --------------------------------------------------------------------------------------------
# Running statistics: what PyTorch's `momentum` means, and Bessel's correction
# --------------------------------------------------------------------------------------------

# The text's worked example and the values it prints (issue 12, section 6).
WORKED_EXAMPLE_PUBLISHED_MEAN = (3.7125, 5.7375)
WORKED_EXAMPLE_MOMENTUM = 0.9


@dataclass(frozen=True)
class WorkedExample:
    """torch.manual_seed(0); x = torch.randint(0, 10, [2, 2, 2, 2]).float();
    BatchNorm2d(2, affine=False, momentum=0.9)(x): what the layer's running mean became."""

    x: tuple[float, ...]  # the drawn input, flattened (it depends on torch's generator)
    running_mean: tuple[float, ...]  # measured on torch's layer
    by_hand: tuple[float, ...]  # (1 - 0.9) * 0 + 0.9 * batch mean, from x in float64
    published: tuple[float, ...]
    running_var: tuple[float, ...]  # measured on torch's layer
    running_var_by_hand: tuple[float, ...]  # (1 - 0.9) * 1 + 0.9 * unbiased batch variance

    @property
    def max_error_vs_published(self) -> float:
        return max(abs(a - b) for a, b in zip(self.running_mean, self.published))

    @property
    def max_error_vs_by_hand(self) -> float:
        return max(abs(a - b) for a, b in zip(self.running_mean, self.by_hand))


@dataclass(frozen=True)
class UpdateRule:
    """Several training steps of torch's BatchNorm1d against the recurrence
    running = (1 - momentum) * running + momentum * batch_statistic computed by hand."""

    momentum: float
    steps: int
    max_mean_error: float  # max over steps of relative_error(torch's, the recurrence's)
    max_var_error: float
    # Under the opposite convention (running = momentum * running + (1 - momentum) * batch,
    # Keras's), the same batches give running statistics this far away: the check can fail
    # (except at momentum 0.5, where the two conventions coincide).
    max_mean_error_opposite_convention: float


@dataclass(frozen=True)
class BesselCorrection:
    """One step from torch's initial state with momentum 1, so the running variance is exactly
    the batch variance the layer used for it; and the normalised output, compared with both
    normalisations."""

    batch_size: int
    running_var_over_biased_var: float  # m / (m - 1) if torch stores the unbiased variance
    expected_ratio: float  # m / (m - 1)
    running_var_error_vs_unbiased: float  # max |running_var - unbiased var| (relative)
    output_error_vs_biased: float  # output against (x - mean) / sqrt(biased var + eps)
    output_error_vs_unbiased: float  # output against (x - mean) / sqrt(unbiased var + eps)


@dataclass(frozen=True)
class RunningAverageChecks:
    worked_example: WorkedExample
    update_rule: UpdateRule
    bessel: BesselCorrection


def _worked_example() -> WorkedExample:
    # The text's own recipe: it draws x from torch's global generator, so save and restore the
    # generator's state to leave the caller's random stream as it was.
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(0)
        x = torch.randint(0, 10, [2, 2, 2, 2]).float()
    finally:
        torch.random.set_rng_state(state)
    layer = nn.BatchNorm2d(2, affine=False, momentum=WORKED_EXAMPLE_MOMENTUM)
    layer(x)
    batch_mean = x.double().mean(dim=(0, 2, 3))
    batch_var = x.double().var(dim=(0, 2, 3), correction=1)
    by_hand = (1 - WORKED_EXAMPLE_MOMENTUM) * 0.0 + WORKED_EXAMPLE_MOMENTUM * batch_mean
    var_by_hand = (1 - WORKED_EXAMPLE_MOMENTUM) * 1.0 + WORKED_EXAMPLE_MOMENTUM * batch_var
    return WorkedExample(
        x=tuple(x.flatten().tolist()),
        running_mean=tuple(layer.running_mean.tolist()),
        by_hand=tuple(by_hand.tolist()),
        published=WORKED_EXAMPLE_PUBLISHED_MEAN,
        running_var=tuple(layer.running_var.tolist()),
        running_var_by_hand=tuple(var_by_hand.tolist()),
    )


def _update_rule(momentum: float, steps: int, batch: int, features: int, seed: int) -> UpdateRule:
    generator = torch.Generator().manual_seed(seed)
    layer = nn.BatchNorm1d(features, momentum=momentum).double().train()
    mean = torch.zeros(features, dtype=torch.float64)  # torch's initial running statistics
    var = torch.ones(features, dtype=torch.float64)
    opposite_mean = mean.clone()
    mean_error = var_error = opposite_error = 0.0
    for step in range(steps):
        # A drifting input (as a network's activations drift while it trains).
        shift = 3.0 * torch.randn(features, generator=generator, dtype=torch.float64) + step
        noise = torch.randn(batch, features, generator=generator, dtype=torch.float64)
        x = shift + (1 + step) * noise
        layer(x)
        batch_mean = x.mean(dim=0)
        batch_var = ((x - batch_mean) ** 2).sum(dim=0) / (batch - 1)
        mean = (1 - momentum) * mean + momentum * batch_mean
        var = (1 - momentum) * var + momentum * batch_var
        opposite_mean = momentum * opposite_mean + (1 - momentum) * batch_mean
        mean_error = max(mean_error, relative_error(layer.running_mean, mean))
        var_error = max(var_error, relative_error(layer.running_var, var))
        opposite_error = max(opposite_error, relative_error(layer.running_mean, opposite_mean))
    return UpdateRule(
        momentum=momentum,
        steps=steps,
        max_mean_error=mean_error,
        max_var_error=var_error,
        max_mean_error_opposite_convention=opposite_error,
    )


def _bessel(batch: int, features: int, eps: float, seed: int) -> BesselCorrection:
    generator = torch.Generator().manual_seed(seed)
    x = 1.5 + 2.0 * torch.randn(batch, features, generator=generator, dtype=torch.float64)
    layer = nn.BatchNorm1d(features, eps=eps, momentum=1.0, affine=False).double().train()
    out = layer(x).detach()
    mean = x.mean(dim=0)
    squares = ((x - mean) ** 2).sum(dim=0)
    biased, unbiased = squares / batch, squares / (batch - 1)
    ratio = layer.running_var / biased
    return BesselCorrection(
        batch_size=batch,
        running_var_over_biased_var=ratio.mean().item(),
        expected_ratio=batch / (batch - 1),
        running_var_error_vs_unbiased=relative_error(layer.running_var, unbiased),
        output_error_vs_biased=relative_error(out, (x - mean) / torch.sqrt(biased + eps)),
        output_error_vs_unbiased=relative_error(out, (x - mean) / torch.sqrt(unbiased + eps)),
    )


def running_average_checks(
    *, momentum: float = 0.1, steps: int = 20, batch: int = 4, features: int = 5, seed: int = 0
) -> RunningAverageChecks:
    """The three identity checks of the running statistics, each with its measured numbers.

    A small batch (default 4) makes Bessel's factor m/(m-1) = 4/3 large enough to see.
    """
    return RunningAverageChecks(
        worked_example=_worked_example(),
        update_rule=_update_rule(momentum, steps, batch, features, seed),
        bessel=_bessel(batch, features, eps=1e-5, seed=seed),
    )
