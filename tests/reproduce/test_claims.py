"""Claim evaluation on synthetic tables: no training, no files."""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bnexp.reproduce.claims import (
    IDENTITY_FAILS,
    IDENTITY_HOLDS,
    IDENTITY_UNCHECKED,
    INCONCLUSIVE,
    MEASURES,
    NOT_REPRODUCED,
    REPRODUCED,
    Measurement,
    Tables,
    Tally,
    check_claim,
    criterion_text,
    evaluate,
    judge,
    results_frame,
    select,
    t_interval,
)
from bnexp.reproduce.findings import load_findings

STEPS = list(range(0, 1001, 100))


def saturating(rate: float, top: float) -> list[float]:
    """Test accuracy rising from chance (0.1) towards `top`, faster for larger `rate`."""
    return [0.1 + (top - 0.1) * (1 - math.exp(-rate * s / 1000)) for s in STEPS]


def make_tables(variants: dict[tuple, dict], extra_keys: tuple[str, ...] = ("norm",)) -> Tables:
    """variants: {(key values..., seed): {"acc": [...], "status": ..., "layers": {layer: {col: val}}}}."""
    runs, metrics, layers = [], [], []
    for key, spec in variants.items():
        *values, seed = key
        run_id = "run-" + "-".join(map(str, key))
        runs.append(
            {
                "run_id": run_id,
                "status": spec.get("status", "completed"),
                "seed": seed,
                **dict(zip(extra_keys, values, strict=True)),
            }
        )
        for step, acc in zip(STEPS, spec.get("acc", []), strict=False):
            metrics.append({"run_id": run_id, "step": step, "test_acc": acc})
        for layer, columns in spec.get("layers", {}).items():
            for step in STEPS:
                row = {"run_id": run_id, "step": step, "layer": layer}
                row.update({c: (v(step) if callable(v) else v) for c, v in columns.items()})
                layers.append(row)
    return Tables(pd.DataFrame(runs), pd.DataFrame(metrics), pd.DataFrame(layers))


def fig1_like(
    bn_rate: float, plain_rate: float, bn_top: float = 0.98, plain_top: float = 0.95
) -> Tables:
    variants = {}
    for seed in (0, 1):
        variants[("batch", seed)] = {"acc": saturating(bn_rate, bn_top)}
        variants[("none", seed)] = {"acc": saturating(plain_rate, plain_top)}
    return make_tables(variants)


FASTER = {
    "id": "faster",
    "claim": "BN reaches plain's final accuracy in >= 3x fewer steps",
    "published": "14x",
    "measure": "steps_to_reach_ratio",
    "args": {"fast": {"norm": "batch"}, "slow": {"norm": "none"}},
    "criterion": {"op": ">=", "value": 3},
}


def test_a_claim_that_holds_is_reproduced():
    result = evaluate(FASTER, fig1_like(bn_rate=20, plain_rate=2))
    assert result.verdict == REPRODUCED
    assert result.value >= 3
    assert "fewer" in result.value_text


def test_a_claim_that_fails_is_not_reproduced():
    result = evaluate(FASTER, fig1_like(bn_rate=2.2, plain_rate=2))
    assert result.verdict == NOT_REPRODUCED
    assert 0 < result.value < 3


def test_missing_runs_make_the_claim_inconclusive():
    tables = fig1_like(20, 2)
    tables.runs = tables.runs[tables.runs["norm"] == "batch"]
    result = evaluate(FASTER, tables)
    assert result.verdict == INCONCLUSIVE
    assert "no runs with norm=none" in result.reason


def test_failed_runs_make_the_claim_inconclusive():
    tables = fig1_like(20, 2)
    tables.runs.loc[tables.runs["norm"] == "none", "status"] = "failed"
    result = evaluate(FASTER, tables)
    assert result.verdict == INCONCLUSIVE
    assert "did not complete" in result.reason


def test_a_reference_that_never_learns_is_inconclusive_not_infinitely_faster():
    variants = {
        ("batch", 0): {"acc": saturating(20, 0.98)},
        ("none", 0): {"acc": [0.1] * len(STEPS)},
    }
    result = evaluate(FASTER, make_tables(variants))
    assert result.verdict == INCONCLUSIVE
    assert "did not learn" in result.reason


