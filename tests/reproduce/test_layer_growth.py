"""The `explosion` finding's measures (layer_growth, layer_growth_ratio) and rates, on tables
whose answers are worked out by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from bnexp.reproduce.claims import MEASURES, Missing, Tables
from bnexp.reproduce.layer_growth import (
    RELU_INFINITE_BATCH_NORM_RATE,
    expected_rate,
    fit_factor,
    growth_factors,
    linear_norm_rate,
)


def test_theory_values_by_hand():
    # pi/(pi-1) = 3.14159/2.14159 = 1.46694; its square root 1.21117.
    assert RELU_INFINITE_BATCH_NORM_RATE == pytest.approx(1.21117, abs=1e-5)
    assert linear_norm_rate(8) == pytest.approx(math.sqrt(6 / 5))  # 1.09545
    assert linear_norm_rate(256) == pytest.approx(math.sqrt(254 / 253))
    assert expected_rate("flat", 32) == 1.0
    assert expected_rate(1.5, 32) == 1.5
    with pytest.raises(ValueError):
        linear_norm_rate(3)
    with pytest.raises(ValueError):
        expected_rate("nonsense", 8)


def test_fit_factor_is_growth_towards_the_input():
    # values 8, 4, 2, 1 at layers 1..4: doubling per layer towards the input.
    assert fit_factor([1, 2, 3, 4], [8, 4, 2, 1]) == pytest.approx(2.0)
    assert fit_factor([1, 2, 3], [1, 2, 4]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        fit_factor([1, 2], [1, 0])


def step0_table(factors: dict[tuple, float], seeds=(0, 1), noise: float = 0.0) -> pd.DataFrame:
    """Rows shaped like the procedure's: grad_w_norm = 1e-3 * factor^(depth - layer), except
    layer 1 and the top layer, which are far off (they must be left out of the fit)."""
    rows = []
    for (act, norm, batch, depth), factor in factors.items():
        for seed in seeds:
            for layer in range(1, depth + 1):
                value = 1e-3 * factor ** (depth - layer) * (1 + noise * (-1) ** (layer + seed))
                if layer in (1, depth):
                    value *= 50.0
                rows.append(
                    {"act": act, "norm": norm, "batch_size": batch, "depth": depth, "width": 8,
                     "seed": seed, "layer": layer, "grad_w_norm": value}
                )  # fmt: skip
    return pd.DataFrame(rows)


def tables_with(step0: pd.DataFrame) -> Tables:
    tables = Tables.empty()
    tables.extra = {"step0_layers": step0}
    return tables


def test_growth_factors_leave_out_the_first_and_top_layers():
    table = step0_table({("relu", "batch", 8, 10): 1.3})
    out = growth_factors(table, "grad_w_norm", first_layer=2, skip_top=2)
    assert out["factor"].iloc[0] == pytest.approx(1.3)
    assert out["runs"].iloc[0] == 2
    # With layer 1 in the fit, its x50 outlier pulls the factor up: the measure would be wrong.
    assert growth_factors(table, "grad_w_norm", first_layer=1, skip_top=2)["factor"].iloc[0] > 1.4


def test_layer_growth_largest_deviation_from_the_relu_limit():
    # 1.2112 * 1.03 at depth 10 and exactly the limit at depth 20: value 0.03.
    r = RELU_INFINITE_BATCH_NORM_RATE
    tables = tables_with(
        step0_table({("relu", "batch", 256, 10): r * 1.03, ("relu", "batch", 256, 20): r})
    )
    m = MEASURES["layer_growth"](
        tables, where={"act": "relu", "norm": "batch"}, expected="relu_infinite_batch"
    )
    assert m.value == pytest.approx(0.03)
    assert "depth 10" in m.text


def test_layer_growth_linear_rate_depends_on_the_batch():
    # Exactly sqrt((B-2)/(B-3)) at B = 8 and B = 32: no deviation; a flat B = 8 profile would
    # deviate by 1 - 1/1.0954 = 8.7%.
    exact = step0_table(
        {("identity", "batch", 8, 12): linear_norm_rate(8), ("identity", "batch", 32, 12): linear_norm_rate(32)}
    )  # fmt: skip
    m = MEASURES["layer_growth"](
        tables_with(exact), where={"act": "identity"}, expected="linear_batch"
    )
    assert m.value == pytest.approx(0.0, abs=1e-9)
    flat = step0_table({("identity", "batch", 8, 12): 1.0})
    m = MEASURES["layer_growth"](
        tables_with(flat), where={"act": "identity"}, expected="linear_batch"
    )
    assert m.value == pytest.approx(1 - 1 / math.sqrt(1.2))


def test_layer_growth_ratio_is_the_smallest_over_depths():
    tables = tables_with(
        step0_table(
            {
                ("relu", "batch", 8, 10): 1.32,
                ("relu", "batch", 256, 10): 1.20,
                ("relu", "batch", 8, 30): 1.26,
                ("relu", "batch", 256, 30): 1.20,
            }
        )
    )
    m = MEASURES["layer_growth_ratio"](tables, a={"batch_size": 8}, b={"batch_size": 256})
    assert m.value == pytest.approx(1.26 / 1.20)  # depth 30 (1.05), not depth 10 (1.10)


def test_layer_growth_without_rows_is_missing():
    with pytest.raises(Missing):
        MEASURES["layer_growth"](
            tables_with(step0_table({("relu", "batch", 8, 10): 1.2})),
            where={"act": "identity"},
            expected="flat",
        )
    with pytest.raises(Missing):
        MEASURES["layer_growth"](Tables.empty(), where={}, expected="flat")
