"""Per-layer statistics as tensors. Pure: no hooks, no I/O.

STATISTICS (at the end) is the table of what layers.csv records: columns -> function, in file
order, in the spirit of mup's coord-check FDICT. A new statistic is one entry there (and its
column in bnexp/rundir.py's contract, which a test holds equal to LAYER_STATS).

Each function takes one tensor per hidden layer and returns a (layers × k) tensor, so that the
caller moves everything to the host once per log step (one `.tolist()`), never one `.item()`
per number. The tables live on the device of the tensors they describe (a GPU run's statistics
are computed there); a missing value is a NaN made on that device. When every layer's tensor
has the same shape (an MLP of constant width), the layers are stacked and each statistic is a
single batched op: a log step then costs a few dozen kernel launches whatever the depth.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

PERCENTILES = (0.15, 0.50, 0.85)
# Percentiles of larger tensors are estimated on this many elements, so that a log step costs
# the same at any batch size (a CNN feature map holds millions). Moments stay exact.
PERCENTILE_SAMPLE = 65_536

NAN = float("nan")
# Devices whose percentiles sort with numpy (faster than torch's sort on the CPU); elsewhere
# torch sorts on the device, so that the data need not cross to the host.
NUMPY_SORT_DEVICES = frozenset({"cpu"})


@functools.lru_cache(maxsize=64)
def _sample_index(numel: int, size: int, device: torch.device | None = None) -> Tensor:
    """A fixed random subset of positions: the same for every call with this tensor size, on
    any device (drawn on the CPU, then copied once)."""
    generator = torch.Generator().manual_seed(numel)
    index = torch.randint(numel, (size,), generator=generator)
    return index if device is None or device.type == "cpu" else index.to(device)


def _device_of(tensors: list[Tensor | None]) -> torch.device:
    """Where a statistic of these tensors lives: the first one's device (the CPU if none)."""
    return next((t.device for t in tensors if t is not None), torch.device("cpu"))


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
        return torch.full(values.sum(dim).shape, NAN, device=values.device)
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
    torch.quantile (rank q·(n-1); equal to its result up to the last bit). On the CPU the rows
    are sorted by numpy: torch's CPU sort takes 30x longer here (900 vs 29 µs for 3 rows of
    6,000); elsewhere by torch on the device (no transfer). A row holding a NaN gives NaN."""
    count = matrix.shape[1]
    ranks = torch.tensor(PERCENTILES, device=matrix.device) * (count - 1)
    below = ranks.floor().long()
    above = ranks.ceil().long()
    if matrix.device.type in NUMPY_SORT_DEVICES:
        ordered = torch.from_numpy(np.sort(matrix.numpy(), axis=1))
    else:  # torch sorts NaN last too
        ordered = torch.sort(matrix, dim=1).values
    values = torch.lerp(ordered[:, below], ordered[:, above], ranks - below)
    return values.masked_fill(ordered[:, -1:].isnan(), NAN)  # numpy sorts NaN last


def percentiles(tensors: list[Tensor], sample: int = PERCENTILE_SAMPLE) -> Tensor:
    """15th, 50th, 85th percentile of each tensor's elements (linear interpolation). (layers × 3)"""
    flats = []
    for t in tensors:
        flat = _flat(t)
        if flat.numel() > sample:
            flat = flat[_sample_index(flat.numel(), sample, flat.device)]
        flats.append(flat)
    if len({f.numel() for f in flats}) == 1:
        return _sorted_rows_quantiles(torch.stack(flats))
    return torch.cat([_sorted_rows_quantiles(f.unsqueeze(0)) for f in flats])


