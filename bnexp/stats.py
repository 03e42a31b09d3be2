"""Per-layer statistics as tensors. Pure: no hooks, no I/O.

Each function takes one tensor per hidden layer and returns a (layers × k) tensor, so that the
caller moves everything to the host once per log step (one `.tolist()`), never one `.item()`
per number. When every layer's tensor has the same shape (an MLP of constant width), the
layers are stacked and each statistic is a single batched op: a log step then costs a few
dozen kernel launches whatever the depth.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

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
# the same at any batch size (a CNN feature map holds millions). Moments stay exact.
PERCENTILE_SAMPLE = 65_536

NAN = float("nan")


@functools.lru_cache(maxsize=64)
def _sample_index(numel: int, size: int) -> Tensor:
    """A fixed random subset of positions: the same for every call with this tensor size."""
    generator = torch.Generator().manual_seed(numel)
    return torch.randint(numel, (size,), generator=generator)


def _flat(values: Tensor) -> Tensor:
    """All elements as a vector, without a copy where possible: a channels-last feature map
    (the CNN's) is read in its memory order N·H·W·C, which no statistic here depends on."""
    values = values.detach()
    if values.dim() == 4 and values.is_contiguous(memory_format=torch.channels_last):
        values = values.permute(0, 2, 3, 1)
    return values.reshape(-1).float()


def _rows(tensors: list[Tensor]) -> Tensor | None:
    """The layers' values as one (layers × n) matrix, if they all have the same size."""
    if len({t.numel() for t in tensors}) != 1:
        return None  # decided before flattening: a copy per layer would be wasted
    flats = [_flat(t) for t in tensors]
    return flats[0].unsqueeze(0) if len(flats) == 1 else torch.stack(flats)


def moments(tensors: list[Tensor]) -> Tensor:
    """mean, std, min, max of all elements of each tensor: exact. (layers × 4)"""
    matrix = _rows(tensors)
    if matrix is not None:
        return torch.stack([matrix.mean(1), matrix.std(1), matrix.amin(1), matrix.amax(1)], dim=1)
    return torch.cat([moments([t]) for t in tensors])


def percentiles(tensors: list[Tensor], sample: int = PERCENTILE_SAMPLE) -> Tensor:
    """15th, 50th, 85th percentile of each tensor's elements (linear interpolation). (layers × 3)"""
    flats = []
    for t in tensors:
        flat = _flat(t)
        flats.append(flat[_sample_index(flat.numel(), sample)] if flat.numel() > sample else flat)
    q = torch.tensor(PERCENTILES)
    if len({f.numel() for f in flats}) == 1:
        return torch.quantile(torch.stack(flats), q, dim=1).T
    return torch.stack([torch.quantile(f, q) for f in flats])


def saturation_fraction(act: str, outputs: list[Tensor]) -> Tensor:
    """Fraction of activation outputs in the flat, gradient-starved part of the nonlinearity.

    sigmoid: output < 0.05 or > 0.95 (|input| > 2.94); tanh: |output| > 0.97; relu: output == 0;
    identity has no flat part (NaN). (layers × 1)
    """
    if act not in ("sigmoid", "tanh", "relu"):
        return torch.full((len(outputs), 1), NAN)

    def fraction(out: Tensor) -> Tensor:
        if act == "sigmoid":
            saturated = (out < 0.05) | (out > 0.95)
        elif act == "tanh":
            saturated = out.abs() > 0.97
        else:
            saturated = out == 0
        return saturated.float().mean(dim=-1)

    matrix = _rows(outputs)
    if matrix is not None:
        return fraction(matrix).unsqueeze(1)
    return torch.stack([fraction(_flat(o)) for o in outputs]).unsqueeze(1)


def mean_abs(tensors: list[Tensor | None]) -> Tensor:
    """mean |x| of each tensor; NaN where a tensor is missing. (layers × 1)"""
    values = [t.detach().abs().mean() if t is not None else torch.tensor(NAN) for t in tensors]
    return torch.stack(values).unsqueeze(1)


def weight_gradient_stats(weights: list[Tensor]) -> Tensor:
    """mean |dL/dW|, ||dL/dW||_2 and std(dL/dW) / std(W) per layer. (layers × 3)"""
    rows = []
    for weight in weights:
        if weight.grad is None:
            rows.append(torch.full((3,), NAN))
            continue
        grad = weight.grad.detach()
        rows.append(
            torch.stack([grad.abs().mean(), grad.norm(), grad.std() / weight.detach().std()])
        )
    return torch.stack(rows)


def update_ratios(weights_after: list[Tensor], weights_before: list[Tensor]) -> Tensor:
    """||ΔW|| / ||W|| of one optimiser step, W taken before the step. (layers,)"""
    return torch.stack(
        [
            (after.detach() - before).norm() / before.norm()
            for after, before in zip(weights_after, weights_before)
        ]
    )


def unit_values(pre: Tensor, unit: int) -> Tensor:
    """All values of one unit (MLP: a column) or channel (CNN: its N×H×W values)."""
    return pre.detach()[:, unit]


def _mean_std(values: Tensor | None) -> list[Tensor]:
    if values is None:
        return [torch.tensor(NAN), torch.tensor(NAN)]
    values = values.detach().float()
    std = values.std() if values.numel() > 1 else torch.tensor(NAN)
    return [values.mean(), std]


def norm_parameter_stats(norms: list[nn.Module]) -> Tensor:
    """gamma mean/std, beta mean/std, mean running mean, mean running variance. (layers × 6)

    NaN where a norm has no such parameter (no norm, affine=false, or no running statistics).
    """
    rows = []
    for norm in norms:
        running_mean = getattr(norm, "running_mean", None)
        running_var = getattr(norm, "running_var", None)
        rows.append(torch.stack([
            *_mean_std(getattr(norm, "weight", None)),
            *_mean_std(getattr(norm, "bias", None)),
            running_mean.mean() if running_mean is not None else torch.tensor(NAN),
            running_var.mean() if running_var is not None else torch.tensor(NAN),
        ]))  # fmt: skip
    return torch.stack(rows)


def layer_table(
    *,
    act: str,
    weights: list[Tensor],
    pre: list[Tensor],
    outputs: list[Tensor],
    grad_outputs: list[Tensor | None],
    probe_pre: list[Tensor],
    unit: int,
    norms: list[nn.Module],
) -> Tensor:
    """All LAYER_STATS for every hidden layer: a (layers × len(LAYER_STATS)) float tensor.

    `update_ratio` is left NaN: it is known only after the optimiser step (see update_ratios).
    """
    layers = len(weights)
    table = torch.cat([
        weight_gradient_stats(weights),
        torch.full((layers, 1), NAN),
        mean_abs(grad_outputs),
        moments(pre),
        percentiles(pre),
        moments(outputs),
        saturation_fraction(act, outputs),
        percentiles([unit_values(p, unit) for p in probe_pre]),
        norm_parameter_stats(norms),
    ], dim=1)  # fmt: skip
    assert table.shape == (layers, len(LAYER_STATS))
    return table.float()
