"""Every finding figure (bnexp/reproduce/finding_figures.py) drawn on synthetic tables: no training.

`bnexp reproduce` turns a figure's exception into a note in the report, so that a figure bug
cannot hide the verdicts; these tests are what makes such a bug fail the suite instead.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bnexp import rundir
from bnexp.analysis.style import savefig
from bnexp.reproduce.claims import Tables
from bnexp.reproduce.finding_figures import FIGURE_DPI, FIGURES, FigureContext
from bnexp.reproduce.findings import load_findings

FINDINGS = load_findings()
STEPS = list(range(0, 1001, 50))

# Per figure: the config keys its runs vary (every combination is written, 2 seeds each),
# the depth of the network, and the runs that diverge.
FIGURE_RUNS: dict[str, dict[str, Any]] = {
    "fig1": {"grid": {"norm": ["batch", "none"]}},
    "fig1_dist": {"grid": {"norm": ["batch", "none"]}},
    "gradient_flow": {"grid": {"norm": ["batch", "none"]}, "depth": 10},
    "affine": {"grid": {"affine": [True, False], "norm": ["batch"]}},
    "placement": {"grid": {"act": ["sigmoid", "relu"], "placement": ["pre", "post"]}},
    "learning_rate": {
        "grid": {"norm": ["batch", "none"], "optim.lr": [0.1, 0.5, 3.0]},
        "diverged": [{"norm": "none", "optim.lr": 0.5}, {"norm": "none", "optim.lr": 3.0}],
    },
    "batch_size": {"grid": {"norm": ["batch", "group", "layer", "none"], "batch_size": [2, 8, 32]}},
    "running_stats": {"grid": {}},
    "scale_invariance": {"grid": {}},
    "noisy_bn": {"grid": {"norm": ["batch", "none", "noisy", "noise_only"]}},
    "bn_backward": {"grid": {}},
    "running_average": {"grid": {}},
    "linear_depth": {
        "grid": {"norm": ["batch", "none"], "init_gain": [0.5, 1.5], "depth": [10, 20]},
        "depth": 10,
    },
    "explosion": {"grid": {}},
    "renorm": {
        "grid": {
            "norm": ["batch", "renorm", "group"],
            "batch_size": [2, 4, 32],
            "data.batch_classes": [None, 2],
        }
    },
    "regularization": {"grid": {}},
    "lenet": {"grid": {"norm": ["batch", "none"]}},
    "ics": {"grid": {"norm": ["batch", "none", "noisy"]}, "depth": 4},
    "ics_linear": {"grid": {"norm": ["batch", "none"], "optim.lr": [0.01, 0.001]}, "depth": 4},
    "smoothness": {"grid": {"norm": ["batch", "none"]}},
    "init_scale": {
        "grid": {
            "norm": ["batch", "none"],
            "act": ["sigmoid", "relu"],
            "init": ["gaussian", "default"],
            "init_std": [0.001, 1.0, 10.0],
        },
        "diverged": [{"norm": "none", "act": "relu", "init_std": 10.0}],
    },
}


def finding_of(figure: str):
    for finding in FINDINGS.values():
        if figure in finding.figures:
            return finding
    raise AssertionError(f"no finding draws figure {figure!r}")


def synthetic_tables(
    grid: dict[str, list], depth: int = 3, diverged: list[dict] | None = None
) -> Tables:
    """Runs of every combination of `grid` x seeds 0, 1 with curves and per-layer columns
    shaped like real ones (accuracy rising from chance, positive gradients, percentiles in
    order); a diverged run stops at step 300."""
    rng = np.random.default_rng(0)
    runs, metrics, layers = [], [], []
    keys = list(grid)
    for index, values in enumerate(itertools.product(*grid.values(), (0, 1))):
        *config_values, seed = values
        config = dict(zip(keys, config_values, strict=True))
        run_id = f"run{index}"
        is_diverged = any(all(config.get(k) == v for k, v in d.items()) for d in diverged or [])
        steps = [s for s in STEPS if s <= 300] if is_diverged else STEPS
        runs.append(
            {
                "run_id": run_id,
                "status": "diverged" if is_diverged else "completed",
                "seed": seed,
                "diverged_at_step": 300 if is_diverged else np.nan,
                "data_source": "bundled-mnist5k",
                **config,
            }
        )
        top = 0.9 + 0.02 * rng.random()
        for step in steps:
            acc = 0.1 + (top - 0.1) * (1 - np.exp(-step / 200))
            metrics.append(
                {
                    "run_id": run_id,
                    "step": step,
                    "test_acc": acc,
                    "train_acc": acc,
                    "train_loss": 2.3 * (1 - acc),
                    # measure.landscape columns (finding smoothness), shrinking over training
                    "landscape_loss_range": 1.0 / (1 + step / 100),
                    "landscape_grad_pred": 2.0 / (1 + step / 100),
                    "landscape_beta": 20.0 / (1 + step / 100),
                }
            )
            for layer in range(1, depth + 1):
                spread = 1 + step / 1000
                row = {c: 0.5 for c in rundir.LAYERS_COLUMNS}
                row.update(
                    {
                        "run_id": run_id,
                        "step": step,
                        "layer": layer,
                        "grad_w_mean_abs": 1e-3 * 2.0**layer,
                        "grad_w_norm": 0.1 * 2.0**layer,
                        "grad_act_mean_abs": 1e-4 * 2.0**layer,
                        "pre_p15": -spread,
                        "pre_p50": 0.1,
                        "pre_p85": spread,
                        "unit_p15": -spread,
                        "unit_p50": 0.1 * layer,
                        "unit_p85": spread,
                        "act_min": 0.02,
                        "act_max": 0.98,
                        "act_sat_frac": 0.01 * layer,
                        "gamma_mean": 1 + step / 5000,
                        "beta_mean": step / 10000,
                    }
                )
                layers.append(row)
    return Tables(pd.DataFrame(runs), pd.DataFrame(metrics), pd.DataFrame(layers))


def extra_tables() -> dict[str, pd.DataFrame]:
    rows = []
    for seed in (0, 1):
        for size in (1, 2, 10, 100, 1000):
            rows.append(
                {
                    "seed": seed,
                    "eval_batch_size": size,
                    "mode": "running",
                    "accuracy": 0.9,
                    "images": 1000,
                }
            )
            rows.append(
                {
                    "seed": seed,
                    "eval_batch_size": size,
                    "mode": "batch",
                    "accuracy": 0.1 if size == 1 else 0.9 - 0.4 / size,
                    "images": 1000,
                }
            )
    scale = []
    for a in (1e-4, 1e-2, 1.0, 10.0, 100.0):
        for check in ("forward", "input_jacobian", "weight_gradient"):
            scale.append(
                {
                    "check": check,
                    "layer": "formula",
                    "a": a,
                    "eps": 0.0,
                    "rel_error": 0.0 if a == 1 else 1e-15,
                    "a_sigma_min": 0.05 * a,
                }
            )
            scale.append(
                {
                    "check": check,
                    "layer": "torch",
                    "a": a,
                    "eps": 1e-5,
                    "rel_error": 0.0 if a == 1 else min(1.0, 1e-5 / (0.05 * a) ** 2),
                    "a_sigma_min": 0.05 * a,
                }
            )
    backward = [
        {
            "form": form,
            "batch_size": size,
            "affine": affine_on,
            "max_error": 1e-15 * (1 + 100 / size),
        }
        for form in ("closed_form", "compact")
        for size in (2, 4, 16, 256)
        for affine_on in (True, False)
    ]
    return {
        "eval_batch_size": pd.DataFrame(rows),
        "scale_invariance": pd.DataFrame(scale),
        "bn_backward": pd.DataFrame(backward),
        "step0_layers": pd.DataFrame(
            [
                {
                    "act": act,
                    "norm": norm,
                    "batch_size": batch,
                    "depth": depth,
                    "width": 8,
                    "seed": seed,
                    "layer": layer,
                    "grad_w_norm": 1e-3 * (1.2 if norm == "batch" else 1.0) ** (depth - layer),
                }
                for act in ("relu", "identity")
                for norm in ("batch", "none")
                for batch in (8, 32, 256)
                for depth in (10, 20)
                for seed in (0, 1)
                for layer in range(1, depth + 1)
            ]
        ),  # fmt: skip
        "trainability": pd.DataFrame(
            [
                {
                    "act": "relu",
                    "norm": norm,
                    "batch_size": 32,
                    "depth": depth,
                    "seed": 0,
                    "final_test_acc": 0.9 - depth / 150,
                }
                for norm in ("batch", "none")
                for depth in (10, 50, 100)
            ]
        ),  # fmt: skip
        "momentum_lag": pd.DataFrame(
            [
                {
                    "seed": seed,
                    "momentum": momentum,
                    "step": step,
                    "mode": mode,
                    "accuracy": 0.9 - (0.5 * (1 - momentum) ** step if mode == "running" else 0),
                }
                for seed in (0, 1)
                for momentum in (0.01, 0.1, 0.5)
                for step in (10, 100, 1000)
                for mode in ("running", "batch")
            ]
        ),
        "generalization": pd.DataFrame(
            [
                {
                    "seed": seed,
                    "norm": norm,
                    "dropout": dropout,
                    "train_acc": 1.0 - dropout / 10,
                    "test_acc": 0.95 + (norm == "batch") / 100,
                    "train_loss": 0.01,
                    "test_loss": 0.2,
                    "acc_gap_points": 5.0 - dropout - (norm == "batch") + seed,
                    "loss_gap": 0.19,
                }
                for seed in (0, 1, 2)
                for norm in ("batch", "none")
                for dropout in (0.0, 0.4)
            ]
        ),
    }


def save_png(fig, path: Path) -> Path:
    """As `bnexp reproduce` saves a finding's figure."""
    (png,) = savefig(fig, path.with_suffix(""), formats=("png",), dpi=FIGURE_DPI)
    return png