def saturation_fraction(act: str, outputs: list[Tensor]) -> Tensor:
    """Fraction of activation outputs in the flat, gradient-starved part of the nonlinearity.

    sigmoid: output < 0.05 or > 0.95 (|input| > 2.94); tanh: |output| > 0.97; relu: output == 0;
    identity has no flat part (NaN). (layers × 1)
    """
    if act not in ("sigmoid", "tanh", "relu"):
        return torch.full((len(outputs), 1), NAN, device=_device_of(outputs))

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
    device = _device_of(tensors)
    values = [
        mean_abs_of(t.detach()) if t is not None else torch.tensor(NAN, device=device)
        for t in tensors
    ]
    return torch.stack(values).unsqueeze(1)


def weight_gradient_stats(weights: list[Tensor]) -> Tensor:
    """mean |dL/dW|, ||dL/dW||_2 and std(dL/dW) / std(W) per layer. (layers × 3)"""
    rows = []
    for weight in weights:
        if weight.grad is None:
            rows.append(torch.full((3,), NAN, device=weight.device))
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
    device = _device_of(tensors)
    return torch.stack(
        [
            torch.stack([_flat(t).mean(), std(_flat(t))])
            if t is not None
            else torch.full((2,), NAN, device=device)
            for t in tensors
        ]
    )


def _means(tensors: list[Tensor | None]) -> Tensor:
    """mean of each tensor's elements; NaN where a tensor is missing. (layers × 1)"""
    if all(t is not None for t in tensors) and (matrix := _rows(tensors)) is not None:
        return matrix.mean(1, keepdim=True)
    device = _device_of(tensors)
    return torch.stack(
        [_flat(t).mean() if t is not None else torch.tensor(NAN, device=device) for t in tensors]
    ).unsqueeze(1)


# ---------------------------------------------------------------------------------------------
# The table: what layers.csv records
# ---------------------------------------------------------------------------------------------

# When a row's statistic is read (docs/design.md §4: row t describes the network after t
# updates): the norms' parameters and running statistics before batch t's forward pass moves
# them; the activations and gradients after its backward pass; the update after the
# optimiser's step.
BEFORE_FORWARD, AFTER_BACKWARD, AFTER_STEP = "before_forward", "after_backward", "after_step"


@dataclass
class LayerInputs:
    """What a log step offers the statistics, one entry per hidden layer. Each moment fills
    what it has: BEFORE_FORWARD the norms; AFTER_BACKWARD everything but weights_before;
    AFTER_STEP weights (after the step) and weights_before."""

    norms: list[nn.Module] = field(default_factory=list)
    act: str = ""  # the activation's name (saturation is defined per activation)
    weights: list[Tensor] = field(default_factory=list)  # weight_layer.weight (with .grad)
    pre: list[Tensor] = field(default_factory=list)  # the activation's input
    outputs: list[Tensor] = field(default_factory=list)  # the activation's output
    grad_outputs: list[Tensor | None] = field(default_factory=list)  # dL/d(output)
    probe_pre: list[Tensor] = field(default_factory=list)  # the activation's input, probe batch
    unit: int = 0  # the tracked unit (channel)
    weights_before: list[Tensor] = field(default_factory=list)  # copies taken before the step


@dataclass(frozen=True)
class Statistic:
    """Columns computed together (one batched op) as one (layers × len(columns)) tensor."""

    compute: Callable[[LayerInputs], Tensor]
    read: str = AFTER_BACKWARD


def _parameter(norms: list[nn.Module], name: str) -> list[Tensor | None]:
    """Each norm's parameter or buffer `name`, None where it has none (no norm, affine=false,
    no running statistics)."""
    return [getattr(norm, name, None) for norm in norms]


