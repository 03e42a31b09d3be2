"""Claim evaluation: pure functions from tidy tables to a measured value and a verdict.

A finding's claims are declared in `bnexp/reproduce/findings/NAME.yaml`, before the runs exist. Each
claim names a *measure* (a function below, registered in `MEASURES`) with its arguments, and a
*criterion* the measured value must meet:

    measure: steps_to_reach_ratio
    args: {fast: {norm: batch}, slow: {norm: none}}
    criterion: {op: ">=", value: 3}

Measures read `Tables` (one row per run; the concatenated metrics.csv and layers.csv rows,
keyed by `run_id`; extra tables that in-process findings compute) and return a
`Measurement`. They never touch files, so they are tested on synthetic tables.

Verdicts: `reproduced` (the criterion holds), `not reproduced` (it does not), `inconclusive`
(the value could not be measured: runs missing or failed, too few points; or, for a `within`
criterion, the 95% interval is not wholly inside or wholly outside the bounds).

Two kinds of entry (`kind:` in the declaration):
- `claim` (the default): an empirical statement that the runs could contradict;
- `identity`: a check that cannot fail unless the code is wrong (an algebraic identity, a
  property true by construction). Its verdicts are `identity holds` / `identity fails` /
  `identity not checked`, and it is never counted among the reproduced claims (`Tally`).
A claim replaced after its results were seen stays in the declaration with `retired: REASON`:
it is still measured and shown, with the reason, but no longer counted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bnexp.analysis import intervals
from bnexp.reproduce.layer_growth import expected_rate, growth_factors, log_slope

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE)

CLAIM, IDENTITY = "claim", "identity"
KINDS = (CLAIM, IDENTITY)
IDENTITY_HOLDS = "identity holds"
IDENTITY_FAILS = "identity fails"
IDENTITY_UNCHECKED = "identity not checked"
IDENTITY_VERDICTS = (IDENTITY_HOLDS, IDENTITY_FAILS, IDENTITY_UNCHECKED)
# An identity check is judged like a claim, then named for what it is.
_AS_IDENTITY = {
    REPRODUCED: IDENTITY_HOLDS,
    NOT_REPRODUCED: IDENTITY_FAILS,
    INCONCLUSIVE: IDENTITY_UNCHECKED,
}


@dataclass
class Tables:
    """Everything a finding's claims are measured on.

    runs: one row per run: `run_id`, `status`, `data_source`, `diverged_at_step`, and every
      config key flattened (`norm`, `act`, `seed`, `optim.lr`, `batch_size`, ...; a config
      group's choice under the group's own name, as users type it).
    metrics: `run_id` + the metrics.csv columns.
    layers: `run_id` + the layers.csv columns.
    extra: tables that in-process findings compute (e.g. `eval_batch_size`).
    """

    runs: pd.DataFrame
    metrics: pd.DataFrame
    layers: pd.DataFrame
    extra: dict[str, pd.DataFrame] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> Tables:
        """No runs: the key columns exist (so that selecting and grouping find nothing)."""
        return cls(
            pd.DataFrame({"run_id": [], "status": [], "seed": []}),
            pd.DataFrame({"run_id": [], "step": [], "test_acc": []}),
            pd.DataFrame({"run_id": [], "step": [], "layer": []}),
        )


class Missing(Exception):
    """The value cannot be measured (missing or failed runs, no data): the verdict is inconclusive."""


@dataclass
class Measurement:
    value: float
    text: str  # the value with its context, for the report: "BN 450 steps, plain 4,950: 11x"
    interval: tuple[float, float] | None = None  # 95% interval, when the measure has one
    detail: pd.DataFrame | None = None  # the numbers behind the value (per layer, per variant)


@dataclass
class ClaimResult:
    id: str
    claim: str
    published: str
    criterion: str
    value: float | None
    value_text: str
    verdict: str
    reason: str
    interval: tuple[float, float] | None = None
    detail: pd.DataFrame | None = None
    kind: str = CLAIM
    retired: str | None = None  # why the claim was replaced; a retired claim is not counted

    @property
    def counted(self) -> bool:
        """Whether the result counts among the claims of a summary line."""
        return self.kind == CLAIM and not self.retired


@dataclass
class Tally:
    """Verdict counts for a summary line: claims, identity checks and retired claims apart."""

    claims: dict[str, int]
    identities: dict[str, int]
    retired: int

    @classmethod
    def of(cls, results: list[ClaimResult]) -> Tally:
        claims = {v: 0 for v in VERDICTS}
        identities = {v: 0 for v in IDENTITY_VERDICTS}
        retired = 0
        for r in results:
            if r.retired:
                retired += 1
            elif r.kind == IDENTITY:
                identities[r.verdict] += 1
            else:
                claims[r.verdict] += 1
        return cls(claims, identities, retired)

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            {v: self.claims[v] + other.claims[v] for v in VERDICTS},
            {v: self.identities[v] + other.identities[v] for v in IDENTITY_VERDICTS},
            self.retired + other.retired,
        )

    @property
    def n_claims(self) -> int:
        return sum(self.claims.values())

    @property
    def n_identities(self) -> int:
        return sum(self.identities.values())

    def text(self) -> str:
        """E.g. "27 claims: 20 reproduced, 3 not reproduced, 1 inconclusive; 3 identity checks
        hold; 2 retired claims (not counted)"."""
        c = self.claims
        parts = [
            f"{_count(self.n_claims, 'claim')}: {c[REPRODUCED]} reproduced, "
            f"{c[NOT_REPRODUCED]} not reproduced, {c[INCONCLUSIVE]} inconclusive"
        ]
        n = self.n_identities
        if n:
            i = self.identities
            if i[IDENTITY_HOLDS] == n:
                parts.append(f"{_count(n, 'identity check')} {'holds' if n == 1 else 'hold'}")
            else:
                found = [f"{i[IDENTITY_HOLDS]} hold", f"{i[IDENTITY_FAILS]} fail"]
                if i[IDENTITY_UNCHECKED]:
                    found.append(f"{i[IDENTITY_UNCHECKED]} not checked")
                parts.append(f"{_count(n, 'identity check')}: {', '.join(found)}")
        if self.retired:
            parts.append(f"{_count(self.retired, 'retired claim')} (not counted)")
        return "; ".join(parts)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


# --------------------------------------------------------------------------------------------
# Selecting runs
# --------------------------------------------------------------------------------------------


