"""Figures from synthetic run directories: no training, no data set, a few seconds.

The runs are written exactly as docs/design.md §5 says a run directory looks (Hydra's
`.hydra/config.yaml`, `meta.json`, `metrics.csv`, `layers.csv` with the contract's columns),
including the awkward cases: a diverged run, a failed run, a run whose last CSV line was cut.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bnexp import figures, plots, rundir, style

METRICS_COLUMNS = "step,train_loss,train_acc,test_loss,test_acc,lr,elapsed_s".split(",")
LAYERS_COLUMNS = (
    "step,layer,grad_w_mean_abs,grad_w_norm,grad_w_ratio,update_ratio,grad_act_mean_abs,"
    "pre_mean,pre_std,pre_min,pre_max,pre_p15,pre_p50,pre_p85,act_mean,act_std,act_min,act_max,"
    "act_sat_frac,unit_p15,unit_p50,unit_p85,gamma_mean,gamma_std,beta_mean,beta_std,"
    "running_mean_mean,running_var_mean"
).split(",")

CONFIG_TEMPLATE = """\
data: {{name: mnist, source: auto, root: ~/.cache/bnexp/data, binarize: false, augment: false, download: true}}
model: {{name: mlp}}
norm: {{name: {norm}, momentum: 0.1, eps: 1.0e-05, groups: null}}
optim: {{name: sgd, lr: {lr}, momentum: 0.0, weight_decay: 0.0}}
depth: {depth}
width: 100
act: sigmoid
placement: pre
affine: true
init: default
init_std: 0.01
batch_size: {batch_size}
steps: {steps}
log_every: null
eval_every: null
seed: {seed}
track_unit: 0
probe_size: 500
threads: null
plots: true
"""


def synthetic_frames(
    norm: str, depth: int, seed: int, steps: int, stop_at: int | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Curves shaped like the real thing: BN learns faster, and without BN the gradient
    shrinks by orders of magnitude towards the input while pre-activations drift."""
    rng = np.random.default_rng(seed + 100 * depth + (7 if norm == "batch" else 0))
    log_steps = np.arange(0, (stop_at or steps) + 1, max(1, steps // 40))
    eval_every = max(1, steps // 10)
    rate = 3.0 if norm == "batch" else 1.0 / depth
    progress = 1 - np.exp(-rate * 4 * log_steps / steps)
    test_acc = (
        0.1
        + (0.97 if norm == "batch" else 0.9) * progress * 0.9
        + rng.normal(0, 0.005, len(log_steps))
    )
    train_loss = (
        2.3 * np.exp(-rate * 3 * log_steps / steps) + 0.05 + rng.normal(0, 0.02, len(log_steps))
    )
    metrics = pd.DataFrame(
        {
            "step": log_steps,
            "train_loss": train_loss,
            "train_acc": np.clip(test_acc + rng.normal(0, 0.03, len(log_steps)), 0, 1),
            "test_loss": train_loss * 1.05,
            "test_acc": np.clip(test_acc, 0, 1),
            "lr": 0.1,
            "elapsed_s": log_steps / 1500,
        }
    )
    not_evaluated = metrics["step"] % eval_every != 0
    metrics.loc[not_evaluated, ["test_loss", "test_acc"]] = np.nan
    if stop_at is not None:
        metrics.loc[metrics.index[-1], ["train_loss", "test_loss", "test_acc"]] = np.nan

    rows = []
    for step, frac in zip(log_steps, log_steps / steps, strict=True):
        for layer in range(1, depth + 1):
            decay = 1.0 if norm == "batch" else 10.0 ** (-(depth - layer) * 0.8)
            drift = 0 if norm == "batch" else 3 * frac * (layer / depth)
            spread = 1.0 if norm == "batch" else 1 + 2 * frac
            rows.append(
                {
                    "step": step,
                    "layer": layer,
                    "grad_w_mean_abs": 0.2 * decay * (1 + 0.1 * rng.random()),
                    "grad_w_norm": 5 * decay,
                    "grad_w_ratio": 0.01 * decay,
                    "update_ratio": 0.001 * decay,
                    "grad_act_mean_abs": 0.05 * decay,
                    "pre_mean": drift,
                    "pre_std": spread,
                    "pre_min": drift - 3.5 * spread,
                    "pre_max": drift + 3.5 * spread,
                    "pre_p15": drift - spread,
                    "pre_p50": drift,
                    "pre_p85": drift + spread,
                    "act_mean": 0.5 + 0.1 * drift,
                    "act_std": 0.2,
                    "act_min": 0.03 if norm == "none" else 0.1,
                    "act_max": 0.97 if norm == "none" else 0.9,
                    "act_sat_frac": min(
                        1.0, 0.05 + (0.5 * frac * layer / depth if norm == "none" else 0)
                    ),
                    "unit_p15": drift - 0.8 * spread,
                    "unit_p50": drift + 0.1,
                    "unit_p85": drift + 0.8 * spread,
                    # No norm layer: the norm's own columns are empty cells, never made up.
                    "gamma_mean": 1.0 if norm == "batch" else np.nan,
                    "gamma_std": 0.01 if norm == "batch" else np.nan,
                    "beta_mean": 0.0 if norm == "batch" else np.nan,
                    "beta_std": 0.01 if norm == "batch" else np.nan,
                    "running_mean_mean": 0.0 if norm == "batch" else np.nan,
                    "running_var_mean": 1.0 if norm == "batch" else np.nan,
                }
            )
    return metrics[METRICS_COLUMNS], pd.DataFrame(rows)[LAYERS_COLUMNS]


def write_run(
    run_dir: Path,
    *,
    norm: str = "batch",
    depth: int = 3,
    seed: int = 0,
    lr: float = 0.1,
    batch_size: int = 60,
    steps: int = 1000,
    status: str = "completed",
    diverged_at: int | None = None,
    truncate_last_line: bool = False,
    data_source: str = "bundled-mnist5k",
) -> Path:
    """One run directory in the layout `bnexp run` writes."""
    (run_dir / ".hydra").mkdir(parents=True)
    config_text = CONFIG_TEMPLATE.format(
        norm=norm, depth=depth, seed=seed, lr=lr, batch_size=batch_size, steps=steps
    )
    (run_dir / ".hydra" / "config.yaml").write_text(config_text)
    meta = {
        "status": status,
        "steps_done": diverged_at or steps,
        "diverged_at_step": diverged_at,
        "data_source": data_source,
        "train_size": 4000,
        "test_size": 1000,
        "config_hash": f"h{seed}{norm}{depth}",
        "wall_seconds": 2.0,
        "steps_per_second": 500.0,
    }
    if status == "failed":
        meta["error"] = "RuntimeError: CUDA out of patience"
        (run_dir / "meta.json").write_text(json.dumps(meta))
        return run_dir
    (run_dir / "meta.json").write_text(json.dumps(meta))
    metrics, layers = synthetic_frames(norm, depth, seed, steps, diverged_at)
    metrics.to_csv(run_dir / "metrics.csv", index=False, na_rep="")
    layers.to_csv(run_dir / "layers.csv", index=False, na_rep="")
    if truncate_last_line:
        for name in ("metrics.csv", "layers.csv"):
            text = (run_dir / name).read_text()
            (run_dir / name).write_text(text[: len(text) - 12])  # cut mid-row, no newline
    return run_dir


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """norm x depth x 2 seeds; one diverged, one failed, one with a cut last line."""
    root = tmp_path / "sweep"
    job = 0
    for norm in ("batch", "none"):
        for depth in (3, 5):
            for seed in (0, 1):
                kwargs: dict = {}
                if (norm, depth, seed) == ("none", 5, 1):
                    kwargs = {"status": "diverged", "diverged_at": 400}
                if (norm, depth, seed) == ("batch", 5, 1):
                    kwargs = {"status": "running", "truncate_last_line": True}
                write_run(root / str(job), norm=norm, depth=depth, seed=seed, **kwargs)
                job += 1
    write_run(root / str(job), norm="none", depth=3, seed=2, status="failed")
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return root


def assert_valid_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 0, path
    with Image.open(path) as image:
        image.verify()


def assert_valid_pdf(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 0, path
    assert path.read_bytes()[:5] == b"%PDF-", path


def test_figures_from_a_sweep(sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "figs"
    assert figures.main([str(sweep), "--out", str(out)]) == 0
    printed = capsys.readouterr()

    for stem in figures.FIGURE_NAMES + ("final_acc_vs_depth", "norm_params_by_layer"):
        assert_valid_png(out / f"{stem}.png")
        assert_valid_pdf(out / f"{stem}.pdf")

    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 9
    assert {"run_dir", "norm", "depth", "seed", "status", "final_test_acc", "best_test_acc",
            "steps_to_target", "steps_per_second", "diverged_at_step"} <= set(runs.columns)  # fmt: skip
    assert "optim.lr" not in runs.columns  # the same in every run, so not a varying key
    diverged = runs[runs["status"] == "diverged"]
    assert len(diverged) == 1 and diverged["diverged_at_step"].iloc[0] == 400
    assert runs.loc[runs["status"] == "failed", "error"].str.contains("out of patience").all()

    layers_all = pd.read_csv(out / "layers_all.csv")
    assert {"run_dir", "seed", "norm", "depth", "step", "layer", "grad_w_mean_abs"} <= set(
        layers_all.columns
    )
    assert set(layers_all["depth"]) == {3, 5}

    index = (out / "index.md").read_text()
    assert "![" in index and "test_acc_vs_step.png" in index
    assert "failed" in index and "out of patience" in index
    assert "last line is incomplete" in index  # the cut run is named in the warnings
    assert "bundled MNIST subset (5,000 digits)" in index
    assert str(out / "index.md") in printed.out


def test_collect_reports_failed_and_partial_runs(sweep: Path) -> None:
    run_dirs = figures.find_runs([sweep])
    assert len(run_dirs) == 9
    runs, layers, metrics, warnings = figures.collect(run_dirs)
    assert figures.varying_keys(runs) == ["norm", "depth"]
    failed = runs[runs["status"] == "failed"]
    assert len(failed) == 1 and not failed["plotted"].iloc[0]
    assert any("failed" in w and failed["run_dir"].iloc[0] in w for w in warnings)
    assert any("still running" in w for w in warnings)
    assert set(layers["run_dir"]) == set(runs.loc[runs["plotted"], "run_dir"])
    assert not metrics.empty


def test_find_runs_accepts_runs_sweeps_and_parents(sweep: Path, tmp_path: Path) -> None:
    other = write_run(tmp_path / "single" / "run", norm="batch", depth=3, seed=5)
    assert figures.find_runs([other]) == [other]
    assert len(figures.find_runs([tmp_path])) == 10
    assert len(figures.find_runs([sweep, sweep / "0"])) == 9  # no duplicates


def test_norm_parameter_figure_only_for_sweeps_with_gamma_and_beta(tmp_path: Path) -> None:
    for norm in ("batch", "none"):
        for seed in (0, 1):
            write_run(tmp_path / norm / str(seed), norm=norm, depth=3, seed=seed)
    names = {}
    for subset in ("batch", "none"):
        runs, layers, metrics, _ = figures.collect(figures.find_runs([tmp_path / subset]))
        sweep = figures.build_sweep(runs, figures.varying_keys(runs))
        names[subset] = {spec.name for spec in figures.figure_specs(sweep, layers, metrics)}
    assert "norm_params_by_layer" in names["batch"] and "norm_params_by_layer" not in names["none"]


def test_numeric_axes_and_three_keys(tmp_path: Path) -> None:
    """norm x lr x batch_size: lines by norm, panels by the others, one final-accuracy figure
    per numeric key. Only two figures are drawn here, to keep the test quick."""
    root = tmp_path / "grid"
    grid = [(n, lr, bs) for n in ("batch", "none") for lr in (0.1, 1.0, 3.0) for bs in (8, 64)]
    for i, (norm, lr, bs) in enumerate(grid):
        diverged = {"status": "diverged", "diverged_at": 300} if (norm, lr) == ("none", 3.0) else {}
        write_run(root / str(i), norm=norm, lr=lr, batch_size=bs, steps=600,
                  data_source="torchvision", **diverged)  # fmt: skip
    runs, layers, metrics, _warnings = figures.collect(figures.find_runs([root]), target=0.5)
    keys = figures.varying_keys(runs)
    assert keys == ["norm", "optim.lr", "batch_size"]
    assert runs["steps_to_target"].notna().any()
    sweep = figures.build_sweep(runs, keys)
    specs = {spec.name: spec for spec in figures.figure_specs(sweep, layers, metrics)}
    assert {"final_acc_vs_optim.lr", "final_acc_vs_batch_size"} <= set(specs)
    for name in ("final_acc_vs_optim.lr", "test_acc_vs_step"):
        fig = specs[name].build(title=name, caption=sweep.caption)
        assert fig.axes[0].get_title()  # faceted: panels are titled by their key values
        (png,) = style.savefig(fig, tmp_path / name, formats=("png",))
        assert_valid_png(png)


def test_group_settings_that_follow_the_choice_are_not_axes() -> None:
    runs = pd.DataFrame(
        {
            "norm": ["batch", "none", "batch", "none"],
            "norm.momentum": [0.1, None, 0.1, None],  # norm=none has no momentum
            "depth": [3, 3, 5, 5],
            "seed": [0, 1, 0, 1],
            "threads": [1, 2, 1, 2],
        }
    )
    assert figures.varying_keys(runs) == ["norm", "depth"]


def test_a_key_missing_from_older_runs_is_a_value_of_its_own(tmp_path: Path) -> None:
    """Runs written before a config key existed have no value for it: they form their own
    variant instead of breaking the figures."""
    for seed, norm in enumerate(("batch", "none")):
        write_run(tmp_path / "old" / str(seed), norm=norm, seed=seed, steps=200)
    new = write_run(tmp_path / "new", norm="batch", steps=200)
    config = new / ".hydra" / "config.yaml"
    config.write_text(config.read_text() + "label_smoothing: 0.1\n")
    runs, layers, metrics, _warnings = figures.collect(figures.find_runs([tmp_path]))
    assert figures.varying_keys(runs) == ["norm", "label_smoothing"]
    sweep = figures.build_sweep(runs, figures.varying_keys(runs))
    assert sweep.variants[1] == "norm=batch, label_smoothing=null"  # missing sorts last
    spec = next(s for s in figures.figure_specs(sweep, layers, metrics) if s.name == "grad_profile")
    assert spec.build(title="t", caption=[]).axes


def test_t_interval_uses_student_quantiles() -> None:
    mean, half, n = figures.mean_ci95([1.0, 2.0, 3.0])
    assert (mean, n) == (2.0, 3) and half == pytest.approx(4.303 * 1.0 / np.sqrt(3), rel=1e-3)
    assert figures.t_quantile_975(60) == pytest.approx(2.000, abs=2e-3)
    assert np.isnan(figures.mean_ci95([0.5])[1])


def test_empty_directory_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    empty = tmp_path / "nothing here"
    empty.mkdir()
    assert figures.main([str(empty)]) == 2
    err = capsys.readouterr().err
    assert "no runs" in err and str(empty) in err and "Traceback" not in err
    assert figures.main([str(tmp_path / "missing")]) == 2


def test_save_run_plots_writes_every_png(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "run", norm="batch", depth=4, status="diverged", diverged_at=600)
    written = plots.save_run_plots(run_dir)
    assert sorted(p.name for p in written) == sorted(f"{n}.png" for n in plots.RUN_PLOT_NAMES)
    for path in written:
        assert path.parent == run_dir / "plots"
        assert_valid_png(path)


def test_a_run_without_gamma_and_beta_gets_no_norm_parameter_figure(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "run", norm="none", depth=3)
    names = {p.stem for p in plots.save_run_plots(run_dir)}
    assert names == set(plots.RUN_PLOT_NAMES) - {"norm_params"}


def test_norm_parameter_figure_draws_gamma_and_beta_per_layer(tmp_path: Path) -> None:
    run = rundir.load_run(write_run(tmp_path / "run", norm="batch", depth=3))
    fig = plots.plot_norm_params(run.layers)
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.lines]
    assert len(panels) == 3
    gamma_line, beta_line = panels[0].lines[:2]
    assert np.allclose(gamma_line.get_ydata(), 1.0) and np.allclose(beta_line.get_ydata(), 0.0)


def only_the_first_logged_step(run_dir: Path) -> None:
    for name in ("metrics.csv", "layers.csv"):
        frame = pd.read_csv(run_dir / name)
        frame[frame["step"] == 0].to_csv(run_dir / name, index=False, na_rep="")


def test_run_plots_tolerate_one_step_and_depth_one(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "run", depth=1, steps=1000)
    only_the_first_logged_step(run_dir)
    assert len(plots.save_run_plots(run_dir)) == len(plots.RUN_PLOT_NAMES)


def test_run_plots_at_depth_twenty(tmp_path: Path) -> None:
    """Twenty small panels per figure; drawing one is enough to catch a layout failure."""
    run = rundir.load_run(write_run(tmp_path / "run", depth=20, steps=200))
    for build in (plots.plot_grad_profile, plots.plot_act_range, plots.plot_unit_percentiles):
        assert len(build(run.layers).axes) >= 2
    fig = plots.plot_pre_bands(run.layers, caption=plots.run_caption(run))
    assert sum(ax.get_visible() for ax in fig.axes) == 20
    (png,) = style.savefig(fig, tmp_path / "pre_bands", formats=("png",))
    assert_valid_png(png)


def test_tolerant_reader_drops_only_the_cut_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text(
        "step,train_loss,train_acc,test_loss,test_acc,lr,elapsed_s\n0,2.3,0.1,,,0.1,0.0\n10,2.1,0."
    )
    frame, warnings = rundir.read_csv_tolerant(path, METRICS_COLUMNS)
    assert frame["step"].tolist() == [0] and np.isnan(frame["test_acc"].iloc[0])
    assert len(warnings) == 1 and "incomplete" in warnings[0]
