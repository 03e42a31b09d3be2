"""Per-layer growth of a gradient towards the input, and Yang et al.'s predicted rates.

Pure (numpy and pandas): used by the `explosion` finding's measures (bnexp/reproduce/claims.py)
and its figure. Yang, Pennington, Rao, Sohl-Dickstein & Schoenholz, "A Mean Field Theory of
Batch Normalization" (ICLR 2019, Sec. 3.1.2) give the rate at which the SQUARED gradient norm
grows per layer towards the input in a batch-normalised network at initialisation:
π/(π−1) for ReLU as the batch size B → ∞ (larger at finite B), (B−2)/(B−3) for the identity.
The gradient NORM therefore grows by the square roots of these per layer.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

# sqrt(π/(π−1)) = 1.2112: per-layer growth of the gradient norm, ReLU + BN, B → ∞.
RELU_INFINITE_BATCH_NORM_RATE = math.sqrt(math.pi / (math.pi - 1))


def linear_norm_rate(batch_size: float) -> float:
    """sqrt((B−2)/(B−3)): per-layer growth of the gradient norm in a linear BN network (B > 3)."""
    if batch_size <= 3:
        raise ValueError(f"batch_size={batch_size}: the linear rate (B−2)/(B−3) needs B > 3")
    return math.sqrt((batch_size - 2) / (batch_size - 3))


# Names a claim may give as its expected per-layer factor: a number, or one of these (of B).
EXPECTED_RATES = {
    "relu_infinite_batch": lambda batch_size: RELU_INFINITE_BATCH_NORM_RATE,
    "linear_batch": linear_norm_rate,
    "flat": lambda batch_size: 1.0,
}


def expected_rate(expected: str | float, batch_size: float) -> float:
    """The per-layer norm factor a claim expects at batch size B."""
    if isinstance(expected, str):
        if expected not in EXPECTED_RATES:
            raise ValueError(
                f"expected={expected!r} is not known: one of {', '.join(EXPECTED_RATES)}"
            )
        return EXPECTED_RATES[expected](batch_size)
    return float(expected)


def log_slope(layers: np.ndarray, values: np.ndarray) -> float:
    """Slope of the least-squares line through log(values) against the layer index: the log of
    the factor by which `values` grow per layer TOWARDS THE OUTPUT (towards larger indices)."""
    layers, values = np.asarray(layers, float), np.asarray(values, float)
    if len(layers) < 2:
        raise ValueError("a per-layer factor needs at least two layers")
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError("a value is 0, negative or not finite: its log is undefined")
    return float(np.polyfit(layers, np.log(values), 1)[0])


def fit_factor(layers: np.ndarray, values: np.ndarray) -> float:
    """exp(−log_slope): the factor by which `values` grow per layer TOWARDS THE INPUT (towards
    smaller indices)."""
    return float(np.exp(-log_slope(layers, values)))


def fitted_layers(layer: pd.Series, depth: pd.Series, first_layer: int, skip_top: int) -> pd.Series:
    """Which rows enter the fit: hidden layers first_layer .. depth − skip_top."""
    return (layer >= first_layer) & (layer <= depth - skip_top)


def growth_factors(
    rows: pd.DataFrame,
    column: str,
    first_layer: int = 2,
    skip_top: int = 2,
    group_by: tuple[str, ...] = ("batch_size", "depth"),
) -> pd.DataFrame:
    """Per run (rows grouped by `group_by` + seed), the factor by which `column` grows per layer
    towards the input, fitted over hidden layers first_layer .. depth − skip_top; then per group,
    the geometric mean over the seeds. Columns: *group_by, factor, runs."""
    keep = rows[fitted_layers(rows["layer"], rows["depth"], first_layer, skip_top)]
    per_run = []
    keys = [*group_by, "seed"]
    for key, run in keep.groupby(keys):
        run = run.sort_values("layer")
        per_run.append(
            {
                **dict(zip(keys, key, strict=True)),
                "log_factor": math.log(fit_factor(run["layer"], run[column])),
            }
        )
    if not per_run:
        return pd.DataFrame(columns=[*group_by, "factor", "runs"])
    frame = pd.DataFrame(per_run)
    out = frame.groupby(list(group_by), as_index=False).agg(
        log_factor=("log_factor", "mean"), runs=("log_factor", "size")
    )
    out["factor"] = np.exp(out.pop("log_factor"))
    return out[[*group_by, "factor", "runs"]]
