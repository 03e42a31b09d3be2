"""The tables `bnexp figures` writes, as DataFrames: runs.csv (one row per run) and
layers_all.csv (every layers.csv row, labelled with its run's varying keys and seed).

`bnexp figures` writes them to files (bnexp.analysis.sweep_figures.write_tables); the Python
API (`bnexp.load_runs`) returns the same frames, so a notebook and the figures folder never
disagree. Pure: tables in, tables out.

    runs_frame(runs_df, keys)            runs.csv: run_dir, the varying keys, seed, results
    labelled(rows, runs_df, keys)        CSV rows with their run's run_dir, keys and seed first
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

# The result columns of runs.csv, after run_dir, the varying keys and seed.
RUNS_CSV_RESULTS = (
    "status",
    "error",
    "final_test_acc",
    "best_test_acc",
    "steps_to_target",
    "steps_per_second",
    "diverged_at_step",
    "steps_done",
    "data_source",
    "plotted",
)
# Step counts: written as 300, not 300.0 (pandas' nullable Int64, so "never" stays empty).
STEP_COUNT_COLUMNS = ("steps_to_target", "diverged_at_step", "steps_done")


def lead_columns(keys: Sequence[str]) -> list[str]:
    """What labels a run in every table: its directory, the keys that vary, its seed."""
    return ["run_dir", *keys, "seed"]


def _with_seed(runs_df: pd.DataFrame) -> pd.DataFrame:
    runs = runs_df.copy()
    if "seed" not in runs:
        runs["seed"] = np.nan
    return runs


def runs_frame(runs_df: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """runs.csv: one row per run (bnexp.analysis.tables.collect's runs_df), with run_dir, the
    varying `keys`, seed, then RUNS_CSV_RESULTS; step counts as integers."""
    runs = _with_seed(runs_df)
    for column in STEP_COUNT_COLUMNS:
        if column in runs:
            runs[column] = runs[column].round().astype("Int64")
    return runs[lead_columns(keys) + [c for c in RUNS_CSV_RESULTS if c in runs]]


def labelled(rows: pd.DataFrame, runs_df: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """CSV rows that carry a `run_dir` column (collect's layers_df or metrics_df) with their run's
    run_dir, varying `keys` and seed as the first columns: layers_all.csv for the layers rows.
    Rows of runs not in runs_df are dropped."""
    labels = _with_seed(runs_df)[lead_columns(keys)]
    return labels.merge(rows, on="run_dir", how="inner")
