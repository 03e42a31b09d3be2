"""Many runs as tidy tables: one row per run (config keys, status, summary results), and every
run's metrics.csv and layers.csv rows with its `run_dir`. What `bnexp figures` draws and what
`bnexp reproduce` measures its claims on.

Failed runs (status failed, or nothing logged) get a row in the runs table and a warning, never
rows in the other two; a stale run (meta.json says running, its process is gone) is called so.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bnexp.rundir import (
    LAYERS_COLUMNS,
    METRICS_COLUMNS,
    RESUME_HINT,
    STALE,
    Run,
    empty_frame,
    load_run,
    stale_reason,
)

# Columns of the runs table that are results or bookkeeping, not config keys.
RESULT_COLUMNS = (
    "run_dir",
    "status",
    "error",
    "final_test_acc",
    "best_test_acc",
    "steps_to_target",
    "steps_per_second",
    "diverged_at_step",
    "steps_done",
    "data_source",
    "train_size",
    "test_size",
    "wall_seconds",
    "plotted",
)


def collect(
    run_dirs: Sequence[Path], target: float = 0.9
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[str]]:
    """Read every run: (runs_df, layers_df, metrics_df, warnings).

    runs_df has one row per run: `run_dir`, the flattened config (`norm`, `optim.lr`, ...),
    the status from meta.json and summary results (`final_test_acc`, `best_test_acc`,
    `steps_to_target`: first step with test accuracy >= `target`, ...), and `plotted`.
    layers_df and metrics_df hold the CSV rows of the plotted runs with a `run_dir` column.
    Failed runs (status failed, or nothing logged) are in runs_df and in the warnings only.
    """
    rows, layer_frames, metric_frames, warnings = [], [], [], []
    for run_dir in run_dirs:
        run = load_run(run_dir)
        row = {"run_dir": str(run_dir), **run.config, **summarize_run(run, target)}
        warnings += run.warnings + status_warnings(run, row)
        rows.append(row)
        if row["plotted"]:
            metric_frames.append(run.metrics.assign(run_dir=str(run_dir)))
            layer_frames.append(run.layers.assign(run_dir=str(run_dir)))
    runs = pd.DataFrame(rows)
    metrics = _concat(metric_frames, METRICS_COLUMNS)
    layers = _concat(layer_frames, LAYERS_COLUMNS)
    return runs, layers, metrics, warnings


def summarize_run(run: Run, target: float) -> dict[str, Any]:
    tested = run.metrics.dropna(subset=["test_acc"])
    reached = tested[tested["test_acc"] >= target]
    status = run.status  # "stale": meta.json says running, its process is gone
    error = run.meta.get("error") or ""
    if not run.meta and run.metrics.empty:
        status = "failed"
        error = error or "no meta.json and no metrics.csv: the job stopped before training"
    return {
        "status": status,
        "error": str(error),
        "final_test_acc": tested["test_acc"].iloc[-1] if not tested.empty else np.nan,
        "best_test_acc": tested["test_acc"].max() if not tested.empty else np.nan,
        "steps_to_target": reached["step"].iloc[0] if not reached.empty else np.nan,
        "steps_per_second": _number(run.meta.get("steps_per_second")),
        "diverged_at_step": run.diverged_at_step if run.diverged_at_step is not None else np.nan,
        "steps_done": _number(run.meta.get("steps_done")),
        "data_source": run.meta.get("data_source") or "",
        "train_size": _number(run.meta.get("train_size")),
        "test_size": _number(run.meta.get("test_size")),
        "wall_seconds": _number(run.meta.get("wall_seconds")),
        "plotted": status != "failed" and not run.metrics.empty,
    }


def status_warnings(run: Run, row: dict[str, Any]) -> list[str]:
    """What a reader of the figures must know about this run's status."""
    where = run.path
    status = row["status"]
    if status == "failed":
        return [f"failed run {where}: {row['error'] or 'no error message'} (not plotted)"]
    if run.metrics.empty:
        return [f"run {where} ({status}) has no logged steps yet (not plotted)"]
    last_step = run.metrics["step"].max()
    if status == "running":
        return [f"run {where} is still running: using its logged steps up to step {last_step:,.0f}"]
    if status == STALE:
        return [
            f"run {where} is stale: meta.json says running, but {stale_reason(run.meta)}; "
            f"plotted up to step {last_step:,.0f}. To finish it, {RESUME_HINT}"
        ]
    if status == "interrupted":
        return [f"run {where} was interrupted: plotted up to step {last_step:,.0f}"]
    if not run.meta:
        return [f"run {where} has no meta.json: status unknown, plotted from its CSVs"]
    return []


def _concat(frames: list[pd.DataFrame], columns: Sequence[str]) -> pd.DataFrame:
    frames = [f for f in frames if not f.empty]
    if not frames:
        return empty_frame([*columns, "run_dir"])
    return pd.concat(frames, ignore_index=True)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan


def has_norm_params(layers: pd.DataFrame) -> bool:
    """Whether any logged layer has a gamma (not so without a norm, or with affine=false)."""
    return "gamma_mean" in layers and bool(np.isfinite(layers["gamma_mean"].to_numpy(float)).any())
