"""Per-layer statistics as tensors. Pure: no hooks, no I/O.

Each function takes one tensor per hidden layer and returns a (layers × k) tensor, so that the
caller moves everything to the host once per log step (one `.tolist()`), never one `.item()`
per number. When every layer's tensor has the same shape (an MLP of constant width), the
layers are stacked and each statistic is a single batched op: a log step then costs a few
dozen kernel launches whatever the depth.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor, nn

# The layers.csv statistics, in contract order (docs/design.md §5); `step, layer` come first.
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


def l2_norm(values: Tensor, dim: int | None = None) -> Tensor:
    """||x||_2, its squares summed in float64: in float32 they underflow to 0 below ~1e-19 per
    element, which the first layers of a deep sigmoid net without BN reach (|grad| ~ 1e-25)."""
    return torch.linalg.vector_norm(values, dim=dim, dtype=torch.float64).to(values.dtype)


def std(values: Tensor, dim: int | None = None) -> Tensor:
    """Sample standard deviation (n - 1), by the two-pass formula ||x - mean|| / sqrt(n - 1).

    The same number as Tensor.std to float32 rounding, over the whole float32 range (squares
    summed in float64, see l2_norm), and 3-8x faster on CPU here (torch's Welford kernel: 88
    vs 11 µs for 3 rows of 6,000, 57 vs 22 µs for a 100×784 matrix).
    """
    if dim is None:
        values, dim = values.reshape(-1), 0
    count = values.shape[dim]
    if count < 2:
        return torch.full(values.sum(dim).shape, NAN)
    centred = values - values.mean(dim, keepdim=True)
    return l2_norm(centred, dim) / math.sqrt(count - 1)


def mean_abs_of(values: Tensor) -> Tensor:
    """mean |x| in one pass, without a temporary |x| tensor, summed in float64: a float32 sum of
    a CNN feature map's millions of elements drifts by 1e-4 (1M elements) to 2e-2 (16M)."""
    return (torch.linalg.vector_norm(values, ord=1, dtype=torch.float64) / values.numel()).to(
        values.dtype
    )


def moments(tensors: list[Tensor]) -> Tensor:
    """mean, std, min, max of all elements of each tensor: exact. (layers × 4)"""
    matrix = _rows(tensors)
    if matrix is not None:
        return torch.stack([matrix.mean(1), std(matrix, 1), matrix.amin(1), matrix.amax(1)], dim=1)
    return torch.cat([moments([t]) for t in tensors])


def _sorted_rows_quantiles(matrix: Tensor) -> Tensor:
    """PERCENTILES of each row, interpolated linearly between order statistics like
    torch.quantile (rank q·(n-1); equal to its result up to the last bit). The rows are sorted by numpy: torch's CPU sort takes 30x
    longer here (900 vs 29 µs for 3 rows of 6,000). A row holding a NaN gives NaN."""
    count = matrix.shape[1]
    ranks = torch.tensor(PERCENTILES) * (count - 1)
    below = ranks.floor().long()
    above = ranks.ceil().long()
    ordered = torch.from_numpy(np.sort(matrix.numpy(), axis=1))
    values = torch.lerp(ordered[:, below], ordered[:, above], ranks - below)
    return values.masked_fill(ordered[:, -1:].isnan(), NAN)  # numpy sorts NaN last


def percentiles(tensors: list[Tensor], sample: int = PERCENTILE_SAMPLE) -> Tensor:
    """15th, 50th, 85th percentile of each tensor's elements (linear interpolation). (layers × 3)"""
    flats = []
    for t in tensors:
        flat = _flat(t)
        flats.append(flat[_sample_index(flat.numel(), sample)] if flat.numel() > sample else flat)
    if len({f.numel() for f in flats}) == 1:
        return _sorted_rows_quantiles(torch.stack(flats))
    return torch.cat([_sorted_rows_quantiles(f.unsqueeze(0)) for f in flats])


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
    values = [mean_abs_of(t.detach()) if t is not None else torch.tensor(NAN) for t in tensors]
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
            torch.stack([mean_abs_of(grad), l2_norm(grad), std(grad) / std(weight.detach())])
        )
    return torch.stack(rows)


def update_ratios(weights_after: list[Tensor], weights_before: list[Tensor]) -> Tensor:
    """||ΔW|| / ||W|| of one optimiser step, W taken before the step. (layers,)"""
    return torch.stack(
        [
            l2_norm(after.detach() - before) / l2_norm(before)
            for after, before in zip(weights_after, weights_before)
        ]
    )


def unit_values(pre: Tensor, unit: int) -> Tensor:
    """All values of one unit (MLP: a column) or channel (CNN: its N×H×W values)."""
    return pre.detach()[:, unit]


def _mean_std(tensors: list[Tensor | None]) -> Tensor:
    """mean and std of each tensor's elements; NaN where a tensor is missing. (layers × 2)"""
    if all(t is not None for t in tensors) and (matrix := _rows(tensors)) is not None:
        return torch.stack([matrix.mean(1), std(matrix, 1)], dim=1)
    return torch.stack(
        [
            torch.stack([_flat(t).mean(), std(_flat(t))])
            if t is not None
            else torch.full((2,), NAN)
            for t in tensors
        ]
    )


def _means(tensors: list[Tensor | None]) -> Tensor:
    """mean of each tensor's elements; NaN where a tensor is missing. (layers × 1)"""
    if all(t is not None for t in tensors) and (matrix := _rows(tensors)) is not None:
        return matrix.mean(1, keepdim=True)
    return torch.stack(
        [_flat(t).mean() if t is not None else torch.tensor(NAN) for t in tensors]
    ).unsqueeze(1)


def norm_parameter_stats(norms: list[nn.Module]) -> Tensor:
    """gamma mean/std, beta mean/std, mean running mean, mean running variance. (layers × 6)

    NaN where a norm has no such parameter (no norm, affine=false, or no running statistics).
    """
    return torch.cat([
        _mean_std([getattr(norm, "weight", None) for norm in norms]),
        _mean_std([getattr(norm, "bias", None) for norm in norms]),
        _means([getattr(norm, "running_mean", None) for norm in norms]),
        _means([getattr(norm, "running_var", None) for norm in norms]),
    ], dim=1)  # fmt: skip


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
    norm_stats: Tensor | None = None,
) -> Tensor:
    """All LAYER_STATS for every hidden layer: a (layers × len(LAYER_STATS)) float tensor.

    `update_ratio` is left NaN: it is known only after the optimiser step (see update_ratios).
    `norm_stats`, when given, is norm_parameter_stats(norms) taken earlier (the training loop
    reads the running statistics before the forward pass that updates them).
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
        norm_parameter_stats(norms) if norm_stats is None else norm_stats,
    ], dim=1)  # fmt: skip
    assert table.shape == (layers, len(LAYER_STATS))
    return table.float()