def _same(value: Any, wanted: Any) -> bool:
    """Config values compare as users write them: 0.5 == "0.5", True == "true", 32 == 32.0."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return wanted is None
    if (
        isinstance(wanted, bool)
        or isinstance(value, bool)
        or str(wanted).lower() in ("true", "false")
    ):
        return str(value).lower() == str(wanted).lower()
    try:
        return math.isclose(float(value), float(wanted), rel_tol=1e-9, abs_tol=1e-12)
    except (TypeError, ValueError):
        return str(value) == str(wanted)


def describe(where: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in where.items()) or "all runs"


def select(runs: pd.DataFrame, where: Mapping[str, Any]) -> pd.DataFrame:
    """The runs whose config matches every key of `where`."""
    mask = pd.Series(True, index=runs.index)
    for key, wanted in where.items():
        if key not in runs.columns:
            return runs.iloc[0:0]
        mask &= runs[key].map(lambda v, w=wanted: _same(v, w))
    return runs[mask]


def variant_runs(
    tables: Tables, where: Mapping[str, Any], *, allow_diverged: bool = False
) -> pd.DataFrame:
    """The runs of one variant; Missing if there are none or some did not finish.

    Diverged runs are results (a curve that ends), failed or unfinished runs are not: a
    variant with any of those cannot be measured.
    """
    runs = select(tables.runs, where)
    if runs.empty:
        raise Missing(f"no runs with {describe(where)}")
    ok = {"completed", "diverged"} if allow_diverged else {"completed"}
    bad = runs[~runs["status"].isin(ok)]
    if not bad.empty:
        statuses = ", ".join(f"{n} {s}" for s, n in bad["status"].value_counts().items())
        raise Missing(
            f"{len(bad)} of {len(runs)} runs with {describe(where)} did not complete ({statuses})"
        )
    return runs


def _diverged(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"] == "diverged"]


# --------------------------------------------------------------------------------------------
# Accuracy curves
# --------------------------------------------------------------------------------------------


# `accuracy: test` (inference mode, held-out images, at evaluated steps) or `accuracy: train`
# (the training batches as the training pass saw them, averaged since the previous log row).
ACCURACY_COLUMNS = {"test": "test_acc", "train": "train_acc"}


def accuracy_column(accuracy: str) -> str:
    if accuracy not in ACCURACY_COLUMNS:
        raise ValueError(
            f"accuracy={accuracy!r} is not known: one of {', '.join(ACCURACY_COLUMNS)}"
        )
    return ACCURACY_COLUMNS[accuracy]


def accuracy_curve(tables: Tables, run_id: str, column: str = "test_acc") -> pd.Series:
    """Accuracy (`column`: test_acc or train_acc) by step of one run, rows that have it only."""
    rows = tables.metrics[tables.metrics["run_id"] == run_id]
    rows = rows.dropna(subset=[column])
    return rows.groupby("step")[column].mean().sort_index()


def mean_curve(tables: Tables, runs: pd.DataFrame, column: str = "test_acc") -> pd.Series:
    """Seed-mean accuracy by step, on the steps every run has."""
    curves = [accuracy_curve(tables, rid, column) for rid in runs["run_id"]]
    frame = pd.concat(curves, axis=1, join="inner") if curves else pd.DataFrame()
    if frame.empty:
        raise Missing(f"no {column} rows for runs {', '.join(runs['run_id'])}")
    return frame.mean(axis=1)


def final_accuracy(
    tables: Tables, run_id: str, last_evals: int = 3, column: str = "test_acc"
) -> float:
    """Mean of a run's last `last_evals` accuracies (smooths the test-set noise)."""
    curve = accuracy_curve(tables, run_id, column)
    if curve.empty:
        raise Missing(f"run {run_id} has no {column}")
    return float(curve.iloc[-last_evals:].mean())


def first_step_reaching(curve: pd.Series, target: float) -> float | None:
    hits = curve[curve >= target - 1e-12]
    return float(hits.index[0]) if len(hits) else None


def _steps(value: float | None) -> str:
    return "never" if value is None else f"{value:,.0f} steps"


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


# --------------------------------------------------------------------------------------------
# Small statistics
# --------------------------------------------------------------------------------------------


def t_interval(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and its 95% t-interval (bnexp.analysis.intervals, shared with the figures); a single value
    gives an infinitely wide interval."""
    return intervals.t_interval(np.asarray(values, dtype=float).ravel())


def _per_run_layers(tables: Tables, runs: pd.DataFrame) -> pd.DataFrame:
    rows = tables.layers[tables.layers["run_id"].isin(runs["run_id"])]
    if rows.empty:
        raise Missing(f"no layers.csv rows for runs {', '.join(runs['run_id'])}")
    return rows


def _layer_index(layers: pd.DataFrame, layer: Any) -> int:
    present = sorted(int(v) for v in layers["layer"].dropna().unique())
    if not present:
        raise Missing("no hidden-layer rows")
    if layer in ("last", "top"):
        return present[-1]
    if layer in ("first", "bottom"):
        return present[0]
    return int(layer)


# --------------------------------------------------------------------------------------------
# Measures
# --------------------------------------------------------------------------------------------


def steps_to_reach_ratio(
    tables: Tables, fast: dict, slow: dict, last_evals: int = 3, accuracy: str = "test"
) -> Measurement:
    """How many times fewer steps `fast` needs than `slow` to reach `slow`'s final accuracy.

    The target is the slow variant's final test accuracy (seed mean of its last `last_evals`
    evaluations): the BN paper's own yardstick (BN-x5 reached Inception's final 72.2% in 14x
    fewer steps). Steps are read on seed-mean curves. A fast variant that diverges or never
    reaches the target scores 0. `accuracy`: test (default) or train (ACCURACY_COLUMNS).
    """
    column = accuracy_column(accuracy)
    slow_runs = variant_runs(tables, slow)
    target = float(
        np.mean([final_accuracy(tables, r, last_evals, column) for r in slow_runs["run_id"]])
    )
    slow_curve = mean_curve(tables, slow_runs, column)
    if target <= slow_curve.iloc[0] + 1e-12:
        raise Missing(
            f"{describe(slow)} did not learn: its final accuracy {_pct(target)} is no better than at step "
            f"{slow_curve.index[0]:,.0f} ({_pct(slow_curve.iloc[0])}), so there is no target to reach"
        )
    slow_steps = first_step_reaching(slow_curve, target)
    fast_runs = variant_runs(tables, fast, allow_diverged=True)
    detail = {"variant": [describe(slow), describe(fast)], "target_acc": [target, target]}
    diverged = _diverged(fast_runs)
    if not diverged.empty:
        text = f"{describe(fast)} diverged in {len(diverged)} of {len(fast_runs)} runs; target {_pct(target)} never reached"
        detail["steps_to_target"] = [slow_steps, None]
        return Measurement(0.0, text, detail=pd.DataFrame(detail))
    fast_steps = first_step_reaching(mean_curve(tables, fast_runs, column), target)
    detail["steps_to_target"] = [slow_steps, fast_steps]
    if fast_steps is None:
        text = f"target {_pct(target)} ({describe(slow)} final): {describe(slow)} {_steps(slow_steps)}, {describe(fast)} never"
        return Measurement(0.0, text, detail=pd.DataFrame(detail))
    ratio = math.inf if fast_steps == 0 else slow_steps / fast_steps
    if fast_steps == 0:
        speedup = "already at step 0"
    elif ratio >= 1:
        speedup = f"{ratio:.1f}x fewer"
    else:
        speedup = f"{1 / ratio:.1f}x more (ratio {ratio:.2f})"
    text = (
        f"target {_pct(target)} ({describe(slow)} final): {describe(fast)} {_steps(fast_steps)}, "
        f"{describe(slow)} {_steps(slow_steps)}: {speedup}"
    )
    return Measurement(ratio, text, detail=pd.DataFrame(detail))


def final_accuracy_difference(
    tables: Tables,
    a: dict,
    b: dict,
    last_evals: int = 3,
    pair_by: str = "seed",
    accuracy: str = "test",
) -> Measurement:
    """Final accuracy (`accuracy`: test or train) of `a` minus `b`, in percentage points,
    paired by seed: mean and 95% t-interval over the pairs."""
    column = accuracy_column(accuracy)
    runs_a, runs_b = variant_runs(tables, a), variant_runs(tables, b)
    final_a = {
        row[pair_by]: final_accuracy(tables, row["run_id"], last_evals, column)
        for _, row in runs_a.iterrows()
    }
    final_b = {
        row[pair_by]: final_accuracy(tables, row["run_id"], last_evals, column)
        for _, row in runs_b.iterrows()
    }
    pairs = sorted(set(final_a) & set(final_b), key=str)
    if not pairs:
        raise Missing(f"no {pair_by} has runs of both {describe(a)} and {describe(b)}")
    diffs = np.array([100 * (final_a[k] - final_b[k]) for k in pairs])
    mean, low, high = t_interval(diffs)
    detail = pd.DataFrame(
        {
            pair_by: pairs,
            "acc_a": [final_a[k] for k in pairs],
            "acc_b": [final_b[k] for k in pairs],
            "diff_points": diffs,
        }
    )
    mean_a = float(np.mean([final_a[k] for k in pairs]))
    mean_b = float(np.mean([final_b[k] for k in pairs]))
    interval_text = f", 95% interval [{low:+.2f}, {high:+.2f}]" if len(pairs) > 1 else ""
    text = (
        f"{accuracy} accuracy {describe(a)} {_pct(mean_a)} vs {describe(b)} {_pct(mean_b)}: "
        f"{mean:+.2f} points{interval_text} (n={len(pairs)})"
    )
    return Measurement(mean, text, interval=(low, high), detail=detail)


def final_accuracy_mean(
    tables: Tables, where: dict, last_evals: int = 3, accuracy: str = "test"
) -> Measurement:
    """One variant's final accuracy (`accuracy`: test or train) in percent: the seed mean of
    each run's last `last_evals` values, with its 95% t-interval over seeds."""
    column = accuracy_column(accuracy)
    runs = variant_runs(tables, where)
    finals = np.array([100 * final_accuracy(tables, r, last_evals, column) for r in runs["run_id"]])
    mean, low, high = t_interval(finals)
    interval_text = f", 95% interval [{low:.1f}, {high:.1f}]" if len(finals) > 1 else ""
    text = f"final {accuracy} accuracy of {describe(where)}: {mean:.1f}%{interval_text} (n={len(finals)})"
    detail = pd.DataFrame({"run_id": list(runs["run_id"]), f"final_{column}_pct": finals})
    return Measurement(float(mean), text, interval=(low, high), detail=detail)


