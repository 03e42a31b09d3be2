"""Measures added for the findings of issue 12 (bn-backward, running-average, linear-depth,
init-scale), on small hand-made tables whose answers are computed by hand here."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from bnexp.reproduce.claims import MEASURES, Missing, Tables, evaluate


def extra(**frames: pd.DataFrame) -> Tables:
    tables = Tables.empty()
    tables.extra = dict(frames)
    return tables


BACKWARD = pd.DataFrame(
    {
        "form": ["closed_form", "closed_form", "compact", "compact"],
        "batch_size": [2, 256, 2, 256],
        "affine": [True, False, True, False],
        "max_error": [3.0e-12, 1.0e-15, 2.0e-13, float("nan")],
    }
)


def test_table_value_max_min_mean_of_the_selected_rows():
    tables = extra(bn_backward=BACKWARD)
    largest = MEASURES["table_value"](
        tables, table="bn_backward", column="max_error", where={"form": "closed_form"}
    )
    assert largest.value == pytest.approx(3.0e-12)
    assert "batch_size=2" in largest.text and "form=closed_form" in largest.text
    smallest = MEASURES["table_value"](
        tables, table="bn_backward", column="max_error", statistic="min"
    )
    assert smallest.value == pytest.approx(1.0e-15)
    # NaN cells (affine off has no dγ) are left out, not propagated.
    mean = MEASURES["table_value"](
        tables, table="bn_backward", column="max_error", where={"form": "compact"}, statistic="mean"
    )
    assert mean.value == pytest.approx(2.0e-13)


def test_table_value_missing_table_or_rows_is_inconclusive():
    with pytest.raises(Missing):
        MEASURES["table_value"](Tables.empty(), table="bn_backward", column="max_error")
    with pytest.raises(Missing):
        MEASURES["table_value"](
            extra(bn_backward=BACKWARD),
            table="bn_backward",
            column="max_error",
            where={"form": "no such form"},
        )
    spec = {
        "id": "x",
        "claim": "c",
        "published": "p",
        "measure": "table_value",
        "kind": "identity",
        "args": {"table": "bn_backward", "column": "max_error"},
        "criterion": {"op": "<=", "value": 1e-10},
    }
    assert evaluate(spec, Tables.empty()).verdict == "identity not checked"
    assert evaluate(spec, extra(bn_backward=BACKWARD)).verdict == "identity holds"
    failing = BACKWARD.assign(max_error=[1e-3, 0.0, 0.0, 0.0])
    result = evaluate(spec, extra(bn_backward=failing))
    assert result.verdict == "identity fails" and math.isclose(result.value, 1e-3)


def lag_table() -> pd.DataFrame:
    # seed: (momentum 0.01 running, batch), (momentum 0.5 running, batch), at step 100
    accuracies = {0: ((0.20, 0.90), (0.88, 0.89)), 1: ((0.30, 0.80), (0.80, 0.79))}
    rows = []
    for seed, pairs in accuracies.items():
        for momentum, (running, batch) in zip((0.01, 0.5), pairs, strict=True):
            rows.append(
                {
                    "seed": seed,
                    "momentum": momentum,
                    "step": 100,
                    "mode": "running",
                    "accuracy": running,
                }
            )
            rows.append(
                {
                    "seed": seed,
                    "momentum": momentum,
                    "step": 100,
                    "mode": "batch",
                    "accuracy": batch,
                }
            )
            rows.append(
                {"seed": seed, "momentum": momentum, "step": 10, "mode": "batch", "accuracy": 0.5}
            )
    return pd.DataFrame(rows)


def test_mode_accuracy_gap_is_batch_minus_running_per_seed():
    tables = extra(momentum_lag=lag_table())
    gap = MEASURES["mode_accuracy_gap"](tables, where={"momentum": 0.01, "step": 100})
    # seed 0: 90 - 20 = 70 points, seed 1: 80 - 30 = 50 points; mean 60, t(1) = 12.706
    assert gap.value == pytest.approx(60.0)
    half = 12.706 * (10 * math.sqrt(2)) / math.sqrt(2)  # sample std of (70, 50) = 10·√2; n = 2
    assert gap.interval == pytest.approx((60 - half, 60 + half), rel=1e-3)
    paired = MEASURES["mode_accuracy_gap"](
        tables, where={"momentum": 0.01, "step": 100}, than={"momentum": 0.5, "step": 100}
    )
    # momentum 0.5 gaps: +1 and -1 points; differences 69 and 51
    assert paired.value == pytest.approx(60.0)
    assert list(paired.detail["gap_points"]) == pytest.approx([69.0, 51.0])


def test_mode_accuracy_gap_needs_both_modes():
    tables = extra(momentum_lag=lag_table())
    with pytest.raises(Missing):
        MEASURES["mode_accuracy_gap"](tables, where={"momentum": 0.01, "step": 10})
    with pytest.raises(Missing):
        MEASURES["mode_accuracy_gap"](tables, where={"momentum": 0.2, "step": 100})


def linear_tables(act_growth: float = 1.0, depth_growth: float = 1.0) -> Tables:
    """Runs of a linear net of gain g: act_std = 2 g^k (times act_growth^k at g = 1.5), mean|δ_k|
    = g^(D-k), ||dL/dW_k|| = g^D (times depth_growth^D) for k >= 2 and 3 g^D at layer 1."""
    runs, layers = [], []
    for index, (g, depth, seed) in enumerate(
        (g, d, s) for g in (0.5, 1.5) for d in (4, 8) for s in (0, 1)
    ):
        run_id = f"r{index}"
        runs.append(
            {
                "run_id": run_id,
                "status": "completed",
                "norm": "none",
                "init_gain": g,
                "depth": depth,
                "seed": seed,
            }
        )
        for k in range(1, depth + 1):
            grad_w = g**depth * depth_growth**depth
            layers.append(
                {
                    "run_id": run_id,
                    "step": 0,
                    "layer": k,
                    "act_std": 2 * g**k * (act_growth**k if g == 1.5 else 1),
                    "grad_act_mean_abs": g ** (depth - k),
                    "grad_w_norm": 3 * grad_w if k == 1 else grad_w,
                }
            )
            layers.append({"run_id": run_id, "step": 10, "layer": k, "act_std": 1.0})
    metrics = pd.DataFrame({"run_id": [], "step": [], "test_acc": []})
    return Tables(pd.DataFrame(runs), metrics, pd.DataFrame(layers))


def test_layer_factor_is_the_fitted_growth_per_layer_against_the_gain():
    exact = linear_tables()
    forward = MEASURES["layer_factor"](exact, where={"norm": "none"}, column="act_std")
    assert forward.value == pytest.approx(0.0, abs=1e-12)
    assert sorted(forward.detail["factor"]) == pytest.approx([0.5, 0.5, 1.5, 1.5])
    backward = MEASURES["layer_factor"](
        exact, where={"norm": "none"}, column="grad_act_mean_abs", toward="input"
    )
    assert backward.value == pytest.approx(0.0, abs=1e-12)
    # act_std grows 1.2 x 1.5 = 1.8 per layer at g = 1.5: 20% off
    off = MEASURES["layer_factor"](
        linear_tables(act_growth=1.2), where={"norm": "none"}, column="act_std"
    )
    assert off.value == pytest.approx(0.2)


def test_depth_factor_and_layer_profile_range():
    exact = linear_tables()
    depth = MEASURES["depth_factor"](exact, where={"norm": "none"})
    assert depth.value == pytest.approx(0.0, abs=1e-12)
    grown = MEASURES["depth_factor"](linear_tables(depth_growth=1.1), where={"norm": "none"})
    assert grown.value == pytest.approx(0.1)
    # layers 2..D are equal (max/min 1); with layer 1 the profile spans its factor 3
    equal = MEASURES["layer_profile_range"](
        exact, where={"norm": "none"}, column="grad_w_norm", first_layer=2
    )
    assert equal.value == pytest.approx(1.0)
    whole = MEASURES["layer_profile_range"](exact, where={"norm": "none"}, column="grad_w_norm")
    assert whole.value == pytest.approx(3.0)
    # mean|δ| spans g^-(D-1) = 0.5^-7 = 128 at g = 0.5, depth 8
    span = MEASURES["layer_profile_range"](
        exact, where={"norm": "none"}, column="grad_act_mean_abs"
    )
    assert span.value == pytest.approx(128.0)
    with pytest.raises(Missing):
        MEASURES["layer_profile_range"](exact, where={"norm": "none"}, column="act_std", step=5)


def test_final_accuracy_range_counts_each_init_once_and_divergence_as_chance():
    runs, metrics = [], []
    # (init, init_std, seed, status, final accuracy)
    spec = [
        ("gaussian", 0.001, 0, "completed", 0.50),
        ("gaussian", 0.001, 1, "completed", 0.70),  # mean 60%
        ("gaussian", 10.0, 0, "diverged", 0.95),  # counted as chance: 10%
        ("gaussian", 10.0, 1, "completed", 0.30),  # mean 20%
        ("default", 0.001, 0, "completed", 0.90),  # default ignores init_std: one setting,
        ("default", 10.0, 0, "completed", 0.90),  # the same run twice, mean 90%
    ]
    for index, (init, std, seed, status, accuracy) in enumerate(spec):
        run_id = f"r{index}"
        runs.append(
            {
                "run_id": run_id,
                "status": status,
                "norm": "none",
                "act": "relu",
                "init": init,
                "init_std": std,
                "seed": seed,
            }
        )
        metrics += [
            {"run_id": run_id, "step": step, "test_acc": accuracy} for step in (100, 200, 300)
        ]
    tables = Tables(
        pd.DataFrame(runs),
        pd.DataFrame(metrics),
        pd.DataFrame({"run_id": [], "step": [], "layer": []}),
    )
    measured = MEASURES["final_accuracy_range"](tables, where={"norm": "none", "act": "relu"})
    assert measured.value == pytest.approx(70.0)  # default 90% - gaussian 10 20%
    assert sorted(measured.detail["init_setting"]) == ["default", "gaussian 0.001", "gaussian 10"]
    assert "1 diverged" in measured.text