def test_a_diverged_fast_variant_scores_zero():
    variants = {
        ("batch", 0): {"acc": saturating(20, 0.98)[:3], "status": "diverged"},
        ("none", 0): {"acc": saturating(2, 0.95)},
    }
    result = evaluate(FASTER, make_tables(variants))
    assert result.value == 0
    assert result.verdict == NOT_REPRODUCED
    assert "diverged" in result.value_text


def test_no_claims_for_an_unavailable_model():
    result = evaluate(FASTER, Tables.empty(), unavailable="CNN not available")
    assert result.verdict == INCONCLUSIVE
    assert result.reason == "CNN not available"


def test_final_accuracy_difference_is_paired_by_seed_with_an_interval():
    spec = {
        "id": "higher",
        "claim": "c",
        "measure": "final_accuracy_difference",
        "args": {"a": {"norm": "batch"}, "b": {"norm": "none"}},
        "criterion": {"op": ">=", "value": 0},
    }
    result = evaluate(spec, fig1_like(30, 20, bn_top=0.98, plain_top=0.95))
    assert result.verdict == REPRODUCED
    assert result.value == pytest.approx(3.0, abs=0.2)  # points
    low, high = result.interval
    assert low <= result.value <= high


def test_equivalence_criterion_has_three_outcomes():
    within = {"op": "within", "low": -3, "high": 3}
    assert judge(within, Measurement(0.5, "", interval=(-1.0, 2.0)))[0] == REPRODUCED
    assert judge(within, Measurement(5.0, "", interval=(4.0, 6.0)))[0] == NOT_REPRODUCED
    assert judge(within, Measurement(-5.0, "", interval=(-6.0, -3.5)))[0] == NOT_REPRODUCED
    assert judge(within, Measurement(2.0, "", interval=(-1.0, 5.0)))[0] == INCONCLUSIVE
    assert judge(within, Measurement(float("nan"), ""))[0] == INCONCLUSIVE
    assert "95% interval inside [-3, 3]" in criterion_text(within)
    # the bounds themselves count as inside
    assert judge(within, Measurement(0.0, "", interval=(-3.0, 3.0)))[0] == REPRODUCED


def test_within_judges_the_interval_never_the_point_value():
    """noisy-bn's "as good as BN" once passed on its point value (-0.33) with a 95% interval of
    [-7.53, +6.87] and n=2: under the one rule that is inconclusive."""
    within = {"op": "within", "low": -2, "high": 2, "unit": "points"}
    verdict, reason = judge(within, Measurement(-0.33, "", interval=(-7.53, 6.87)))
    assert verdict == INCONCLUSIVE and "wider than [-2, 2]" in reason
    # an interval narrower than the bounds that straddles one is inconclusive too
    verdict, reason = judge(within, Measurement(1.5, "", interval=(1.0, 2.5)))
    assert verdict == INCONCLUSIVE and "straddles" in reason
    # one seed: no interval, whatever the point value
    verdict, reason = judge(within, Measurement(0.0, "", interval=(-math.inf, math.inf)))
    assert verdict == INCONCLUSIVE and "single pair" in reason
    verdict, reason = judge(within, Measurement(0.0, "", interval=None))
    assert verdict == INCONCLUSIVE and "no 95% interval" in reason


def test_a_single_seed_within_claim_is_inconclusive_end_to_end():
    spec = {
        "id": "eq",
        "claim": "c",
        "published": "p",
        "measure": "final_accuracy_difference",
        "args": {"a": {"norm": "batch"}, "b": {"norm": "none"}},
        "criterion": {"op": "within", "low": -50, "high": 50},
    }
    tables = make_tables(
        {("batch", 0): {"acc": saturating(30, 0.95)}, ("none", 0): {"acc": saturating(30, 0.95)}}
    )
    result = evaluate(spec, tables)
    assert result.value == pytest.approx(0.0)  # identical curves: inside any bound as a point
    assert result.verdict == INCONCLUSIVE


