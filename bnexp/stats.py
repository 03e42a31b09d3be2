"""Per-layer statistics as tensors. Pure: no hooks, no I/O; the caller moves the result to the
host once per log step (one `.tolist()` for all layers), never one `.item()` per number.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

# The layers.csv statistics, in contract order (DESIGN.md section 5); `step, layer` come first.
LAYER_STATS = [
    "grad_w_mean_abs", "grad_w_norm", "grad_w_ratio", "update_ratio", "grad_act_mean_abs",
    "pre_mean", "pre_std", "pre_min", "pre_max", "pre_p15", "pre_p50", "pre_p85",
    "act_mean", "act_std", "act_min", "act_max", "act_sat_frac",
    "unit_p15", "unit_p50", "unit_p85",
    "gamma_mean", "gamma_std", "beta_mean", "beta_std",
    "running_mean_mean", "running_var_mean",
]  # fmt: skip

UPDATE_RATIO_COLUMN = LAYER_STATS.index("update_ratio")

PERCENTILES = (0.15, 0.50, 0.85)
# Percentiles of larger tensors are estimated on this many elements, so that a log step costs
# the same at any batch size (a CNN feature map holds millions).
PERCENTILE_SAMPLE = 65_536

NAN = float("nan")


@functools.lru_cache(maxsize=64)
def _sample_index(numel: int, size: int) -> Tensor:
    """A fixed random subset of positions: the same for every call with this tensor size."""
    generator = torch.Generator().manual_seed(numel)
    return torch.randint(numel, (size,), generator=generator)


def percentiles(values: Tensor, sample: int = PERCENTILE_SAMPLE) -> Tensor:
    """The 15th, 50th and 85th percentiles of all elements (linear interpolation)."""
    flat = values.detach().reshape(-1).float()
    if flat.numel() > sample:
        flat = flat[_sample_index(flat.numel(), sample)]
    return torch.quantile(flat, torch.tensor(PERCENTILES))


def moments(values: Tensor) -> Tensor:
    """mean, std, min, max of all elements: exact."""
    flat = values.detach().reshape(-1).float()
    std = flat.std() if flat.numel() > 1 else flat.new_tensor(NAN)
    return torch.stack([flat.mean(), std, flat.min(), flat.max()])


def saturation_fraction(act: str, output: Tensor) -> Tensor:
    """Fraction of activation outputs in the flat, gradient-starved region of the nonlinearity.

    sigmoid: output < 0.05 or > 0.95 (|input| > 2.94); tanh: |output| > 0.97; relu: output == 0.
    """
    output = output.detach()
    if act == "sigmoid":
        saturated = (output < 0.05) | (output > 0.95)
    elif act == "tanh":
        saturated = output.abs() > 0.97
    elif act == "relu":
        saturated = output == 0
    else:  # identity has no flat region
        return output.new_tensor(NAN)
    return saturated.float().mean()


def unit_values(pre: Tensor, unit: int) -> Tensor:
    """All values of one unit (MLP: a column) or channel (CNN: N×H×W values)."""
    return pre.detach()[:, unit]


def weight_gradient_stats(weight: Tensor) -> Tensor:
    """mean |dL/dW|, ||dL/dW||_2 and std(dL/dW) / std(W)."""
    grad = weight.grad.detach() if weight.grad is not None else torch.full_like(weight, NAN)
    return torch.stack([grad.abs().mean(), grad.norm(), grad.std() / weight.detach().std()])


def update_ratio(weight_after: Tensor, weight_before: Tensor) -> Tensor:
    """||ΔW|| / ||W|| of one optimiser step (W before the step)."""
    return (weight_after.detach() - weight_before).norm() / weight_before.norm()


def summary_or_nan(values: Tensor | None, count: int) -> Tensor:
    if values is None:
        return torch.full((count,), NAN)
    values = values.detach().float()
    std = values.std() if values.numel() > 1 else values.new_tensor(NAN)
    return torch.stack([values.mean(), std])


def norm_parameter_stats(norm: torch.nn.Module) -> Tensor:
    """gamma mean/std, beta mean/std, mean running mean, mean running variance (NaN if absent)."""
    gamma = getattr(norm, "weight", None)
    beta = getattr(norm, "bias", None)
    running_mean = getattr(norm, "running_mean", None)
    running_var = getattr(norm, "running_var", None)
    running = torch.stack([
        running_mean.mean() if running_mean is not None else torch.tensor(NAN),
        running_var.mean() if running_var is not None else torch.tensor(NAN),
    ])  # fmt: skip
    return torch.cat([summary_or_nan(gamma, 2), summary_or_nan(beta, 2), running])


def layer_stats(
    *,
    act: str,
    weight: Tensor,
    pre: Tensor,
    output: Tensor,
    grad_output: Tensor | None,
    probe_pre: Tensor | None,
    unit: int,
    norm: torch.nn.Module,
) -> Tensor:
    """One row of LAYER_STATS for one hidden layer, as a float tensor.

    `update_ratio` is left NaN: it is known only after the optimiser step (UPDATE_RATIO_COLUMN).
    """
    grad_act = grad_output.detach().abs().mean() if grad_output is not None else torch.tensor(NAN)
    unit_pcts = (
        percentiles(unit_values(probe_pre, unit)) if probe_pre is not None else torch.full((3,), NAN)
    )
    row = torch.cat([
        weight_gradient_stats(weight),
        torch.tensor([NAN]),
        grad_act.reshape(1),
        moments(pre),
        percentiles(pre),
        moments(output),
        saturation_fraction(act, output).reshape(1),
        unit_pcts,
        norm_parameter_stats(norm),
    ])  # fmt: skip
    assert row.numel() == len(LAYER_STATS)
    return row.float()