def curve_above_fraction(tables: Tables, upper: dict, lower: dict) -> Measurement:
    """Fraction of evaluations (after step 0) at which `upper`'s seed-mean test accuracy is at
    least `lower`'s."""
    up = mean_curve(tables, variant_runs(tables, upper))
    low = mean_curve(tables, variant_runs(tables, lower))
    both = pd.concat([up.rename("upper"), low.rename("lower")], axis=1, join="inner")
    both = both[both.index > 0]
    if both.empty:
        raise Missing("no common evaluation steps after step 0")
    above = both["upper"] >= both["lower"]
    value = float(above.mean())
    text = f"{describe(upper)} >= {describe(lower)} at {above.sum()} of {len(both)} evaluations ({value:.0%})"
    return Measurement(value, text, detail=both.reset_index())


DRIFT_STATISTICS = {
    "range": "range over training",
    "step_change": "mean change between successive logged steps",
}


def _unit_drift(rows: pd.DataFrame, quantity: str, statistic: str = "range") -> float:
    """`range`: max - min over training; `step_change`: mean |difference| between successive
    logged rows (rows sorted by step)."""
    if quantity == "median":
        series = rows["unit_p50"]
    elif quantity == "spread":
        series = rows["unit_p85"] - rows["unit_p15"]
    else:
        raise ValueError(f"unknown drift quantity {quantity!r}: median or spread")
    series = series.dropna()
    if len(series) < 2:
        raise Missing("fewer than two logged probe percentiles")
    if statistic == "range":
        return float(series.max() - series.min())
    if statistic == "step_change":
        return float(series.diff().abs().mean())
    raise ValueError(f"unknown drift statistic {statistic!r}: one of {', '.join(DRIFT_STATISTICS)}")


def drift_ratio(
    tables: Tables,
    high: dict,
    low: dict,
    quantity: str = "median",
    layer: Any = "last",
    statistic: str = "range",
) -> Measurement:
    """How much more the tracked unit's distribution moves in `high` than in `low`.

    Drift of a run, of the tracked unit's median (`median`) or 15-85th percentile spread
    (`spread`) on the probe batch at hidden layer `layer`, in the sigmoid-input units both
    variants share: `range` = max - min over training; `step_change` = the mean absolute
    change between successive logged rows (Santurkar et al.'s Figure 8 measures it between
    successive steps). Seed mean; value = drift(high) / drift(low).
    """
    if statistic not in DRIFT_STATISTICS:
        raise ValueError(
            f"unknown drift statistic {statistic!r}: one of {', '.join(DRIFT_STATISTICS)}"
        )
    drifts = {}
    for name, where in (("high", high), ("low", low)):
        runs = variant_runs(tables, where)
        rows = _per_run_layers(tables, runs)
        index = _layer_index(rows, layer)
        rows = rows[rows["layer"] == index]
        drifts[name] = float(
            np.mean(
                [
                    _unit_drift(g.sort_values("step"), quantity, statistic)
                    for _, g in rows.groupby("run_id")
                ]
            )
        )
    if drifts["low"] <= 0:
        raise Missing(f"{describe(low)} shows no drift at all (0): ratio undefined")
    ratio = drifts["high"] / drifts["low"]
    text = (
        f"{DRIFT_STATISTICS[statistic]} of the unit's {quantity}: {describe(high)} {drifts['high']:.3g}, "
        f"{describe(low)} {drifts['low']:.3g}: {ratio:.1f}x"
    )
    detail = pd.DataFrame(
        {
            "variant": [describe(high), describe(low)],
            f"{quantity}_drift": [drifts["high"], drifts["low"]],
        }
    )
    return Measurement(ratio, text, detail=detail)


def gradient_profile(
    tables: Tables, where: dict, early_steps: int, column: str = "grad_w_mean_abs"
) -> pd.Series:
    """Per hidden layer: `column` averaged over the logged steps <= early_steps of each run,
    then over runs (seeds)."""
    runs = variant_runs(tables, where)
    rows = _per_run_layers(tables, runs)
    rows = rows[rows["step"] <= early_steps]
    if rows.empty:
        raise Missing(f"no logged steps <= {early_steps}")
    per_run = rows.groupby(["run_id", "layer"])[column].mean()
    return per_run.groupby("layer").mean().sort_index()


def gradient_ratio(
    tables: Tables,
    where: dict,
    early_steps: int = 100,
    mode: str = "top_over_bottom",
    column: str = "grad_w_mean_abs",
) -> Measurement:
    """Spread of the early-training gradient magnitude across layers.

    `top_over_bottom`: last hidden layer / first; `max_over_min`: largest / smallest layer.
    """
    profile = gradient_profile(tables, where, early_steps, column).dropna()
    if len(profile) < 2:
        raise Missing("fewer than two layers with gradients")
    if (profile <= 0).any():
        raise Missing("a layer's mean |gradient| is exactly 0: ratio undefined")
    if mode == "top_over_bottom":
        value = float(profile.iloc[-1] / profile.iloc[0])
        text = (
            f"{describe(where)}: layer {profile.index[-1]} {profile.iloc[-1]:.2g}, "
            f"layer {profile.index[0]} {profile.iloc[0]:.2g}: ratio {value:.3g}"
        )
    elif mode == "max_over_min":
        value = float(profile.max() / profile.min())
        text = f"{describe(where)}: {profile.min():.2g} to {profile.max():.2g} across layers: ratio {value:.3g}"
    else:
        raise ValueError(f"unknown mode {mode!r}: top_over_bottom or max_over_min")
    detail = profile.rename(column).reset_index()
    return Measurement(value, text, detail=detail)


def _final_layer_values(tables: Tables, where: dict, column: str) -> pd.Series:
    """Per hidden layer: `column` at each run's last logged step, seed mean."""
    runs = variant_runs(tables, where)
    rows = _per_run_layers(tables, runs)
    last = rows[rows["step"] == rows.groupby("run_id")["step"].transform("max")]
    values = last.groupby("layer")[column].mean().dropna()
    if values.empty:
        raise Missing(f"no {column} values for {describe(where)}")
    return values


def final_layer_max(tables: Tables, where: dict, column: str = "act_sat_frac") -> Measurement:
    """The largest per-layer value of `column` at the end of training (seed mean)."""
    values = _final_layer_values(tables, where, column)
    value = float(values.max())
    text = f"{describe(where)}: {column} at the end, largest layer (layer {values.idxmax()}): {value:.4g}"
    return Measurement(value, text, detail=values.reset_index())


def final_layer_max_ratio(
    tables: Tables, a: dict, b: dict, column: str = "act_sat_frac"
) -> Measurement:
    """Largest per-layer `column` at the end of training in `a`, divided by the same in `b`."""
    va, vb = _final_layer_values(tables, a, column), _final_layer_values(tables, b, column)
    if vb.max() <= 0:
        value = math.inf if va.max() > 0 else math.nan
        if math.isnan(value):
            raise Missing(f"{column} is 0 in both variants: ratio undefined")
    else:
        value = float(va.max() / vb.max())
    text = f"largest-layer {column}: {describe(a)} {va.max():.4g}, {describe(b)} {vb.max():.4g}: {value:.3g}x"
    detail = pd.DataFrame({"layer": va.index, describe(a): va.values}).merge(
        pd.DataFrame({"layer": vb.index, describe(b): vb.values}), on="layer", how="outer"
    )
    return Measurement(value, text, detail=detail)


