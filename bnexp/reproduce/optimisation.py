"""Claims on the optimisation measurements (measure.ics, measure.landscape columns). Pure.

`optimisation_comparison` compares one variant with another, paired by seed, on a column that
`bnexp run measure.ics=true` / `measure.landscape=true` writes:
- per run: the median of the column over its measured rows, at logged steps <= `early_steps`
  (None: all of training) and, for the per-layer ICS columns, over hidden layers 2 … depth
  (layer 1's cells are empty: G' = G by definition); in a landscape column a non-finite cell
  of a measured row (a diverging point along the gradient) counts as +inf in the median, never
  dropped (dropping it would flatter the rougher network);
- per seed: a / b (`compare: ratio`) or a − b (`compare: difference`);
- value: the geometric mean of the ratios (the mean of the differences), with the 95%
  t-interval over seeds (on log ratios, then exponentiated); a single seed has none. A seed
  whose ratio is 0 or inf (one variant's median is inf) has no log: if every seed has the same
  such ratio it is the value with a zero-width interval, otherwise there is no interval.

`optimisation_level` gives one variant's level: the mean over seeds of the run medians, with
the 95% t-interval over seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bnexp.reproduce.claims import (
    MEASURES,
    Measurement,
    Missing,
    Tables,
    describe,
    t_interval,
    variant_runs,
)

LAYER_COLUMNS = ("ics_diff_norm", "ics_cosine")
METRIC_COLUMNS = ("landscape_loss_range", "landscape_grad_pred", "landscape_beta")


def run_medians(
    tables: Tables, where: dict, column: str, early_steps: int | None = None
) -> pd.Series:
    """Per seed: the median of `column` over the run's measured rows (see the module docstring)."""
    if column not in LAYER_COLUMNS + METRIC_COLUMNS:
        raise ValueError(f"column {column!r} is not a measurement column")
    runs = variant_runs(tables, where, allow_diverged=True)
    frame = tables.layers if column in LAYER_COLUMNS else tables.metrics
    if column not in frame.columns:
        raise Missing(f"no {column} column: were the runs made with measure.ics/landscape=true?")
    rows = frame[frame["run_id"].isin(runs["run_id"])]
    if column in LAYER_COLUMNS:
        rows = rows[rows["layer"] >= 2]
    if early_steps is not None:
        rows = rows[rows["step"] <= early_steps]
    group = list(LAYER_COLUMNS if column in LAYER_COLUMNS else METRIC_COLUMNS)
    medians = {}
    for _, run in runs.iterrows():
        mine = rows[rows["run_id"] == run["run_id"]]
        mine = mine[mine[group].notna().any(axis=1)]  # the rows where the measurement ran
        cells = mine[column].to_numpy(dtype=float)
        if column in METRIC_COLUMNS:
            # A point along the gradient that went non-finite is the roughest value (inf, or
            # empty from inf - inf): counted as +inf, never dropped.
            cells = np.where(np.isnan(cells), np.inf, cells)
        else:
            cells = cells[~np.isnan(cells)]  # a zero gradient has no cosine
        if len(cells):
            medians[run["seed"]] = float(np.median(cells))
    if not medians:
        raise Missing(f"no {column} values for {describe(where)}")
    return pd.Series(medians, name=column)


def optimisation_comparison(
    tables: Tables,
    a: dict,
    b: dict,
    column: str,
    compare: str = "ratio",
    early_steps: int | None = None,
) -> Measurement:
    """`a` against `b` on a measurement column, paired by seed (see the module docstring)."""
    if compare not in ("ratio", "difference"):
        raise ValueError(f"compare={compare!r}: choose ratio or difference")
    ma, mb = (
        run_medians(tables, a, column, early_steps),
        run_medians(tables, b, column, early_steps),
    )
    seeds = sorted(set(ma.index) & set(mb.index))
    if not seeds:
        raise Missing(f"no seed has both {describe(a)} and {describe(b)}")
    va, vb = ma[seeds].to_numpy(), mb[seeds].to_numpy()
    when = "over training" if early_steps is None else f"at steps <= {early_steps:,}"
    if compare == "ratio":
        with np.errstate(divide="ignore", invalid="ignore"):
            logs = np.log(va) - np.log(vb)
        if not np.all(np.isfinite(logs)):
            value = math.nan if np.any(np.isnan(logs)) else float(np.exp(np.mean(logs)))
            # Every seed 0 (or every seed inf): b infinitely rough (or a), the ratio is exactly
            # that, with no spread; mixed seeds give no interval (inconclusive for `within`).
            same = len(set(logs.tolist())) == 1 and not math.isnan(value)
            interval = (value, value) if same else None
        else:
            mean, lo, hi = t_interval(logs)
            value, interval = float(np.exp(mean)), (float(np.exp(lo)), float(np.exp(hi)))
        shown = f"{value:.3g}x"
    else:
        mean, lo, hi = t_interval(va - vb)
        value, interval = float(mean), (float(lo), float(hi))
        shown = f"{value:+.3g}"
    if interval is not None and all(math.isfinite(v) for v in interval):
        shown += f" [{interval[0]:.3g}, {interval[1]:.3g}]"
    text = (
        f"median {column} {when}, seed mean: {describe(a)} {np.mean(va):.4g}, "
        f"{describe(b)} {np.mean(vb):.4g}; {compare} {shown} ({len(seeds)} seeds)"
    )
    detail = pd.DataFrame({"seed": seeds, describe(a): va, describe(b): vb})
    return Measurement(value, text, interval=interval, detail=detail)


def optimisation_level(
    tables: Tables, where: dict, column: str, early_steps: int | None = None
) -> Measurement:
    """One variant's level of a measurement column: per seed the run median (as in
    `optimisation_comparison`), the value their mean with the 95% t-interval over seeds."""
    medians = run_medians(tables, where, column, early_steps)
    values = medians.to_numpy(dtype=float)
    mean, lo, hi = t_interval(values)
    interval = (float(lo), float(hi)) if len(values) > 1 else None
    when = "over training" if early_steps is None else f"at steps <= {early_steps:,}"
    shown = f"{mean:.3g}" + (f" [{lo:.3g}, {hi:.3g}]" if interval else "")
    text = f"median {column} {when} of {describe(where)}, seed mean {shown} ({len(values)} seeds)"
    detail = pd.DataFrame({"seed": medians.index, describe(where): values})
    return Measurement(float(mean), text, interval=interval, detail=detail)


# Registered here, not in claims.py, so that claims does not import this module back.
MEASURES["optimisation_comparison"] = optimisation_comparison
MEASURES["optimisation_level"] = optimisation_level