def test_use_interval_false_is_rejected_and_bounds_are_checked():
    check_claim({"criterion": {"op": "within", "low": -1, "high": 1, "use_interval": True}})
    with pytest.raises(ValueError, match="use_interval"):
        check_claim({"criterion": {"op": "within", "low": -1, "high": 1, "use_interval": False}})
    with pytest.raises(ValueError, match="low 2 > high 1"):
        check_claim({"criterion": {"op": "within", "low": 2, "high": 1}})
    with pytest.raises(ValueError, match="kind"):
        check_claim({"kind": "theorem", "criterion": {"op": ">=", "value": 1}})
    with pytest.raises(ValueError, match="retired"):
        check_claim({"retired": "", "criterion": {"op": ">=", "value": 1}})


def test_t_interval_matches_a_known_case():
    mean, low, high = t_interval(np.array([1.0, 2.0, 3.0]))
    assert mean == 2.0
    assert high - mean == pytest.approx(4.302652730 * 1.0 / math.sqrt(3), rel=1e-9)
    assert t_interval(np.array([1.0]))[1] == -math.inf
    # 40 values: t(0.975, 39) = 2.022691, not the normal 1.96 the claims once used past 31
    values = np.arange(40.0)
    mean, low, high = t_interval(values)
    assert high - mean == pytest.approx(2.022690901 * values.std(ddof=1) / math.sqrt(40), rel=1e-8)


def test_gradient_ratio_spans_orders_of_magnitude_without_bn():
    layers_plain = {layer: {"grad_w_mean_abs": 0.4 * 0.2 ** (10 - layer)} for layer in range(1, 11)}
    layers_bn = {layer: {"grad_w_mean_abs": 0.1 + 0.02 * layer} for layer in range(1, 11)}
    tables = make_tables(
        {("none", 0): {"layers": layers_plain}, ("batch", 0): {"layers": layers_bn}}
    )
    vanishes = {
        "id": "v",
        "claim": "c",
        "measure": "gradient_ratio",
        "criterion": {"op": ">=", "value": 100},
        "args": {"where": {"norm": "none"}, "early_steps": 100, "mode": "top_over_bottom"},
    }
    flat = {
        "id": "f",
        "claim": "c",
        "measure": "gradient_ratio",
        "criterion": {"op": "<=", "value": 5},
        "args": {"where": {"norm": "batch"}, "early_steps": 100, "mode": "max_over_min"},
    }
    assert evaluate(vanishes, tables).value == pytest.approx(0.2**-9)
    assert evaluate(vanishes, tables).verdict == REPRODUCED
    assert evaluate(flat, tables).value == pytest.approx(0.3 / 0.12)
    assert evaluate(flat, tables).verdict == REPRODUCED


def test_drift_ratio_compares_the_range_over_training():
    moving = {
        3: {
            "unit_p15": lambda s: -0.1 - s / 1000,
            "unit_p50": lambda s: s / 500,
            "unit_p85": lambda s: 0.1 + s / 400,
        }
    }
    steady = {3: {"unit_p15": -1.0, "unit_p50": lambda s: 0.1 * (s % 200 == 0), "unit_p85": 1.0}}
    tables = make_tables({("none", 0): {"layers": moving}, ("batch", 0): {"layers": steady}})
    spec = {
        "id": "d",
        "claim": "c",
        "measure": "drift_ratio",
        "criterion": {"op": ">=", "value": 2},
        "args": {"high": {"norm": "none"}, "low": {"norm": "batch"}, "quantity": "median"},
    }
    result = evaluate(spec, tables)
    assert result.value == pytest.approx(2.0 / 0.1)
    spread = evaluate({**spec, "args": {**spec["args"], "quantity": "spread"}}, tables)
    assert spread.verdict == INCONCLUSIVE  # BN's spread never moves: the ratio is undefined
    assert "no drift" in spread.reason


def test_fails_to_reach_counts_divergence_and_shortfall():
    variants = {
        ("none", 0.1, 0): {"acc": saturating(2, 0.95)},
        ("none", 0.5, 0): {"acc": [0.1, 0.2], "status": "diverged"},
        ("none", 3.0, 0): {"acc": saturating(2, 0.80)},
    }
    tables = make_tables(variants, extra_keys=("norm", "optim.lr"))
    spec = {
        "id": "p",
        "claim": "c",
        "measure": "fails_to_reach",
        "criterion": {"op": "==", "value": 2},
        "args": {
            "variants": [{"norm": "none", "optim.lr": 0.5}, {"norm": "none", "optim.lr": 3.0}],
            "reference": {"norm": "none", "optim.lr": 0.1},
        },
    }
    result = evaluate(spec, tables)
    assert result.value == 2
    assert result.verdict == REPRODUCED
    assert "diverged in 1 of 1" in result.value_text