def fails_to_reach(
    tables: Tables, variants: list[dict], reference: dict, last_evals: int = 3
) -> Measurement:
    """How many of `variants` fail: diverge (in any seed) or never reach, on their seed-mean
    curve, the reference variant's final accuracy."""
    ref_runs = variant_runs(tables, reference)
    target = float(np.mean([final_accuracy(tables, r, last_evals) for r in ref_runs["run_id"]]))
    rows, failed = [], 0
    for where in variants:
        runs = variant_runs(tables, where, allow_diverged=True)
        diverged = _diverged(runs)
        if not diverged.empty:
            outcome = f"diverged in {len(diverged)} of {len(runs)} runs"
            steps = None
        else:
            steps = first_step_reaching(mean_curve(tables, runs), target)
            outcome = (
                "never reached the target" if steps is None else f"reached it at step {steps:,.0f}"
            )
        fails = steps is None
        failed += fails
        rows.append({"variant": describe(where), "outcome": outcome, "fails": fails})
    text = f"target {_pct(target)} ({describe(reference)} final); " + "; ".join(
        f"{r['variant']}: {r['outcome']}" for r in rows
    )
    return Measurement(
        float(failed), f"{failed} of {len(variants)} fail: {text}", detail=pd.DataFrame(rows)
    )


def error_ratio(tables: Tables, a: dict, b: dict, last_evals: int = 3) -> Measurement:
    """Test error of `a` divided by the test error of `b` (final accuracy, seed means)."""
    errors = {}
    for name, where in (("a", a), ("b", b)):
        runs = variant_runs(tables, where)
        errors[name] = 1 - float(
            np.mean([final_accuracy(tables, r, last_evals) for r in runs["run_id"]])
        )
    if errors["b"] <= 0:
        raise Missing(f"{describe(b)} has zero test error: ratio undefined")
    value = errors["a"] / errors["b"]
    text = f"test error {describe(a)} {_pct(errors['a'])}, {describe(b)} {_pct(errors['b'])}: {value:.2f}x"
    detail = pd.DataFrame(
        {"variant": [describe(a), describe(b)], "test_error": [errors["a"], errors["b"]]}
    )
    return Measurement(value, text, detail=detail)


def _extra(tables: Tables, name: str) -> pd.DataFrame:
    table = tables.extra.get(name)
    if table is None or table.empty:
        raise Missing(f"no {name!r} table (the in-process measurement did not run)")
    return table


def eval_accuracy_gap(
    tables: Tables, eval_batch_size: Any = "max", table: str = "eval_batch_size"
) -> Measurement:
    """Running-statistics accuracy minus batch-statistics accuracy at one eval batch size, in
    points: per seed (the two modes evaluate the same trained network), then the seed mean and
    its 95% t-interval. `eval_batch_size: max` takes the largest size measured."""
    rows = _extra(tables, table)
    size = rows["eval_batch_size"].max() if eval_batch_size == "max" else eval_batch_size
    at = rows[rows["eval_batch_size"] == size]
    if at.empty:
        raise Missing(f"eval batch size {size} was not measured")
    by_seed = at.pivot_table(index="seed", columns="mode", values="accuracy", aggfunc="mean")
    if not {"running", "batch"} <= set(by_seed.columns):
        raise Missing(f"eval batch size {size}: need both running and batch statistics")
    by_seed = by_seed.dropna(subset=["running", "batch"])
    if by_seed.empty:
        raise Missing(f"eval batch size {size}: no seed has both running and batch statistics")
    gaps = 100 * (by_seed["running"] - by_seed["batch"]).to_numpy()
    gap, low, high = t_interval(gaps)
    n = len(gaps)
    interval_text = f", 95% interval [{low:+.2f}, {high:+.2f}]" if n > 1 else ""
    text = (
        f"eval batch {size}: running statistics {_pct(by_seed['running'].mean())}, "
        f"batch statistics {_pct(by_seed['batch'].mean())}: {gap:+.2f} points{interval_text} (n={n})"
    )
    return Measurement(float(gap), text, interval=(low, high), detail=at.reset_index(drop=True))


def eval_accuracy_range(
    tables: Tables, mode: str = "running", table: str = "eval_batch_size"
) -> Measurement:
    """max - min test accuracy (points) over eval batch sizes, with `mode` statistics, seed mean."""
    rows = _extra(tables, table)
    rows = rows[rows["mode"] == mode]
    by_size = rows.groupby("eval_batch_size")["accuracy"].mean()
    if len(by_size) < 2:
        raise Missing(f"fewer than two eval batch sizes with {mode} statistics")
    value = 100 * float(by_size.max() - by_size.min())
    text = (
        f"{mode} statistics over eval batch sizes {by_size.index.min()}...{by_size.index.max()}: "
        f"{_pct(by_size.min())} to {_pct(by_size.max())} ({value:.2f} points)"
    )
    return Measurement(value, text, detail=by_size.reset_index())


LAYER_TEXT = {
    "formula": "bnexp's BN formula",
    "torch": "torch's BatchNorm1d",
}


def max_relative_error(
    tables: Tables,
    check: str | list[str],
    eps: float = 0.0,
    layer: str = "formula",
    a_min: float | None = None,
    a_max: float | None = None,
    breaks_above: float | None = None,
    table: str = "scale_invariance",
) -> Measurement:
    """The largest relative error of the scale-invariance `check` (or of several) over the
    scale factors a in [a_min, a_max], on the BN `layer` (`formula`: bnexp's own three lines,
    which allow eps = 0; `torch`: torch's BatchNorm1d) with eps `eps`.

    With `breaks_above`, the text also says where the invariance breaks: the largest a (over
    the whole grid) whose error exceeds it, and a·σ_min there in units of sqrt(eps), σ_min
    being the smallest per-unit std of Wu over the batch (the eps term matters once
    a·σ is no longer large against sqrt(eps)).
    """
    rows = _extra(tables, table)
    if "layer" not in rows.columns:  # tables written before torch's own layer was measured
        rows = rows.assign(layer="formula")
    checks = [check] if isinstance(check, str) else list(check)
    rows = rows[
        rows["check"].isin(checks)
        & (rows["layer"] == layer)
        & np.isclose(rows["eps"], eps, rtol=0, atol=1e-15)
    ]
    if rows.empty:
        raise Missing(f"no {', '.join(checks)} rows for {layer} at eps={eps:g}")
    grid = rows
    in_range = rows
    if a_min is not None:
        in_range = in_range[in_range["a"] >= a_min * (1 - 1e-12)]
    if a_max is not None:
        in_range = in_range[in_range["a"] <= a_max * (1 + 1e-12)]
    if in_range.empty:
        raise Missing(f"no scale factor a in [{a_min}, {a_max}]")
    worst = in_range.loc[in_range["rel_error"].idxmax()]
    value = float(worst["rel_error"])
    scales = sorted(in_range["a"].unique())
    where = LAYER_TEXT.get(layer, layer)
    text = (
        f"{' + '.join(checks)} on {where}, eps={eps:g}: largest relative error {value:.2g} "
        f"({worst['check']} at a={worst['a']:.3g}; {len(scales)} scale factors {scales[0]:.3g}...{scales[-1]:.3g})"
    )
    if breaks_above is not None:
        text += "; " + _breakdown_text(grid, breaks_above, eps)
    detail = grid.pivot_table(index="a", columns="check", values="rel_error").reset_index()
    if "a_sigma_min" in grid.columns and eps > 0:
        scaled = grid.groupby("a")["a_sigma_min"].first() / math.sqrt(eps)
        detail.insert(1, "a·σ_min/√eps", detail["a"].map(scaled))
    detail.columns.name = None
    return Measurement(value, text, detail=detail)