def assert_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 1000, path
    with Image.open(path) as image:
        image.verify()


def test_every_finding_figure_has_synthetic_runs_here():
    missing = sorted(set(FIGURES) - set(FIGURE_RUNS))
    assert not missing, f"add synthetic runs for the new finding figure(s) {missing} to FIGURE_RUNS"
    for finding in FINDINGS.values():
        assert set(finding.figures) <= set(FIGURES), finding.name


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_figure_draws_on_synthetic_tables(name, tmp_path):
    spec = FIGURE_RUNS[name]
    tables = synthetic_tables(spec["grid"], spec.get("depth", 3), spec.get("diverged"))
    tables.extra = extra_tables()
    finding = finding_of(name)
    fig = FIGURES[name](FigureContext(tables, finding, ["synthetic tables"]))
    axes_with_data = [ax for ax in fig.axes if ax.has_data()]
    assert axes_with_data, f"{name}: nothing was drawn"
    assert_png(save_png(fig, tmp_path / f"{name}.png"))


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_figure_draws_without_any_runs(name, tmp_path):
    """A finding whose runs are all missing (e.g. the CNN not available) still gets its figure,
    with empty panels that say so."""
    finding = finding_of(name)
    fig = FIGURES[name](FigureContext(Tables.empty(), finding, ["no runs"]))
    assert_png(save_png(fig, tmp_path / f"{name}.png"))


