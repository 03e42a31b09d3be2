"""optimisation_comparison (bnexp/reproduce/optimisation.py) on hand-made tables, answers
computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import bnexp.reproduce.optimisation  # noqa: F401 (registers optimisation_comparison)
from bnexp.reproduce.claims import MEASURES, Missing, Tables

NAN, INF = math.nan, math.inf


def tables() -> Tables:
    runs = pd.DataFrame(
        {
            "run_id": ["b0", "b1", "n0", "n1"],
            "status": ["completed"] * 4,
            "seed": [0, 1, 0, 1],
            "norm": ["batch", "batch", "none", "none"],
        }
    )
    layer_rows = []
    # ics_diff_norm per (run, step, layer); layer 1 empty (G' = G), final step 40 not measured.
    diff = {
        "b0": {0: [4.0, 8.0], 20: [6.0, 2.0]},  # layers 2, 3 -> median of 4, 8, 6, 2 = 5
        "b1": {0: [1.0, 1.0], 20: [3.0, 3.0]},  # median 2
        "n0": {0: [1.0, 2.0], 20: [3.0, 9.0]},  # median 2.5
        "n1": {0: [4.0, 4.0], 20: [4.0, 4.0]},  # median 4
    }
    cosine = {"b0": 0.5, "b1": 0.7, "n0": 0.9, "n1": 0.8}
    for run, steps in diff.items():
        for step, values in steps.items():
            layer_rows.append(
                {"run_id": run, "step": step, "layer": 1, "ics_diff_norm": NAN, "ics_cosine": NAN}
            )
            for layer, value in enumerate(values, start=2):
                layer_rows.append(
                    {
                        "run_id": run,
                        "step": step,
                        "layer": layer,
                        "ics_diff_norm": value,
                        "ics_cosine": cosine[run],
                    }
                )
        for layer in (1, 2, 3):
            layer_rows.append(
                {"run_id": run, "step": 40, "layer": layer, "ics_diff_norm": NAN, "ics_cosine": NAN}
            )
    metric_rows = []
    ranges = {  # landscape_loss_range at steps 0, 20, 40, 60 (60: final, not measured)
        "b0": [1.0, 2.0, 100.0],
        "b1": [1.0, 1.0, 100.0],
        "n0": [4.0, INF, 1.0],  # a diverging point along the gradient: inf
        "n1": [8.0, NAN, 1.0],  # ... or empty (inf - inf) in a measured row
    }
    for run, values in ranges.items():
        for step, value in zip((0, 20, 40), values, strict=True):
            metric_rows.append(
                {
                    "run_id": run,
                    "step": step,
                    "landscape_loss_range": value,
                    "landscape_grad_pred": 1.0,
                    "landscape_beta": 1.0,
                }
            )
        metric_rows.append(
            {
                "run_id": run,
                "step": 60,
                "landscape_loss_range": NAN,
                "landscape_grad_pred": NAN,
                "landscape_beta": NAN,
            }
        )
    return Tables(runs, pd.DataFrame(metric_rows), pd.DataFrame(layer_rows))


def measure(**args):
    return MEASURES["optimisation_comparison"](
        tables(), {"norm": "batch"}, {"norm": "none"}, **args
    )


def test_ratio_of_per_seed_medians_over_layers_2_up_geometric_mean_with_interval():
    m = measure(column="ics_diff_norm")
    ratios = np.array([5 / 2.5, 2 / 4])  # seed 0: 2, seed 1: 0.5
    assert m.value == pytest.approx(math.sqrt(2 * 0.5))  # geometric mean 1
    logs = np.log(ratios)
    half = 12.706204736174704 * logs.std(ddof=1) / math.sqrt(2)  # t(0.975, 1)
    assert m.interval == pytest.approx((math.exp(logs.mean() - half), math.exp(logs.mean() + half)))


def test_difference_of_cosines_paired_by_seed():
    m = measure(column="ics_cosine", compare="difference")
    assert m.value == pytest.approx(((0.5 - 0.9) + (0.7 - 0.8)) / 2)


def test_a_non_finite_landscape_cell_counts_as_infinitely_rough_and_early_steps_cut():
    # All measured rows: b0 median 2, b1 1; n0 median of (4, inf, 1) = 4, n1 of (8, inf, 1) = 8.
    m = measure(column="landscape_loss_range")
    assert m.value == pytest.approx(math.sqrt((2 / 4) * (1 / 8)))
    # Steps <= 20: b0 1.5, b1 1; n0 median(4, inf) = inf, n1 median(8, inf) = inf: both
    # seeds' ratios are 0, exactly, with no spread.
    early = measure(column="landscape_loss_range", early_steps=20)
    assert early.value == 0.0 and early.interval == (0.0, 0.0)
    # Only one seed infinitely rough: no interval.
    t = tables()
    t.metrics.loc[
        (t.metrics["run_id"] == "n1") & (t.metrics["step"] == 20), "landscape_loss_range"
    ] = 1.0
    mixed = MEASURES["optimisation_comparison"](
        t, {"norm": "batch"}, {"norm": "none"}, column="landscape_loss_range", early_steps=20
    )
    assert mixed.value == 0.0 and mixed.interval is None


def test_missing_column_or_runs_is_inconclusive_not_an_error():
    t = tables()
    t.metrics = t.metrics.drop(columns=["landscape_beta"])
    with pytest.raises(Missing):
        MEASURES["optimisation_comparison"](
            t, {"norm": "batch"}, {"norm": "none"}, column="landscape_beta"
        )
    with pytest.raises(Missing):
        MEASURES["optimisation_comparison"](
            tables(), {"norm": "noisy"}, {"norm": "none"}, column="ics_cosine"
        )