def _breakdown_text(grid: pd.DataFrame, threshold: float, eps: float) -> str:
    """Where the relative error first exceeds `threshold`, coming down from large a."""
    worst_by_a = grid.groupby("a")["rel_error"].max().sort_index()
    above = worst_by_a[worst_by_a > threshold]
    if above.empty:
        return f"error <= {threshold:g} at every a from {worst_by_a.index.min():g} to {worst_by_a.index.max():g}"
    breaks_at = float(above.index.max())
    below = worst_by_a[worst_by_a.index <= breaks_at]
    if (below > threshold).all():
        text = f"error > {threshold:g} for every a <= {breaks_at:.3g}"
    else:
        text = f"error > {threshold:g} at {len(above)} of {len(worst_by_a)} scale factors, the largest a={breaks_at:.3g}"
    if "a_sigma_min" in grid.columns and eps > 0:
        sigma = float(grid.loc[grid["a"] == breaks_at, "a_sigma_min"].iloc[0])
        text += f" (there a·σ_min = {sigma / math.sqrt(eps):.2g}·sqrt(eps))"
    return text


def table_value(
    tables: Tables,
    table: str,
    column: str,
    where: dict | None = None,
    statistic: str = "max",
) -> Measurement:
    """The largest (`statistic: max`), smallest (`min`) or mean (`mean`) value of `column` over
    the rows of the in-process table `table` that match `where` (NaN cells left out); the text
    names the row where the max or min lies (its other key columns)."""
    if statistic not in ("max", "min", "mean"):
        raise ValueError(f"statistic={statistic!r} is not known: one of max, min, mean")
    rows = select(_extra(tables, table), where or {})
    rows = rows.dropna(subset=[column]) if column in rows.columns else rows.iloc[0:0]
    if rows.empty:
        raise Missing(f"no {column} values in table {table!r} with {describe(where or {})}")
    values = rows[column].astype(float)
    if statistic == "mean":
        value, at = float(values.mean()), ""
    else:
        index = values.idxmax() if statistic == "max" else values.idxmin()
        value = float(values[index])
        # The row's identifying columns (names, sizes, flags), not its other measured floats.
        keys = [c for c in rows.columns if c != column and not pd.api.types.is_float_dtype(rows[c])]
        at = " at " + " ".join(f"{k}={rows.loc[index, k]}" for k in keys) if keys else ""
    text = (
        f"{statistic} of {column} over {len(rows)} rows ({describe(where or {})}): {value:.3g}{at}"
    )
    return Measurement(value, text, detail=rows.reset_index(drop=True))


def _mode_gaps(rows: pd.DataFrame, where: Mapping[str, Any]) -> pd.Series:
    """Per seed: batch-statistics minus running-statistics accuracy, in points."""
    at = select(rows, where)
    if at.empty:
        raise Missing(f"no rows with {describe(where)}")
    by_seed = at.pivot_table(index="seed", columns="mode", values="accuracy", aggfunc="mean")
    if not {"running", "batch"} <= set(by_seed.columns):
        raise Missing(f"{describe(where)}: need both running and batch statistics")
    by_seed = by_seed.dropna(subset=["running", "batch"])
    if by_seed.empty:
        raise Missing(f"{describe(where)}: no seed has both running and batch statistics")
    return 100 * (by_seed["batch"] - by_seed["running"])


def mode_accuracy_gap(
    tables: Tables, where: dict, than: dict | None = None, table: str = "momentum_lag"
) -> Measurement:
    """Batch-statistics accuracy minus eval-mode (running-statistics) accuracy of the same
    trained network, in points, for the rows of `table` matching `where` (e.g. one momentum at
    one step): per seed, then the seed mean and its 95% t-interval. With `than`, the gap of
    `where` minus the gap of `than`, paired by seed."""
    rows = _extra(tables, table)
    gaps = _mode_gaps(rows, where)
    label = describe(where)
    if than is not None:
        other = _mode_gaps(rows, than)
        seeds = sorted(set(gaps.index) & set(other.index))
        if not seeds:
            raise Missing(f"no seed has rows of both {describe(where)} and {describe(than)}")
        gaps = gaps.loc[seeds] - other.loc[seeds]
        label = f"gap({describe(where)}) - gap({describe(than)})"
    values = gaps.to_numpy(dtype=float)
    mean, low, high = t_interval(values)
    interval_text = f", 95% interval [{low:+.2f}, {high:+.2f}]" if len(values) > 1 else ""
    if than is None:
        at = select(rows, where)
        means = at.groupby("mode")["accuracy"].mean()
        text = (
            f"{label}: batch statistics {_pct(means.get('batch', math.nan))}, running statistics "
            f"{_pct(means.get('running', math.nan))}: {mean:+.2f} points{interval_text} (n={len(values)})"
        )
    else:
        text = f"{label}: {mean:+.2f} points{interval_text} (n={len(values)})"
    detail = pd.DataFrame({"seed": gaps.index, "gap_points": values})
    return Measurement(float(mean), text, interval=(low, high), detail=detail)


def _layer_rows_at(tables: Tables, where: dict, step: int, first_layer: int) -> pd.DataFrame:
    """layers.csv rows of `where`'s runs at `step`, hidden layers >= first_layer, with the run's
    config columns. A run that diverged later still has its rows up to then: they count."""
    runs = variant_runs(tables, where, allow_diverged=True)
    rows = _per_run_layers(tables, runs)
    rows = rows[(rows["step"] == step) & (rows["layer"] >= first_layer)]
    if rows.empty:
        raise Missing(f"no layers.csv rows at step {step} for {describe(where)}")
    keys = [c for c in runs.columns if c not in rows.columns or c == "run_id"]
    return rows.merge(runs[keys], on="run_id")


def _positive(values: pd.Series, what: str) -> np.ndarray:
    array = values.to_numpy(dtype=float)
    if not np.all(np.isfinite(array)) or np.any(array <= 0):
        raise Missing(f"{what}: a value is 0, negative or not finite, so its log is undefined")
    return array


def layer_factor(
    tables: Tables,
    where: dict,
    column: str,
    step: int = 0,
    toward: str = "output",
    first_layer: int = 1,
    expected_key: str = "init_gain",
    group_by: tuple[str, ...] = ("init_gain", "depth"),
) -> Measurement:
    """The per-layer factor of `column` across hidden layers (first_layer .. last) at `step`:
    exp(least-squares slope of log(column) against the layer index), i.e. how much the column
    grows per layer towards the output (`toward: output`) or towards the input (`toward:
    input`, the inverse). Per run, then the geometric mean over the runs (seeds) of each group
    (`group_by`); value = the largest |factor / expected - 1| over the groups, the expected
    factor being the group's config value `expected_key` (e.g. the orthogonal gain g)."""
    if toward not in ("output", "input"):
        raise ValueError(f"toward={toward!r} is not known: output or input")
    rows = _layer_rows_at(tables, where, step, first_layer)
    per_run = []
    for run_id, run in rows.groupby("run_id"):
        run = run.sort_values("layer")
        if len(run) < 2:
            raise Missing(f"run {run_id}: fewer than two hidden layers >= {first_layer}")
        slope = log_slope(run["layer"], _positive(run[column], column))
        per_run.append(
            {
                **{k: run[k].iloc[0] for k in group_by},
                "log_factor": slope if toward == "output" else -slope,
            }
        )
    frame = pd.DataFrame(per_run)
    detail = frame.groupby(list(group_by), as_index=False)["log_factor"].mean()
    detail["factor"] = np.exp(detail["log_factor"])
    detail["expected"] = detail[expected_key].astype(float)
    detail["deviation"] = detail["factor"] / detail["expected"] - 1
    detail = detail.drop(columns="log_factor")
    worst = detail.loc[detail["deviation"].abs().idxmax()]
    value = float(abs(worst["deviation"]))
    parts = "; ".join(
        " ".join(f"{k}={row[k]:g}" for k in group_by) + f": {row['factor']:.4g}"
        for _, row in detail.iterrows()
    )
    text = (
        f"{column} per layer towards the {toward} at step {step} ({describe(where)}): {parts}; "
        f"largest deviation from {expected_key} {100 * value:.2f}%"
    )
    return Measurement(value, text, detail=detail)