def test_error_ratio_and_selection_by_numeric_keys():
    variants = {
        ("batch", 2, 0): {"acc": [0.1] + [0.90] * 10},
        ("batch", 32, 0): {"acc": [0.1] + [0.95] * 10},
    }
    tables = make_tables(variants, extra_keys=("norm", "batch_size"))
    assert len(select(tables.runs, {"batch_size": "32"})) == 1
    spec = {
        "id": "e",
        "claim": "c",
        "measure": "error_ratio",
        "criterion": {"op": ">=", "value": 1.2},
        "args": {"a": {"norm": "batch", "batch_size": 2}, "b": {"norm": "batch", "batch_size": 32}},
    }
    result = evaluate(spec, tables)
    assert result.value == pytest.approx(0.10 / 0.05)
    assert result.verdict == REPRODUCED


def eval_table(accuracies: dict[tuple[int, int, str], float]) -> Tables:
    """{(seed, eval_batch_size, mode): accuracy} as the running-stats procedure writes it."""
    rows = [
        {"seed": seed, "eval_batch_size": size, "mode": mode, "accuracy": acc, "images": 1000}
        for (seed, size, mode), acc in accuracies.items()
    ]
    tables = Tables.empty()
    tables.extra = {"eval_batch_size": pd.DataFrame(rows)}
    return tables


GAP = {
    "id": "g",
    "claim": "c",
    "measure": "eval_accuracy_gap",
    "args": {"eval_batch_size": 2},
    "criterion": {"op": ">=", "value": 10},
}
LARGE = {
    **GAP,
    "args": {"eval_batch_size": "max"},
    "criterion": {"op": "within", "low": -1, "high": 1},
}
STABLE = {
    "id": "s",
    "claim": "c",
    "measure": "eval_accuracy_range",
    "args": {"mode": "running"},
    "criterion": {"op": "<=", "value": 0.2},
}


def test_eval_accuracy_gap_is_paired_by_seed_with_an_interval():
    # running minus batch at size 1000, per seed: +0.1, +0.2, +0.3 points -> mean 0.2, sd 0.1,
    # half-width t(0.975, 2) * 0.1 / sqrt(3) = 0.2484: [-0.048, 0.448], inside [-1, 1].
    acc = {}
    for seed, gap in ((0, 0.001), (1, 0.002), (2, 0.003)):
        acc[(seed, 1000, "running")] = 0.90
        acc[(seed, 1000, "batch")] = 0.90 - gap
        acc[(seed, 2, "running")] = 0.90
        acc[(seed, 2, "batch")] = 0.50 + 0.1 * seed  # gaps 40, 30, 20 points
    tables = eval_table(acc)
    large = evaluate(LARGE, tables)
    assert large.value == pytest.approx(0.2)
    assert large.interval[0] == pytest.approx(0.2 - 4.302652730 * 0.1 / math.sqrt(3), rel=1e-6)
    assert large.verdict == REPRODUCED
    small = evaluate(GAP, tables)
    assert small.value == pytest.approx(30.0)
    assert small.verdict == REPRODUCED
    # two seeds far apart: the interval is wider than the bound -> inconclusive, not reproduced
    spread = eval_table(
        {
            (0, 1000, "running"): 0.9,
            (0, 1000, "batch"): 0.89,
            (1, 1000, "running"): 0.9,
            (1, 1000, "batch"): 0.905,
        }
    )
    result = evaluate(LARGE, spread)
    assert result.value == pytest.approx(0.25)
    assert result.verdict == INCONCLUSIVE
    assert evaluate(GAP, Tables.empty()).verdict == INCONCLUSIVE