def test_gradient_flow_draws_the_published_hidden_layers_only():
    """The published table has 11 values per row (hidden layers 1-10, then the output layer);
    the figure draws the 10 hidden ones beside ours."""
    finding = FINDINGS["gradient-flow"]
    assert sorted(int(k) for k in finding.published_values["none"]) == list(range(1, 11))
    assert finding.published_values["none"][10] == pytest.approx(0.125)
    assert finding.published_values["none"][10] / finding.published_values["none"][
        1
    ] == pytest.approx(3.87e5, rel=0.01)
    batch = finding.published_values["batch"]
    assert max(batch.values()) / min(batch.values()) == pytest.approx(2.1, abs=0.01)
    spec = FIGURE_RUNS["gradient_flow"]
    tables = synthetic_tables(spec["grid"], spec["depth"])
    fig = FIGURES["gradient_flow"](FigureContext(tables, finding, []))
    published = [
        line for line in fig.axes[0].get_lines() if line.get_label().startswith("published")
    ]
    assert len(published) == 2
    for line in published:
        assert list(line.get_xdata()) == list(range(1, 11))


def test_batch_size_title_names_only_the_norms_that_have_runs():
    """A sweep of the claims' norms only (norm=batch,group, as on Fashion-MNIST) is not titled
    with LayerNorm and no norm; the full grid is."""
    finding = finding_of("batch_size")

    def title(norms):
        tables = synthetic_tables({"norm": norms, "batch_size": [2, 8, 32]})
        return FIGURES["batch_size"](FigureContext(tables, finding, [])).texts[0].get_text()

    assert title(["batch", "group"]) == "Test error vs batch size for BN and GroupNorm"
    assert title(["batch", "group", "layer", "none"]).endswith(
        "BN, GroupNorm, LayerNorm and no norm"
    )