def depth_factor(
    tables: Tables,
    where: dict,
    column: str = "grad_w_norm",
    step: int = 0,
    first_layer: int = 2,
    expected_key: str = "init_gain",
) -> Measurement:
    """How `column` (the hidden layers' weight-gradient norm) grows per added layer of depth:
    per run, the geometric mean of `column` over hidden layers first_layer .. depth at `step`;
    per value of `expected_key` (the gain g), exp(least-squares slope of its log against
    `depth`, over every run and seed); value = the largest |factor / g - 1| over the gains."""
    rows = _layer_rows_at(tables, where, step, first_layer)
    per_run = (
        rows.assign(log_value=np.log(_positive(rows[column], column)))
        .groupby("run_id")
        .agg(
            log_value=("log_value", "mean"),
            depth=("depth", "first"),
            expected=(expected_key, "first"),
        )
    )
    out = []
    for expected, group in per_run.groupby("expected"):
        if group["depth"].nunique() < 2:
            raise Missing(f"{expected_key}={expected:g}: runs of fewer than two depths")
        slope = np.polyfit(group["depth"].to_numpy(float), group["log_value"].to_numpy(float), 1)[0]
        out.append(
            {
                expected_key: float(expected),
                "factor": float(np.exp(slope)),
                "depths": sorted(group["depth"].unique()),
            }
        )
    detail = pd.DataFrame(out)
    detail["deviation"] = detail["factor"] / detail[expected_key] - 1
    value = float(detail["deviation"].abs().max())
    parts = "; ".join(
        f"{expected_key}={r[expected_key]:g}: {r['factor']:.4g}" for _, r in detail.iterrows()
    )
    text = (
        f"{column} (hidden layers >= {first_layer}, step {step}) per added layer of depth "
        f"({describe(where)}, depths {', '.join(str(int(d)) for d in detail['depths'].iloc[0])}): {parts}; "
        f"largest deviation from {expected_key} {100 * value:.2f}%"
    )
    return Measurement(value, text, detail=detail.drop(columns="depths"))


def layer_profile_range(
    tables: Tables, where: dict, column: str, step: int = 0, first_layer: int = 1
) -> Measurement:
    """max / min of `column` across hidden layers first_layer .. last at `step`, per run; value =
    the largest over the runs (the least flat profile)."""
    rows = _layer_rows_at(tables, where, step, first_layer)
    per_run = []
    for run_id, run in rows.groupby("run_id"):
        values = _positive(run[column], column)
        config = {k: run[k].iloc[0] for k in ("init_gain", "depth", "seed") if k in run}
        per_run.append(
            {"run_id": run_id, **config, "max_over_min": float(values.max() / values.min())}
        )
    detail = pd.DataFrame(per_run)
    worst = detail.loc[detail["max_over_min"].idxmax()]
    value = float(worst["max_over_min"])
    where_worst = " ".join(
        f"{k}={worst[k]:g}" for k in ("init_gain", "depth", "seed") if k in detail
    )
    text = (
        f"{column} max/min over hidden layers >= {first_layer} at step {step} ({describe(where)}, "
        f"{len(detail)} runs): largest {value:.4g} ({where_worst}), smallest {detail['max_over_min'].min():.4g}"
    )
    return Measurement(value, text, detail=detail)


def _init_setting(row: pd.Series) -> str:
    """'default' or 'gaussian <std>': the init a run used (init_std is unused by default)."""
    if str(row.get("init")) == "gaussian":
        return f"gaussian {float(row['init_std']):g}"
    return str(row.get("init"))


def final_accuracy_range(
    tables: Tables, where: dict, diverged_accuracy: float = 0.1, last_evals: int = 3
) -> Measurement:
    """How much the final test accuracy of `where`'s runs depends on their initialisation:
    per init setting (init=default, or init=gaussian at each init_std), the seed mean of the
    final accuracy (mean of the last `last_evals` evaluations; a diverged run counts as
    `diverged_accuracy`, chance); value = max - min over the settings, in points."""
    runs = variant_runs(tables, where, allow_diverged=True)
    finals = []
    for _, run in runs.iterrows():
        if run["status"] == "diverged":
            accuracy = diverged_accuracy
        else:
            accuracy = final_accuracy(tables, run["run_id"], last_evals)
        finals.append(
            {
                "init_setting": _init_setting(run),
                "accuracy": accuracy,
                "diverged": run["status"] == "diverged",
            }
        )
    frame = pd.DataFrame(finals)
    detail = frame.groupby("init_setting", as_index=False).agg(
        accuracy=("accuracy", "mean"), runs=("accuracy", "size"), diverged=("diverged", "sum")
    )
    if len(detail) < 2:
        raise Missing(f"{describe(where)}: fewer than two init settings")
    best, worst = detail.loc[detail["accuracy"].idxmax()], detail.loc[detail["accuracy"].idxmin()]
    value = 100 * float(best["accuracy"] - worst["accuracy"])
    parts = ", ".join(
        f"{r['init_setting']}: {_pct(r['accuracy'])}"
        + (f" ({int(r['diverged'])} diverged)" if r["diverged"] else "")
        for _, r in detail.iterrows()
    )
    text = (
        f"final test accuracy of {describe(where)} by init: {parts}; range {value:.1f} points "
        f"({worst['init_setting']} lowest, {best['init_setting']} highest)"
    )
    return Measurement(value, text, detail=detail)


def _growth(
    tables: Tables, table: str, where: dict, column: str, first_layer: int, skip_top: int
) -> pd.DataFrame:

    rows = select(_extra(tables, table), where)
    if rows.empty:
        raise Missing(f"no rows in table {table!r} with {describe(where)}")
    try:
        out = growth_factors(rows, column, first_layer, skip_top)
    except ValueError as error:
        raise Missing(f"{describe(where)}: {error}") from None
    if out.empty:
        raise Missing(f"{describe(where)}: no hidden layers {first_layer} .. depth - {skip_top}")
    return out


def layer_growth(
    tables: Tables,
    where: dict,
    expected: str | float,
    column: str = "grad_w_norm",
    table: str = "step0_layers",
    first_layer: int = 2,
    skip_top: int = 2,
) -> Measurement:
    """How much `column` grows per layer towards the input at step 0 (the in-process table
    `table`): per (batch_size, depth), exp(-slope) of log(column) against the layer index over
    hidden layers first_layer .. depth - skip_top, geometric mean over seeds; value = the largest
    |factor / expected - 1| over the groups, `expected` a number or a rate of
    bnexp.reproduce.layer_growth.EXPECTED_RATES (a function of the batch size)."""

    detail = _growth(tables, table, where, column, first_layer, skip_top)
    detail["expected"] = [expected_rate(expected, b) for b in detail["batch_size"]]
    detail["deviation"] = detail["factor"] / detail["expected"] - 1
    worst = detail.loc[detail["deviation"].abs().idxmax()]
    value = float(abs(worst["deviation"]))
    parts = "; ".join(
        f"B={r['batch_size']:g} depth {r['depth']:g}: {r['factor']:.4f} (expected {r['expected']:.4f})"
        for _, r in detail.iterrows()
    )
    text = (
        f"{column} per layer towards the input at step 0 ({describe(where)}; layers "
        f"{first_layer}..depth-{skip_top}): {parts}; largest deviation {100 * value:.2f}% "
        f"(B={worst['batch_size']:g}, depth {worst['depth']:g})"
    )
    return Measurement(value, text, detail=detail)


