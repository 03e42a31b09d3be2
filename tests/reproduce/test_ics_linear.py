"""Finding ics-linear (Santurkar et al.'s deep linear network): the optimisation_level measure
against a hand computation, the declared claims' verdicts on synthetic tables, and its figure
drawing each learning rate's runs in its own row."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import bnexp.reproduce.optimisation  # noqa: F401 (registers the optimisation measures)
from bnexp.reproduce.claims import MEASURES, Tables, evaluate
from bnexp.reproduce.finding_figures import FIGURES, FigureContext
from bnexp.reproduce.findings import load_findings

RATES = (0.01, 0.001)


def tables(diff: dict, cosine: dict, seeds=(0, 1, 2)) -> Tables:
    """Runs of norm x lr x seed; per run every measured (step, layer >= 2) cell is the value of
    diff/cosine[(norm, lr)] plus seed * 0.01 (layer 1 and the final step empty)."""
    runs, metrics, layers = [], [], []
    for norm in ("batch", "none"):
        for lr in RATES:
            for seed in seeds:
                run_id = f"{norm}-{lr}-{seed}"
                runs.append({"run_id": run_id, "status": "completed", "seed": seed,
                             "norm": norm, "optim.lr": lr})  # fmt: skip
                for step in (0, 20, 40):
                    metrics.append(
                        {"run_id": run_id, "step": step, "train_loss": 10.0 / (1 + step)}
                    )
                    for layer in (1, 2, 3):
                        measured = layer >= 2 and step < 40
                        d = diff[(norm, lr)] + 0.01 * seed if measured else math.nan
                        c = cosine[(norm, lr)] + 0.01 * seed if measured else math.nan
                        layers.append({"run_id": run_id, "step": step, "layer": layer,
                                       "ics_diff_norm": d, "ics_cosine": c})  # fmt: skip
    return Tables(pd.DataFrame(runs), pd.DataFrame(metrics), pd.DataFrame(layers))


PAPER_LIKE = tables(
    diff={("batch", 0.01): 3.0, ("none", 0.01): 1.0, ("batch", 0.001): 0.3, ("none", 0.001): 0.1},
    cosine={
        ("batch", 0.01): 0.05,
        ("none", 0.01): 0.98,
        ("batch", 0.001): 0.1,
        ("none", 0.001): 0.99,
    },
)


def test_optimisation_level_is_the_seed_mean_of_run_medians_with_a_t_interval():
    m = MEASURES["optimisation_level"](
        PAPER_LIKE, {"norm": "batch", "optim.lr": 0.01}, column="ics_cosine"
    )
    medians = np.array([0.05, 0.06, 0.07])  # one value per run (+0.01 per seed)
    assert m.value == pytest.approx(medians.mean())
    half = 4.302652729911275 * medians.std(ddof=1) / math.sqrt(3)  # t(0.975, 2)
    assert m.interval == pytest.approx((medians.mean() - half, medians.mean() + half))


def test_the_declared_claims_reproduce_on_paper_like_tables_and_fail_on_the_opposite():
    claims = load_findings()["ics-linear"].claims
    assert len(claims) == 6
    assert {c["id"]: evaluate(c, PAPER_LIKE).verdict for c in claims} == {
        c["id"]: "reproduced" for c in claims
    }
    # BN aligned like the plain network, and with smaller differences: none reproduces.
    opposite = tables(
        diff={k: (0.1 if k[0] == "batch" else 1.0) for k in PAPER_LIKE_KEYS},
        cosine={k: 0.97 for k in PAPER_LIKE_KEYS},
    )
    assert {evaluate(c, opposite).verdict for c in claims} == {"not reproduced"}


PAPER_LIKE_KEYS = [(norm, lr) for norm in ("batch", "none") for lr in RATES]


def test_the_figure_draws_each_learning_rate_in_its_own_row():
    finding = load_findings()["ics-linear"]
    fig = FIGURES["ics_linear"](FigureContext(PAPER_LIKE, finding, ["synthetic tables"]))
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 6
    for ax in panels:
        lr = 0.01 if "lr 0.01 " in ax.get_title() else 0.001
        assert ("paper 1e-6" if lr == 0.01 else "paper 1e-7") in ax.get_title()
        if ax.get_title().startswith("(b)"):  # cosine: each variant's seed-mean line
            drawn = {line.get_label(): float(np.mean(line.get_ydata())) for line in ax.lines}
            rows = PAPER_LIKE.layers.merge(PAPER_LIKE.runs)
            rows = rows[(rows["optim.lr"] == lr) & (rows["layer"] >= 2)]
            expected = rows.groupby("norm")["ics_cosine"].mean()
            assert drawn["With BN"] == pytest.approx(expected["batch"])
            assert drawn["Without BN"] == pytest.approx(expected["none"])
