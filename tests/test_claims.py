"""Claim evaluation on synthetic tables: no training, no files."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pandas as pd
import pytest

from bnexp.claims import (
    INCONCLUSIVE,
    MEASURES,
    NOT_REPRODUCED,
    REPRODUCED,
    Measurement,
    Tables,
    criterion_text,
    evaluate,
    judge,
    select,
    t_interval,
)
from bnexp.findings import load_findings

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
        runs.append({"run_id": run_id, "status": spec.get("status", "completed"), "seed": seed,
                     **dict(zip(extra_keys, values, strict=True))})  # fmt: skip
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
    "id": "faster", "claim": "BN reaches plain's final accuracy in >= 3x fewer steps", "published": "14x",
    "measure": "steps_to_reach_ratio", "args": {"fast": {"norm": "batch"}, "slow": {"norm": "none"}},
    "criterion": {"op": ">=", "value": 3},
}  # fmt: skip


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
        "id": "higher", "claim": "c", "measure": "final_accuracy_difference",
        "args": {"a": {"norm": "batch"}, "b": {"norm": "none"}}, "criterion": {"op": ">=", "value": 0},
    }  # fmt: skip
    result = evaluate(spec, fig1_like(30, 20, bn_top=0.98, plain_top=0.95))
    assert result.verdict == REPRODUCED
    assert result.value == pytest.approx(3.0, abs=0.2)  # points
    low, high = result.interval
    assert low <= result.value <= high


def test_equivalence_criterion_has_three_outcomes():
    within = {"op": "within", "low": -3, "high": 3, "use_interval": True}
    assert judge(within, Measurement(0.5, "", interval=(-1.0, 2.0)))[0] == REPRODUCED
    assert judge(within, Measurement(5.0, "", interval=(4.0, 6.0)))[0] == NOT_REPRODUCED
    assert judge(within, Measurement(2.0, "", interval=(-1.0, 5.0)))[0] == INCONCLUSIVE
    assert judge(within, Measurement(float("nan"), ""))[0] == INCONCLUSIVE
    assert "95% interval inside [-3, 3]" in criterion_text(within)


def test_t_interval_matches_a_known_case():
    mean, low, high = t_interval(np.array([1.0, 2.0, 3.0]))
    assert mean == 2.0
    assert high - mean == pytest.approx(4.303 * 1.0 / math.sqrt(3), rel=1e-3)
    assert t_interval(np.array([1.0]))[1] == -math.inf


def test_gradient_ratio_spans_orders_of_magnitude_without_bn():
    layers_plain = {layer: {"grad_w_mean_abs": 0.4 * 0.2 ** (10 - layer)} for layer in range(1, 11)}
    layers_bn = {layer: {"grad_w_mean_abs": 0.1 + 0.02 * layer} for layer in range(1, 11)}
    tables = make_tables(
        {("none", 0): {"layers": layers_plain}, ("batch", 0): {"layers": layers_bn}}
    )
    vanishes = {"id": "v", "claim": "c", "measure": "gradient_ratio", "criterion": {"op": ">=", "value": 100},
                "args": {"where": {"norm": "none"}, "early_steps": 100, "mode": "top_over_bottom"}}  # fmt: skip
    flat = {"id": "f", "claim": "c", "measure": "gradient_ratio", "criterion": {"op": "<=", "value": 5},
            "args": {"where": {"norm": "batch"}, "early_steps": 100, "mode": "max_over_min"}}  # fmt: skip
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
    spec = {"id": "d", "claim": "c", "measure": "drift_ratio", "criterion": {"op": ">=", "value": 2},
            "args": {"high": {"norm": "none"}, "low": {"norm": "batch"}, "quantity": "median"}}  # fmt: skip
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
    spec = {"id": "p", "claim": "c", "measure": "fails_to_reach", "criterion": {"op": "==", "value": 2},
            "args": {"variants": [{"norm": "none", "optim.lr": 0.5}, {"norm": "none", "optim.lr": 3.0}],
                     "reference": {"norm": "none", "optim.lr": 0.1}}}  # fmt: skip
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
    spec = {"id": "e", "claim": "c", "measure": "error_ratio", "criterion": {"op": ">=", "value": 1.2},
            "args": {"a": {"norm": "batch", "batch_size": 2}, "b": {"norm": "batch", "batch_size": 32}}}  # fmt: skip
    result = evaluate(spec, tables)
    assert result.value == pytest.approx(0.10 / 0.05)
    assert result.verdict == REPRODUCED


def test_in_process_tables():
    rows = []
    for size in (1, 2, 1000):
        rows.append({"seed": 0, "eval_batch_size": size, "mode": "running", "accuracy": 0.9})
        rows.append(
            {
                "seed": 0,
                "eval_batch_size": size,
                "mode": "batch",
                "accuracy": {1: 0.1, 2: 0.5, 1000: 0.895}[size],
            }
        )
    scale = pd.DataFrame(
        [
            {"check": "forward", "a": a, "eps": eps, "rel_error": 1e-15 if eps == 0 else 1e-3}
            for a in (0.1, 10)
            for eps in (0, 1e-5)
        ]
    )
    tables = Tables.empty()
    tables.extra = {"eval_batch_size": pd.DataFrame(rows), "scale_invariance": scale}
    gap = {
        "id": "g",
        "claim": "c",
        "measure": "eval_accuracy_gap",
        "args": {"eval_batch_size": 2},
        "criterion": {"op": ">=", "value": 10},
    }
    assert evaluate(gap, tables).value == pytest.approx(40.0)
    large = {
        **gap,
        "args": {"eval_batch_size": "max"},
        "criterion": {"op": "within", "low": -1, "high": 1},
    }
    assert evaluate(large, tables).verdict == REPRODUCED
    stable = {
        "id": "s",
        "claim": "c",
        "measure": "eval_accuracy_range",
        "args": {"mode": "running"},
        "criterion": {"op": "<=", "value": 0.2},
    }
    assert evaluate(stable, tables).value == pytest.approx(0.0)
    exact = {
        "id": "x",
        "claim": "c",
        "measure": "max_relative_error",
        "args": {"check": "forward", "eps": 0.0},
        "criterion": {"op": "<=", "value": 1e-9},
    }
    assert evaluate(exact, tables).verdict == REPRODUCED
    assert (
        evaluate({**exact, "args": {"check": "forward", "eps": 1e-5}}, tables).verdict
        == NOT_REPRODUCED
    )
    assert evaluate(gap, Tables.empty()).verdict == INCONCLUSIVE


def test_every_shipped_claim_names_a_measure_with_matching_arguments():
    findings = load_findings()
    assert {"fig1", "fig1-dist", "gradient-flow", "affine", "placement", "learning-rate", "batch-size",
            "running-stats", "scale-invariance"} <= set(findings)  # fmt: skip
    for finding in findings.values():
        assert finding.claims, finding.name
        for claim in finding.claims:
            signature = inspect.signature(MEASURES[claim["measure"]])
            signature.bind(
                Tables.empty(), **(claim.get("args") or {})
            )  # raises on a wrong argument
            assert claim["published"] and claim["claim"]