def test_eval_accuracy_range_is_max_minus_min_of_the_seed_means():
    # seed means by size: 1: (0.900 + 0.910) / 2 = 0.905; 8: (0.899 + 0.905) / 2 = 0.902;
    # 1000: (0.902 + 0.912) / 2 = 0.907 -> range 0.907 - 0.902 = 0.5 points (> 0.2).
    acc = {
        (0, 1, "running"): 0.900,
        (1, 1, "running"): 0.910,
        (0, 8, "running"): 0.899,
        (1, 8, "running"): 0.905,
        (0, 1000, "running"): 0.902,
        (1, 1000, "running"): 0.912,
        (0, 1, "batch"): 0.1,
        (1, 1, "batch"): 0.1,  # batch statistics: not part of the range
    }
    result = evaluate(STABLE, eval_table(acc))
    assert result.value == pytest.approx(0.5)
    assert result.verdict == NOT_REPRODUCED
    assert "90.2% to 90.7%" in result.value_text
    batch_range = evaluate({**STABLE, "args": {"mode": "batch"}}, eval_table(acc))
    assert batch_range.verdict == INCONCLUSIVE  # a single eval batch size with batch statistics


def scale_table(formula_error: float, torch_errors: dict[float, float]) -> Tables:
    rows = []
    for a in (1e-4, 0.01, 0.1, 1.0, 10.0, 100.0):
        for check in ("forward", "input_jacobian", "weight_gradient"):
            rows.append(
                {
                    "check": check,
                    "layer": "formula",
                    "a": a,
                    "eps": 0.0,
                    "rel_error": 0.0 if a == 1 else formula_error,
                    "a_sigma_min": a * 0.03,
                }
            )
            error = torch_errors[a] * (0.5 if check == "weight_gradient" else 1.0)
            rows.append(
                {
                    "check": check,
                    "layer": "torch",
                    "a": a,
                    "eps": 1e-5,
                    "rel_error": error,
                    "a_sigma_min": a * 0.03,
                }
            )
    tables = Tables.empty()
    tables.extra = {"scale_invariance": pd.DataFrame(rows)}
    return tables


TORCH_ERRORS = {1e-4: 0.99, 0.01: 0.5, 0.1: 0.02, 1.0: 0.0, 10.0: 0.004, 100.0: 0.005}
REAL = {
    "id": "r",
    "claim": "c",
    "measure": "max_relative_error",
    "criterion": {"op": "<=", "value": 1e-2},
    "args": {
        "check": ["forward", "input_jacobian", "weight_gradient"],
        "layer": "torch",
        "eps": 1e-5,
        "a_min": 1,
        "a_max": 100,
        "breaks_above": 1e-2,
    },
}
IDENTITY = {
    "id": "i",
    "kind": "identity",
    "claim": "c",
    "measure": "max_relative_error",
    "args": {"check": "forward", "eps": 0.0},
    "criterion": {"op": "<=", "value": 1e-9},
}


def test_max_relative_error_on_torchs_layer_over_a_range_of_scales():
    result = evaluate(REAL, scale_table(1e-15, TORCH_ERRORS))
    assert result.value == pytest.approx(0.005)  # largest over a in [1, 100]; the small a's are out
    assert result.verdict == REPRODUCED
    # where it breaks: a <= 0.1 exceeds 1e-2; a·σ_min / sqrt(eps) there = 0.1 * 0.03 / 0.00316 = 0.95
    assert "error > 0.01 for every a <= 0.1" in result.value_text
    assert "0.95·sqrt(eps)" in result.value_text
    assert list(result.detail["a"]) == [1e-4, 0.01, 0.1, 1.0, 10.0, 100.0]
    worse = evaluate(REAL, scale_table(1e-15, {**TORCH_ERRORS, 100.0: 0.03}))
    assert worse.value == pytest.approx(0.03) and worse.verdict == NOT_REPRODUCED
    missing = evaluate(
        {**REAL, "args": {**REAL["args"], "a_min": 200}}, scale_table(0, TORCH_ERRORS)
    )
    assert missing.verdict == INCONCLUSIVE