STATISTICS: dict[tuple[str, ...], Statistic] = {
    ("grad_w_mean_abs", "grad_w_norm", "grad_w_ratio"): Statistic(
        lambda s: weight_gradient_stats(s.weights)
    ),
    ("update_ratio",): Statistic(
        lambda s: update_ratios(s.weights, s.weights_before).unsqueeze(1), read=AFTER_STEP
    ),
    ("grad_act_mean_abs",): Statistic(lambda s: mean_abs(s.grad_outputs)),
    ("pre_mean", "pre_std", "pre_min", "pre_max"): Statistic(lambda s: moments(s.pre)),
    ("pre_p15", "pre_p50", "pre_p85"): Statistic(lambda s: percentiles(s.pre)),
    ("act_mean", "act_std", "act_min", "act_max"): Statistic(lambda s: moments(s.outputs)),
    ("act_sat_frac",): Statistic(lambda s: saturation_fraction(s.act, s.outputs)),
    ("unit_p15", "unit_p50", "unit_p85"): Statistic(
        lambda s: percentiles([unit_values(p, s.unit) for p in s.probe_pre])
    ),
    ("gamma_mean", "gamma_std"): Statistic(
        lambda s: _mean_std(_parameter(s.norms, "weight")), read=BEFORE_FORWARD
    ),
    ("beta_mean", "beta_std"): Statistic(
        lambda s: _mean_std(_parameter(s.norms, "bias")), read=BEFORE_FORWARD
    ),
    ("running_mean_mean",): Statistic(
        lambda s: _means(_parameter(s.norms, "running_mean")), read=BEFORE_FORWARD
    ),
    ("running_var_mean",): Statistic(
        lambda s: _means(_parameter(s.norms, "running_var")), read=BEFORE_FORWARD
    ),
}

# The layers.csv statistic columns, in file order (`step, layer` come first).
LAYER_STATS: tuple[str, ...] = tuple(column for columns in STATISTICS for column in columns)


def _by_moment() -> dict[str, tuple[Tensor, list[Callable[[LayerInputs], Tensor]]]]:
    """For each moment: the table columns its statistics fill, in order, and their functions."""
    columns: dict[str, list[int]] = {BEFORE_FORWARD: [], AFTER_BACKWARD: [], AFTER_STEP: []}
    functions: dict[str, list] = {moment: [] for moment in columns}
    start = 0
    for names, statistic in STATISTICS.items():
        columns[statistic.read].extend(range(start, start + len(names)))
        functions[statistic.read].append(statistic.compute)
        start += len(names)
    return {moment: (torch.tensor(columns[moment]), functions[moment]) for moment in columns}


_BY_MOMENT = _by_moment()


def empty_table(layers: int, device: torch.device | None = None) -> Tensor:
    """A (layers × len(LAYER_STATS)) float32 table of NaN on `device` (default: the CPU): a
    statistic not (yet) read is NaN."""
    return torch.full((layers, len(LAYER_STATS)), NAN, device=device)


def fill(table: Tensor, read: str, inputs: LayerInputs) -> Tensor:
    """Computes the statistics read at moment `read` into their columns of `table` (one
    concatenation and one indexed copy: a quarter of the cost of a copy per statistic)."""
    columns, functions = _BY_MOMENT[read]
    # A statistic of no tensor at all (norm=none's gamma) is made on the CPU: moved to the
    # table's device (without waiting for the GPU's queue; a no-op on the CPU).
    values = torch.cat(
        [compute(inputs).to(table.device, non_blocking=True) for compute in functions], dim=1
    )
    if values.shape != (table.shape[0], len(columns)):
        raise ValueError(
            f"statistics read {read} gave {tuple(values.shape)} values, expected "
            f"{(table.shape[0], len(columns))}: a STATISTICS entry has the wrong width"
        )
    table[:, columns.to(table.device, non_blocking=True)] = values
    return table


def layer_table(inputs: LayerInputs) -> Tensor:
    """The statistics of one moment's inputs read all at once (BEFORE_FORWARD, then
    AFTER_BACKWARD); AFTER_STEP's columns (update_ratio) stay NaN."""
    table = empty_table(len(inputs.weights) or len(inputs.norms))
    fill(table, BEFORE_FORWARD, inputs)
    return fill(table, AFTER_BACKWARD, inputs)