def layer_growth_ratio(
    tables: Tables,
    a: dict,
    b: dict,
    column: str = "grad_w_norm",
    table: str = "step0_layers",
    first_layer: int = 2,
    skip_top: int = 2,
) -> Measurement:
    """Per-layer growth factor (as layer_growth) of `a` divided by that of `b`, per depth; value
    = the smallest ratio over the depths both have."""
    fa = _growth(tables, table, a, column, first_layer, skip_top).groupby("depth")["factor"].mean()
    fb = _growth(tables, table, b, column, first_layer, skip_top).groupby("depth")["factor"].mean()
    depths = sorted(set(fa.index) & set(fb.index))
    if not depths:
        raise Missing(f"no depth with both {describe(a)} and {describe(b)}")
    detail = pd.DataFrame(
        {"depth": depths, "factor_a": fa[depths].values, "factor_b": fb[depths].values}
    )
    detail["ratio"] = detail["factor_a"] / detail["factor_b"]
    value = float(detail["ratio"].min())
    parts = "; ".join(
        f"depth {r['depth']:g}: {r['factor_a']:.4f} / {r['factor_b']:.4f} = {r['ratio']:.4f}"
        for _, r in detail.iterrows()
    )
    text = (
        f"{column} per-layer factor towards the input, {describe(a)} / {describe(b)}: {parts}; "
        f"smallest {value:.4f}"
    )
    return Measurement(value, text, detail=detail)


# --------------------------------------------------------------------------------------------
# regularization (tables of the in-process train/test gap) and lenet (accuracy per epoch)
# --------------------------------------------------------------------------------------------


def paired_table_difference(
    tables: Tables,
    a: dict,
    b: dict,
    column: str,
    table: str,
    pair_by: str = "seed",
    unit: str = "points",
) -> Measurement:
    """`column` of the rows of extra table `table` that match `a`, minus the same of `b`, paired
    by `pair_by` (rows of one variant and pair are averaged): mean and 95% t-interval over the
    pairs."""
    rows = _extra(tables, table)
    per_variant = []
    for where in (a, b):
        at = select(rows, where)
        if at.empty:
            raise Missing(f"no {table!r} rows with {describe(where)}")
        per_variant.append(at.groupby(pair_by)[column].mean())
    pairs = sorted(set(per_variant[0].index) & set(per_variant[1].index), key=str)
    if not pairs:
        raise Missing(f"no {pair_by} has rows of both {describe(a)} and {describe(b)}")
    values_a = per_variant[0].loc[pairs].to_numpy(dtype=float)
    values_b = per_variant[1].loc[pairs].to_numpy(dtype=float)
    diffs = values_a - values_b
    mean, low, high = t_interval(diffs)
    interval_text = f", 95% interval [{low:+.2f}, {high:+.2f}]" if len(pairs) > 1 else ""
    text = (
        f"{column}: {describe(a)} {values_a.mean():.2f} vs {describe(b)} {values_b.mean():.2f}: "
        f"{mean:+.2f} {unit}{interval_text} (n={len(pairs)})"
    )
    detail = pd.DataFrame({pair_by: pairs, "a": values_a, "b": values_b, "difference": diffs})
    return Measurement(float(mean), text, interval=(low, high), detail=detail)


def epoch_accuracies(tables: Tables, where: dict, epoch_steps: int) -> pd.DataFrame:
    """Test accuracy (%) of `where`'s runs after each whole epoch of `epoch_steps` updates: one
    row per seed, one column per epoch 1, 2, ... that some run reached (NaN where a run has no
    evaluation there, e.g. after it diverged)."""
    runs = variant_runs(tables, where, allow_diverged=True)
    metrics = tables.metrics[tables.metrics["run_id"].isin(runs["run_id"])].dropna(
        subset=["test_acc"]
    )
    metrics = metrics[(metrics["step"] > 0) & (metrics["step"] % epoch_steps == 0)]
    seeds = dict(zip(runs["run_id"], runs["seed"], strict=True))
    table = metrics.assign(
        seed=metrics["run_id"].map(seeds), epoch=(metrics["step"] // epoch_steps).astype(int)
    ).pivot_table(index="seed", columns="epoch", values="test_acc", aggfunc="mean")
    table = table.reindex(sorted(seeds.values()))
    if table.empty or table.shape[1] == 0:
        raise Missing(f"runs with {describe(where)} have no evaluation after a whole epoch")
    return 100 * table


def epochs_to_reach(
    tables: Tables, reference: dict, other: dict, epoch_steps: int, at_epoch: int = 1
) -> Measurement:
    """Whole epochs (of `epoch_steps` updates) that `other` needs to reach `reference`'s test
    accuracy after `at_epoch` epochs, divided by `at_epoch` (the epochs `reference` needs, by
    definition): both seed means. Not reached in the N epochs run: the value is the lower
    bound (N + 1) / at_epoch, and the text says so."""
    target_table = epoch_accuracies(tables, reference, epoch_steps)
    if at_epoch not in target_table.columns:
        raise Missing(f"runs with {describe(reference)} have no evaluation after epoch {at_epoch}")
    target = float(target_table[at_epoch].mean())
    curve = epoch_accuracies(tables, other, epoch_steps).mean(axis=0, skipna=False)
    reached = [int(epoch) for epoch, acc in curve.items() if acc >= target]
    ran = int(curve.index.max())
    shown = ", ".join(f"{acc:.1f}" for acc in curve.to_numpy())
    detail = pd.DataFrame({"epoch": curve.index.astype(int), "accuracy_pct": curve.to_numpy()})
    if reached:
        value = reached[0] / at_epoch
        verdict = f"reaches it after epoch {reached[0]}: {value:g}x the epochs"
    else:
        value = (ran + 1) / at_epoch
        verdict = f"does not reach it in {ran} epochs: at least {value:g}x the epochs"
    text = (
        f"{describe(reference)} after epoch {at_epoch}: {target:.2f}% (seed mean); "
        f"{describe(other)} after epochs 1..{ran}: {shown}%; {verdict}"
    )
    return Measurement(value, text, detail=detail)


def epoch_accuracy_change(
    tables: Tables, where: dict, epoch_steps: int, start_epoch: int = 1, end_epoch: int = 3
) -> Measurement:
    """Test accuracy after `end_epoch` minus after `start_epoch`, in points, per seed: the seed
    mean and its 95% t-interval; the text lists the seed-mean accuracy after every epoch from
    start to end."""
    table = epoch_accuracies(tables, where, epoch_steps)
    for epoch in (start_epoch, end_epoch):
        if epoch not in table.columns:
            raise Missing(f"runs with {describe(where)} have no evaluation after epoch {epoch}")
    diffs = (table[end_epoch] - table[start_epoch]).dropna().to_numpy(dtype=float)
    if len(diffs) == 0:
        raise Missing(
            f"no run with {describe(where)} has both epochs {start_epoch} and {end_epoch}"
        )
    mean, low, high = t_interval(diffs)
    interval_text = f", 95% interval [{low:+.2f}, {high:+.2f}]" if len(diffs) > 1 else ""
    epochs = [e for e in table.columns if start_epoch <= e <= end_epoch]
    shown = ", ".join(f"{table[e].mean():.2f}" for e in epochs)
    text = (
        f"{describe(where)} test accuracy after epochs {start_epoch}..{end_epoch}: {shown}% "
        f"(seed means); epoch {end_epoch} - epoch {start_epoch}: {mean:+.2f} points"
        f"{interval_text} (n={len(diffs)})"
    )
    detail = table[epochs].reset_index()
    return Measurement(float(mean), text, interval=(low, high), detail=detail)


def epoch_accuracy_difference(
    tables: Tables, a: dict, b: dict, epoch_steps: int, epoch: int = 1
) -> Measurement:
    """Test accuracy of `a` minus `b` after `epoch` epochs, in points, paired by seed: mean and
    95% t-interval."""
    table_a = epoch_accuracies(tables, a, epoch_steps)
    table_b = epoch_accuracies(tables, b, epoch_steps)
    for where, table in ((a, table_a), (b, table_b)):
        if epoch not in table.columns:
            raise Missing(f"runs with {describe(where)} have no evaluation after epoch {epoch}")
    pairs = table_a[epoch].dropna().index.intersection(table_b[epoch].dropna().index)
    if len(pairs) == 0:
        raise Missing(f"no seed has epoch {epoch} of both {describe(a)} and {describe(b)}")
    acc_a, acc_b = table_a.loc[pairs, epoch], table_b.loc[pairs, epoch]
    diffs = (acc_a - acc_b).to_numpy(dtype=float)
    mean, low, high = t_interval(diffs)
    interval_text = f", 95% interval [{low:+.2f}, {high:+.2f}]" if len(diffs) > 1 else ""
    text = (
        f"after epoch {epoch}: {describe(a)} {acc_a.mean():.2f}% vs {describe(b)} "
        f"{acc_b.mean():.2f}%: {mean:+.2f} points{interval_text} (n={len(diffs)})"
    )
    detail = pd.DataFrame(
        {"seed": list(pairs), "acc_a_pct": acc_a.to_numpy(), "acc_b_pct": acc_b.to_numpy()}
    )
    return Measurement(float(mean), text, interval=(low, high), detail=detail)


MEASURES: dict[str, Callable[..., Measurement]] = {
    fn.__name__: fn
    for fn in (
        steps_to_reach_ratio,
        final_accuracy_difference,
        final_accuracy_mean,
        curve_above_fraction,
        drift_ratio,
        gradient_ratio,
        final_layer_max,
        final_layer_max_ratio,
        fails_to_reach,
        error_ratio,
        eval_accuracy_gap,
        eval_accuracy_range,
        max_relative_error,
        table_value,
        mode_accuracy_gap,
        layer_factor,
        depth_factor,
        layer_profile_range,
        final_accuracy_range,
        paired_table_difference,
        epochs_to_reach,
        epoch_accuracy_change,
        epoch_accuracy_difference,
        layer_growth,
        layer_growth_ratio,
    )
}


# --------------------------------------------------------------------------------------------
# Criteria and verdicts
# --------------------------------------------------------------------------------------------

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": lambda v, t: v >= t,
    ">": lambda v, t: v > t,
    "<=": lambda v, t: v <= t,
    "<": lambda v, t: v < t,
    "==": lambda v, t: math.isclose(v, t, rel_tol=1e-9, abs_tol=1e-12),
}
_SYMBOLS = {">=": "≥", "<=": "≤", "==": "=", ">": ">", "<": "<"}