def test_identity_checks_are_named_and_counted_apart():
    holds = evaluate(IDENTITY, scale_table(1e-15, TORCH_ERRORS))
    assert holds.verdict == IDENTITY_HOLDS and holds.kind == "identity" and not holds.counted
    fails = evaluate(IDENTITY, scale_table(1e-6, TORCH_ERRORS))
    assert fails.verdict == IDENTITY_FAILS
    unchecked = evaluate(IDENTITY, Tables.empty())
    assert unchecked.verdict == IDENTITY_UNCHECKED
    # old tables (no `layer` column) are read as the formula's
    old = scale_table(1e-15, TORCH_ERRORS)
    old.extra["scale_invariance"] = (
        old.extra["scale_invariance"].query("layer == 'formula'").drop(columns="layer")
    )
    assert evaluate(IDENTITY, old).verdict == IDENTITY_HOLDS

    claim = evaluate(REAL, scale_table(1e-15, TORCH_ERRORS))
    retired = evaluate(
        {**REAL, "id": "old", "retired": "measured the wrong thing"},
        scale_table(1e-15, TORCH_ERRORS),
    )
    assert retired.verdict == REPRODUCED and retired.retired == "measured the wrong thing"
    tally = Tally.of([claim, holds, fails, unchecked, retired])
    assert tally.claims == {REPRODUCED: 1, NOT_REPRODUCED: 0, INCONCLUSIVE: 0}
    assert tally.text() == (
        "1 claim: 1 reproduced, 0 not reproduced, 0 inconclusive; "
        "3 identity checks: 1 hold, 1 fail, 1 not checked; 1 retired claim (not counted)"
    )
    everything_holds = Tally.of([claim, holds, holds])
    assert (
        everything_holds.text()
        == "1 claim: 1 reproduced, 0 not reproduced, 0 inconclusive; 2 identity checks hold"
    )
    assert (everything_holds + tally).n_claims == 2
    frame = results_frame([claim, holds, retired], "f")
    assert list(frame["kind"]) == ["claim", "identity", "claim"]
    assert list(frame["retired"]) == ["", "", "measured the wrong thing"]


def _ends_at(during: float, at_last: float):
    """A column that reads `during` at every step but the last, where it reads `at_last`."""
    return lambda step: at_last if step == STEPS[-1] else during


def layer_tables(
    variants: dict[tuple, dict[int, dict[str, Any]]], last: dict | None = None
) -> Tables:
    """Layer rows at STEPS; `last` overrides the values at the last step: {(variant): {layer: {col: v}}}."""
    spec = {}
    for key, layers in variants.items():
        columns = {}
        for layer, values in layers.items():
            final = (last or {}).get(key, {}).get(layer, {})
            columns[layer] = {c: _ends_at(v, final.get(c, v)) for c, v in values.items()}
        spec[key] = {"layers": columns}
    return make_tables(spec)


def test_final_layer_max_reads_the_last_step_and_averages_seeds():
    # act_sat_frac during training 0.5 everywhere (must be ignored); at the last step
    # seed 0: layers 1, 2, 3 = 0.010, 0.030, 0.020; seed 1: 0.012, 0.010, 0.040
    # seed means: 0.011, 0.020, 0.030 -> max 0.030 at layer 3.
    variants = {
        (False, 0): {1: {"act_sat_frac": 0.5}, 2: {"act_sat_frac": 0.5}, 3: {"act_sat_frac": 0.5}},
        (False, 1): {1: {"act_sat_frac": 0.5}, 2: {"act_sat_frac": 0.5}, 3: {"act_sat_frac": 0.5}},
    }
    last = {
        (False, 0): {
            1: {"act_sat_frac": 0.010},
            2: {"act_sat_frac": 0.030},
            3: {"act_sat_frac": 0.020},
        },
        (False, 1): {
            1: {"act_sat_frac": 0.012},
            2: {"act_sat_frac": 0.010},
            3: {"act_sat_frac": 0.040},
        },
    }
    tables = layer_tables(variants, last)
    tables.runs = tables.runs.rename(columns={"norm": "affine"})
    spec = {
        "id": "m",
        "claim": "c",
        "measure": "final_layer_max",
        "criterion": {"op": "<=", "value": 0.01},
        "args": {"where": {"affine": False}, "column": "act_sat_frac"},
    }
    result = evaluate(spec, tables)
    assert result.value == pytest.approx(0.030)
    assert "layer 3" in result.value_text
    assert result.verdict == NOT_REPRODUCED
    assert (
        evaluate({**spec, "criterion": {"op": "<=", "value": 0.031}}, tables).verdict == REPRODUCED
    )


