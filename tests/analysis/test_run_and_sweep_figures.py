"""Figures from synthetic run directories: no training, no data set, a few seconds.

The runs are written exactly as docs/design.md §5 says a run directory looks (Hydra's
`.hydra/config.yaml`, `meta.json`, `metrics.csv`, `layers.csv` with the contract's columns),
including the awkward cases: a diverged run, a failed run, a run whose last CSV line was cut.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bnexp import rundir
from bnexp.analysis import intervals, run_plots, style, sweep_figures, tables, variants
from bnexp.rundir import find_runs

from synthetic_runs import write_run, write_sweep


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """norm x depth x 2 seeds; one diverged, one failed, one with a cut last line."""
    return write_sweep(tmp_path / "sweep")


def assert_valid_png(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 0, path
    with Image.open(path) as image:
        image.verify()


def assert_valid_pdf(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 0, path
    assert path.read_bytes()[:5] == b"%PDF-", path


def test_figures_from_a_sweep(sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "figs"
    assert sweep_figures.main([str(sweep), "--out", str(out)]) == 0
    printed = capsys.readouterr()

    for stem in sweep_figures.FIGURE_NAMES + ("final_acc_vs_depth", "norm_params_by_layer"):
        assert_valid_png(out / f"{stem}.png")
        assert_valid_pdf(out / f"{stem}.pdf")

    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 9
    assert {
        "run_dir",
        "norm",
        "depth",
        "seed",
        "status",
        "final_test_acc",
        "best_test_acc",
        "steps_to_target",
        "steps_per_second",
        "diverged_at_step",
    } <= set(runs.columns)
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
    run_dirs = find_runs([sweep])
    assert len(run_dirs) == 9
    runs, layers, metrics, warnings = tables.collect(run_dirs)
    assert variants.varying_keys(runs) == ["norm", "depth"]
    failed = runs[runs["status"] == "failed"]
    assert len(failed) == 1 and not failed["plotted"].iloc[0]
    assert any("failed" in w and failed["run_dir"].iloc[0] in w for w in warnings)
    assert any("still running" in w for w in warnings)
    assert set(layers["run_dir"]) == set(runs.loc[runs["plotted"], "run_dir"])
    assert not metrics.empty


def test_find_runs_accepts_runs_sweeps_and_parents(sweep: Path, tmp_path: Path) -> None:
    other = write_run(tmp_path / "single" / "run", norm="batch", depth=3, seed=5)
    assert find_runs([other]) == [other]
    assert len(find_runs([tmp_path])) == 10
    assert len(find_runs([sweep, sweep / "0"])) == 9  # no duplicates


def test_norm_parameter_figure_only_for_sweeps_with_gamma_and_beta(tmp_path: Path) -> None:
    for norm in ("batch", "none"):
        for seed in (0, 1):
            write_run(tmp_path / norm / str(seed), norm=norm, depth=3, seed=seed)
    names = {}
    for subset in ("batch", "none"):
        runs, layers, metrics, _ = tables.collect(find_runs([tmp_path / subset]))
        sweep = variants.build_sweep(runs, variants.varying_keys(runs))
        names[subset] = {spec.name for spec in sweep_figures.figure_specs(sweep, layers, metrics)}
    assert "norm_params_by_layer" in names["batch"] and "norm_params_by_layer" not in names["none"]


def test_numeric_axes_and_three_keys(tmp_path: Path) -> None:
    """norm x lr x batch_size: lines by norm, panels by the others, one final-accuracy figure
    per numeric key. Only two figures are drawn here, to keep the test quick."""
    root = tmp_path / "grid"
    grid = [(n, lr, bs) for n in ("batch", "none") for lr in (0.1, 1.0, 3.0) for bs in (8, 64)]
    for i, (norm, lr, bs) in enumerate(grid):
        diverged = {"status": "diverged", "diverged_at": 300} if (norm, lr) == ("none", 3.0) else {}
        write_run(
            root / str(i),
            norm=norm,
            lr=lr,
            batch_size=bs,
            steps=600,
            data_source="torchvision",
            **diverged,
        )
    runs, layers, metrics, _warnings = tables.collect(find_runs([root]), target=0.5)
    keys = variants.varying_keys(runs)
    assert keys == ["norm", "optim.lr", "batch_size"]
    assert runs["steps_to_target"].notna().any()
    sweep = variants.build_sweep(runs, keys)
    specs = {spec.name: spec for spec in sweep_figures.figure_specs(sweep, layers, metrics)}
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
    assert variants.varying_keys(runs) == ["norm", "depth"]


def test_a_key_missing_from_older_runs_is_a_value_of_its_own(tmp_path: Path) -> None:
    """Runs written before a config key existed have no value for it: they form their own
    variant instead of breaking the figures."""
    for seed, norm in enumerate(("batch", "none")):
        write_run(tmp_path / "old" / str(seed), norm=norm, seed=seed, steps=200)
    new = write_run(tmp_path / "new", norm="batch", steps=200)
    config = new / ".hydra" / "config.yaml"
    config.write_text(config.read_text() + "label_smoothing: 0.1\n")
    runs, layers, metrics, _warnings = tables.collect(find_runs([tmp_path]))
    assert variants.varying_keys(runs) == ["norm", "label_smoothing"]
    sweep = variants.build_sweep(runs, variants.varying_keys(runs))
    assert sweep.variants[1] == "norm=batch, label_smoothing=null"  # missing sorts last
    spec = next(
        s for s in sweep_figures.figure_specs(sweep, layers, metrics) if s.name == "grad_profile"
    )
    assert spec.build(title="t", caption=[]).axes


def test_t_interval_uses_student_quantiles() -> None:
    mean, half, n = intervals.mean_ci95([1.0, 2.0, 3.0])
    assert (mean, n) == (2.0, 3) and half == pytest.approx(4.303 * 1.0 / np.sqrt(3), rel=1e-3)
    assert intervals.t_quantile_975(60) == pytest.approx(2.000, abs=2e-3)
    assert np.isnan(intervals.mean_ci95([0.5])[1])


def test_empty_directory_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    empty = tmp_path / "nothing here"
    empty.mkdir()
    assert sweep_figures.main([str(empty)]) == 2
    err = capsys.readouterr().err
    assert "no runs" in err and str(empty) in err and "Traceback" not in err
    assert sweep_figures.main([str(tmp_path / "missing")]) == 2


def test_save_run_plots_writes_every_png(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "run", norm="batch", depth=4, status="diverged", diverged_at=600)
    written = run_plots.save_run_plots(run_dir)
    assert sorted(p.name for p in written) == sorted(f"{n}.png" for n in run_plots.RUN_PLOT_NAMES)
    for path in written:
        assert path.parent == run_dir / "plots"
        assert_valid_png(path)


def test_a_run_without_gamma_and_beta_gets_no_norm_parameter_figure(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "run", norm="none", depth=3)
    names = {p.stem for p in run_plots.save_run_plots(run_dir)}
    assert names == set(run_plots.RUN_PLOT_NAMES) - {"norm_params"}


def test_norm_parameter_figure_draws_gamma_and_beta_per_layer(tmp_path: Path) -> None:
    run = rundir.load_run(write_run(tmp_path / "run", norm="batch", depth=3))
    fig = run_plots.plot_norm_params(run.layers)
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
    assert len(run_plots.save_run_plots(run_dir)) == len(run_plots.RUN_PLOT_NAMES)


def test_run_plots_at_depth_twenty(tmp_path: Path) -> None:
    """Twenty small panels per figure; drawing one is enough to catch a layout failure."""
    run = rundir.load_run(write_run(tmp_path / "run", depth=20, steps=200))
    for build in (
        run_plots.plot_grad_profile,
        run_plots.plot_act_range,
        run_plots.plot_unit_percentiles,
    ):
        assert len(build(run.layers).axes) >= 2
    fig = run_plots.plot_pre_bands(run.layers, caption=run_plots.run_caption(run))
    assert sum(ax.get_visible() for ax in fig.axes) == 20
    (png,) = style.savefig(fig, tmp_path / "pre_bands", formats=("png",))
    assert_valid_png(png)


def test_tolerant_reader_drops_only_the_cut_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text(
        "step,train_loss,train_acc,test_loss,test_acc,lr,elapsed_s\n0,2.3,0.1,,,0.1,0.0\n10,2.1,0."
    )
    frame, warnings = rundir.read_csv_tolerant(path, rundir.METRICS_COLUMNS)
    assert frame["step"].tolist() == [0] and np.isnan(frame["test_acc"].iloc[0])
    assert len(warnings) == 1 and "incomplete" in warnings[0]