def check_criterion(criterion: Mapping[str, Any]) -> None:
    """Raises ValueError for a malformed criterion (caught when the findings are loaded)."""
    op = criterion.get("op")
    if op == "within":
        if "low" not in criterion or "high" not in criterion:
            raise ValueError("criterion op 'within' needs 'low' and 'high'")
        if float(criterion["low"]) > float(criterion["high"]):
            raise ValueError(
                f"criterion 'within': low {criterion['low']} > high {criterion['high']}"
            )
        if criterion.get("use_interval", True) is not True:
            raise ValueError(
                f"use_interval: {criterion['use_interval']} is not allowed: every 'within' criterion "
                "judges the whole 95% interval (drop the key)"
            )
    elif op in _OPS:
        if "value" not in criterion:
            raise ValueError(f"criterion op {op!r} needs 'value'")
    else:
        raise ValueError(f"unknown criterion op {op!r}: one of {', '.join([*_OPS, 'within'])}")


def check_claim(spec: Mapping[str, Any]) -> None:
    """Raises ValueError for a malformed claim entry: its kind, its retirement, its criterion."""
    kind = spec.get("kind", CLAIM)
    if kind not in KINDS:
        raise ValueError(f"kind: {kind!r} is not known; choose one of {', '.join(KINDS)}")
    retired = spec.get("retired")
    if retired is not None and not (isinstance(retired, str) and retired.strip()):
        raise ValueError("retired: must be the reason the claim was replaced (a sentence)")
    check_criterion(spec["criterion"])


def criterion_text(criterion: Mapping[str, Any]) -> str:
    unit = criterion.get("unit") or ""
    unit = unit if unit in ("", "x", "%") else f" {unit}"
    if criterion["op"] == "within":
        return f"95% interval inside [{criterion['low']:g}, {criterion['high']:g}]{unit}"
    return f"{_SYMBOLS[criterion['op']]} {criterion['value']:g}{unit}"


def judge(criterion: Mapping[str, Any], measurement: Measurement) -> tuple[str, str]:
    """(verdict, reason) for a measured value."""
    value = measurement.value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return INCONCLUSIVE, "no value could be measured"
    text = criterion_text(criterion)
    op = criterion["op"]
    if op == "within":
        return _judge_within(float(criterion["low"]), float(criterion["high"]), measurement)
    holds = _OPS[op](float(value), float(criterion["value"]))
    return (
        REPRODUCED if holds else NOT_REPRODUCED
    ), f"{value:.4g} {'meets' if holds else 'fails'} {text}"


def _judge_within(low: float, high: float, measurement: Measurement) -> tuple[str, str]:
    """The one rule for equivalence claims: the whole 95% interval inside the bounds is
    reproduced, wholly outside is not reproduced, anything else (an interval that straddles a
    bound, or is wider than the bounds) is inconclusive. No interval (n < 2): inconclusive."""
    bounds = f"[{low:g}, {high:g}]"
    if measurement.interval is None:
        return INCONCLUSIVE, f"the measure gives no 95% interval to hold against {bounds}"
    lo, hi = measurement.interval
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return INCONCLUSIVE, (
            f"a single pair gives no 95% interval (point value {measurement.value:+.3g}): "
            f"at least 2 seeds are needed to hold it against {bounds}"
        )
    interval = f"95% interval [{lo:+.3g}, {hi:+.3g}]"
    if low <= lo and hi <= high:
        return REPRODUCED, f"{interval} lies inside {bounds}"
    if hi < low or lo > high:
        return NOT_REPRODUCED, f"{interval} lies outside {bounds}"
    if hi - lo > high - low:
        return INCONCLUSIVE, (
            f"{interval} is wider than {bounds} itself: more seeds are needed to decide"
        )
    return (
        INCONCLUSIVE,
        f"{interval} straddles a bound of {bounds}: more seeds are needed to decide",
    )


def evaluate(
    spec: Mapping[str, Any], tables: Tables, *, unavailable: str | None = None
) -> ClaimResult:
    """Measure one declared claim (or identity check) on `tables` and judge it. `unavailable`
    forces inconclusive (e.g. "CNN not available") without measuring."""
    kind = str(spec.get("kind", CLAIM))
    retired = str(spec["retired"]).strip() if spec.get("retired") else None
    base = {
        "id": str(spec["id"]),
        "claim": str(spec["claim"]).strip(),
        "published": str(spec.get("published", "")).strip(),
        "criterion": criterion_text(spec["criterion"]),
        "kind": kind,
        "retired": retired,
    }

    def named(verdict: str) -> str:
        return _AS_IDENTITY[verdict] if kind == IDENTITY else verdict

    if unavailable:
        return ClaimResult(
            **base,
            value=None,
            value_text="not measured",
            verdict=named(INCONCLUSIVE),
            reason=unavailable,
        )
    measure = MEASURES[spec["measure"]]
    try:
        measurement = measure(tables, **dict(spec.get("args") or {}))
    except Missing as missing:
        return ClaimResult(
            **base,
            value=None,
            value_text="not measured",
            verdict=named(INCONCLUSIVE),
            reason=str(missing),
        )
    verdict, reason = judge(spec["criterion"], measurement)
    return ClaimResult(
        **base,
        value=measurement.value,
        value_text=measurement.text,
        verdict=named(verdict),
        reason=reason,
        interval=measurement.interval,
        detail=measurement.detail,
    )


def results_frame(results: list[ClaimResult], finding: str | None = None) -> pd.DataFrame:
    """Claim results as a tidy table (one row per claim), for claims.csv."""
    rows = []
    for r in results:
        rows.append(
            {
                **({"finding": finding} if finding else {}),
                "claim_id": r.id,
                "kind": r.kind,
                "retired": r.retired or "",
                "claim": r.claim,
                "published": r.published,
                "criterion": r.criterion,
                "value": r.value,
                "interval_low": r.interval[0] if r.interval else None,
                "interval_high": r.interval[1] if r.interval else None,
                "value_text": r.value_text,
                "verdict": r.verdict,
                "reason": r.reason,
            }
        )
    return pd.DataFrame(rows)