def test_final_layer_max_ratio_divides_the_largest_layers():
    # a: last-step layers 0.010, 0.040 -> max 0.040; b: 0.020, 0.016 -> max 0.020; ratio 2.0
    variants = {
        ("on", 0): {1: {"act_sat_frac": 0.9}, 2: {"act_sat_frac": 0.9}},
        ("off", 0): {1: {"act_sat_frac": 0.9}, 2: {"act_sat_frac": 0.9}},
    }
    last = {
        ("on", 0): {1: {"act_sat_frac": 0.010}, 2: {"act_sat_frac": 0.040}},
        ("off", 0): {1: {"act_sat_frac": 0.020}, 2: {"act_sat_frac": 0.016}},
    }
    spec = {
        "id": "r",
        "claim": "c",
        "measure": "final_layer_max_ratio",
        "criterion": {"op": ">=", "value": 2},
        "args": {"a": {"norm": "on"}, "b": {"norm": "off"}, "column": "act_sat_frac"},
    }
    result = evaluate(spec, layer_tables(variants, last))
    assert result.value == pytest.approx(2.0)
    assert result.verdict == REPRODUCED
    assert list(result.detail.columns) == ["layer", "norm=on", "norm=off"]
    # b never saturates: the ratio is infinite; neither does: undefined, inconclusive
    zero_b = {**last, ("off", 0): {1: {"act_sat_frac": 0.0}, 2: {"act_sat_frac": 0.0}}}
    assert evaluate(spec, layer_tables(variants, zero_b)).value == math.inf
    zero_both = {("on", 0): zero_b[("off", 0)], ("off", 0): zero_b[("off", 0)]}
    assert evaluate(spec, layer_tables(variants, zero_both)).verdict == INCONCLUSIVE


def test_curve_above_fraction_counts_evaluations_after_step_zero():
    # steps 0, 100, ..., 1000 (11 evaluations; step 0 is left out -> 10 counted).
    # upper - lower at steps 100..1000: +, +, -, +, 0 (ties count as above), +, -, +, +, +
    lower = [0.1, 0.5, 0.5, 0.6, 0.6, 0.7, 0.7, 0.8, 0.8, 0.8, 0.8]
    upper = [0.0, 0.6, 0.6, 0.5, 0.7, 0.7, 0.8, 0.7, 0.9, 0.9, 0.9]
    # two seeds of `upper` whose mean is `upper`
    variants = {
        ("batch", 0): {"acc": [u + 0.05 for u in upper]},
        ("batch", 1): {"acc": [u - 0.05 for u in upper]},
        ("none", 0): {"acc": lower},
    }
    spec = {
        "id": "a",
        "claim": "c",
        "measure": "curve_above_fraction",
        "criterion": {"op": ">=", "value": 0.9},
        "args": {"upper": {"norm": "batch"}, "lower": {"norm": "none"}},
    }
    result = evaluate(spec, make_tables(variants))
    assert result.value == pytest.approx(0.8)
    assert "at 8 of 10 evaluations" in result.value_text
    assert result.verdict == NOT_REPRODUCED
    # only step 0 in common: nothing to compare
    early = {k: {"acc": v["acc"][:1]} for k, v in variants.items()}
    assert evaluate(spec, make_tables(early)).verdict == INCONCLUSIVE


def test_every_shipped_claim_names_a_measure_with_matching_arguments():
    findings = load_findings()
    assert {
        "fig1",
        "fig1-dist",
        "gradient-flow",
        "affine",
        "placement",
        "learning-rate",
        "batch-size",
        "running-stats",
        "scale-invariance",
    } <= set(findings)
    for finding in findings.values():
        assert finding.claims, finding.name
        for claim in finding.claims:
            signature = inspect.signature(MEASURES[claim["measure"]])
            signature.bind(
                Tables.empty(), **(claim.get("args") or {})
            )  # raises on a wrong argument
            assert claim["published"] and claim["claim"]
