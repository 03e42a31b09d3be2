"""`bnexp figures PATH... [--out DIR]`: compare runs and sweeps in one folder of figures.

    find_runs(paths)          every run directory under the given runs, sweeps or parents
                              (bnexp.rundir)
    collect(run_dirs)         one row per run + all metrics/layers rows + warnings
                              (bnexp.analysis.tables)
    varying_keys(runs_df)     the config keys that differ between runs (bnexp.analysis.variants)
    make_figures(...)         figures (PNG + PDF), runs.csv, layers_all.csv, index.md (here)

Seeds are never a figure axis: runs that differ only in `seed` form one *variant* and are
shown as a mean with a band (time series) or a mean with a 95% t-interval (scalars). Diverged
runs are drawn as lines that stop, with an x at the divergence step; failed runs are listed,
never drawn. Never imports torch: figures of runs made elsewhere need only this package.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bnexp.analysis import style
from bnexp.analysis.sweep_plots import (
    plot_activation_ranges_by_variant,
    plot_final_accuracy_by_variant,
    plot_final_accuracy_vs,
    plot_grad_profile_by_variant,
    plot_norm_params_by_variant,
    plot_saturation_by_variant,
    plot_test_accuracy_by_variant,
    plot_unit_percentiles_by_variant,
)
from bnexp.analysis.sweep_tables import labelled, runs_frame
from bnexp.analysis.tables import collect, has_norm_params
from bnexp.analysis.variants import (
    Sweep,
    build_sweep,
    count_text,
    is_numeric_key,
    ordered_values,
    sweep_data_text,
    variant_label,
    varying_keys,
)
from bnexp.describe import config_summary, format_value
from bnexp.outdir import make_output_dir
from bnexp.rundir import BUNDLED_TEXT, find_runs

FIGURE_NAMES: tuple[str, ...] = (
    "test_acc_vs_step",
    "grad_profile",
    "act_range_by_layer",
    "unit_percentiles",
    "saturation_heatmap",
    "final_acc_by_variant",
)


# --------------------------------------------------------------------------------------------
# The output folder
# --------------------------------------------------------------------------------------------


@dataclass
class FigureSpec:
    name: str
    title: str
    caption: str  # one line for index.md and the figure's footnote
    build: Callable[..., Figure]  # (title=..., caption=...) -> Figure


def figure_specs(sweep: Sweep, layers: pd.DataFrame, metrics: pd.DataFrame) -> list[FigureSpec]:
    specs = [
        FigureSpec(
            "test_acc_vs_step",
            "Test accuracy during training",
            "Test accuracy (eval mode) against the training step; line = mean over seeds, band = range over seeds.",
            lambda **kw: plot_test_accuracy_by_variant(sweep, metrics, **kw),
        ),
        FigureSpec(
            "grad_profile",
            "Gradient magnitude per layer",
            "Mean |∂L/∂W| per hidden layer at the first, middle and last logged step (geometric mean over seeds, log scale).",
            lambda **kw: plot_grad_profile_by_variant(sweep, layers, **kw),
        ),
        FigureSpec(
            "act_range_by_layer",
            "Input and output of the nonlinearity per layer",
            "At each run's last logged step, per layer: pre-activation min–max and 15–85th percentile bands with median (top), activation min–max band and mean (bottom); means over seeds.",
            lambda **kw: plot_activation_ranges_by_variant(sweep, layers, **kw),
        ),
        FigureSpec(
            "unit_percentiles",
            "One unit's input over training (BN paper Fig. 1b,c)",
            "15th, 50th and 85th percentile of one unit's pre-activation in the last hidden layer on a fixed probe batch, over training.",
            lambda **kw: plot_unit_percentiles_by_variant(sweep, layers, **kw),
        ),
        FigureSpec(
            "saturation_heatmap",
            "Saturated activations per layer over training",
            "Fraction of saturated activations (sigmoid < 0.05 or > 0.95, tanh |a| > 0.97, ReLU a = 0) per layer and step, mean over seeds.",
            lambda **kw: plot_saturation_by_variant(sweep, layers, **kw),
        ),
        FigureSpec(
            "final_acc_by_variant",
            "Final test accuracy per variant",
            "Final test accuracy of each variant: dots are seeds, diamonds the mean with its 95% t-interval.",
            lambda **kw: plot_final_accuracy_by_variant(sweep, **kw),
        ),
    ]
    if has_norm_params(layers):
        specs.append(
            FigureSpec(
                "norm_params_by_layer",
                "The norm's gamma and beta per layer",
                "At each run's last logged step: mean gamma (scale) and beta (shift) of each layer's norm, mean over seeds; dotted = their initial values. Variants without gamma/beta are absent.",
                lambda **kw: plot_norm_params_by_variant(sweep, layers, **kw),
            )
        )
    for key in sweep.keys:
        if is_numeric_key(sweep.values[key]):
            specs.append(
                FigureSpec(
                    f"final_acc_vs_{key}",
                    f"Final test accuracy against {key}",
                    f"Final test accuracy against {key}: mean ± 95% t-interval over seeds, one line per value of the other varying keys.",
                    lambda key=key, **kw: plot_final_accuracy_vs(sweep, key, **kw),
                )
            )
    return specs


def make_figures(
    runs_df: pd.DataFrame,
    layers_df: pd.DataFrame,
    metrics_df: pd.DataFrame,
    out_dir: str | Path,
    *,
    warnings: Sequence[str] = (),
    target: float = 0.9,
    sources: Sequence[str | Path] = (),
) -> list[Path]:
    """Write the figures (PNG and PDF), runs.csv, layers_all.csv and index.md into `out_dir`;
    return the written paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    keys = varying_keys(runs_df)
    written = write_tables(runs_df, layers_df, keys, out_dir)
    figure_entries = []
    if runs_df["plotted"].any():
        sweep = build_sweep(runs_df, keys)
        for spec in figure_specs(sweep, layers_df, metrics_df):
            fig = spec.build(title=spec.title + sweep.title_suffix, caption=sweep.caption)
            paths = style.savefig(fig, out_dir / spec.name, formats=("png", "pdf"))
            written += paths
            figure_entries.append((spec, paths))
    else:
        warnings = [*warnings, "no run has logged data: no figures drawn"]
    index = out_dir / "index.md"
    index.write_text(
        index_markdown(runs_df, keys, figure_entries, warnings, target, sources, out_dir)
    )
    return written + [index]


def write_tables(
    runs_df: pd.DataFrame, layers_df: pd.DataFrame, keys: list[str], out_dir: Path
) -> list[Path]:
    """runs.csv (one row per run) and layers_all.csv (every layers.csv row, labelled): the
    frames of bnexp.analysis.sweep_tables, which bnexp.load_runs returns too."""
    runs_path = out_dir / "runs.csv"
    runs_frame(runs_df, keys).to_csv(runs_path, index=False)
    layers = labelled(layers_df, runs_df, keys)
    layers_path = out_dir / "layers_all.csv"
    layers.to_csv(layers_path, index=False, float_format="%.6g")
    return [runs_path, layers_path]


def index_markdown(
    runs_df: pd.DataFrame,
    keys: list[str],
    figure_entries: list[tuple[FigureSpec, list[Path]]],
    warnings: Sequence[str],
    target: float,
    sources: Sequence[str | Path],
    out_dir: Path,
) -> str:
    lines = ["# bnexp figures", ""]
    if sources:
        lines.append("Runs from: " + ", ".join(f"`{s}`" for s in sources) + ".")
    varying = "; ".join(
        f"`{k}` ∈ {{{', '.join(format_value(v) for v in ordered_values(runs_df[k]))}}}"
        for k in keys
    )
    lines.append(
        f"{count_text(len(runs_df), 'run')}. Varying: {varying or 'nothing (one configuration)'}; seeds are aggregated."
    )
    lines += [
        "",
        f"Config: `{config_summary(runs_df.iloc[0].to_dict(), {k: ordered_values(runs_df[k]) for k in keys})}`",
        "",
    ]
    data_text = sweep_data_text(runs_df)
    lines += [f"**{data_text}**" if BUNDLED_TEXT in data_text else data_text, ""]
    lines += ["## Figures", ""]
    for spec, paths in figure_entries:
        png = next(p for p in paths if p.suffix == ".png")
        pdf = next((p for p in paths if p.suffix == ".pdf"), None)
        pdf_link = f" ([PDF]({pdf.name}))" if pdf else ""
        lines += [
            f"### {spec.title}",
            "",
            f"![{spec.title}]({png.name})",
            "",
            spec.caption + pdf_link,
            "",
        ]
    if not figure_entries:
        lines += ["No figures: no run has logged data.", ""]
    lines += ["## Runs by status", "", *runs_table(runs_df, keys, target, out_dir), ""]
    lines += ["## Warnings", ""]
    lines += [f"- {_md_escape(w)}" for w in warnings] or ["None."]
    lines += [
        "",
        "Tables: [runs.csv](runs.csv) (one row per run), [layers_all.csv](layers_all.csv) (every layers.csv row with its run's keys).",
        "",
    ]
    return "\n".join(lines)


STATUS_ORDER = ("completed", "diverged", "running", "interrupted", "unknown", "failed")


def runs_table(runs_df: pd.DataFrame, keys: list[str], target: float, out_dir: Path) -> list[str]:
    header = f"| status | run | variant | seed | final test acc | best test acc | steps to {target:.0%} | note |"
    rows = [header, "|---|---|---|---|---|---|---|---|"]
    rank = {s: i for i, s in enumerate(STATUS_ORDER)}
    ordered = runs_df.assign(
        _rank=runs_df["status"].map(lambda s: rank.get(s, len(rank)))
    ).sort_values("_rank", kind="stable")
    for _, run in ordered.iterrows():
        note = run["error"] if run["status"] == "failed" else ""
        if run["status"] == "diverged" and np.isfinite(run["diverged_at_step"]):
            note = f"diverged at step {run['diverged_at_step']:,.0f}"
        cells = [
            run["status"],
            f"`{_relative(run['run_dir'], out_dir)}`",
            variant_label(run, keys),
            format_value(run.get("seed")),
            _percent(run["final_test_acc"]),
            _percent(run["best_test_acc"]),
            "" if not np.isfinite(run["steps_to_target"]) else f"{run['steps_to_target']:,.0f}",
            _md_escape(str(note)),
        ]
        rows.append("| " + " | ".join(str(c) for c in cells) + " |")
    return rows


def _relative(path: str, start: Path) -> str:
    try:
        return os.path.relpath(path, start)
    except ValueError:  # another drive (Windows)
        return path


def _percent(value: float) -> str:
    return "" if not np.isfinite(value) else f"{100 * value:.2f}%"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def accuracy_fraction(text: str) -> float:
    """--target is a fraction of correct answers; 90 (a percentage) is a likely slip."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction in (0, 1]; 90% is 0.9")
    return value


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bnexp figures",
        description="Comparison figures from runs and sweeps: reads every run's .hydra config, "
        "meta.json and CSVs, works out which config keys vary, and facets the figures by them.",
    )
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="run directories, sweep directories or folders of them",
    )
    parser.add_argument(
        "--out", metavar="DIR", help="output folder (default: <first PATH>/figures)"
    )
    parser.add_argument(
        "--target",
        type=accuracy_fraction,
        default=0.9,
        metavar="ACC",
        help="test accuracy, as a fraction, for the steps_to_target column (default: 0.9)",
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as exit_:  # --help, or argparse's own usage error (already printed)
        return int(exit_.code or 0)
    paths = [Path(p) for p in args.paths]
    run_dirs = []
    for path in paths:
        found = find_runs([path])
        if not found:
            reason = "no such directory" if not path.exists() else "no runs found under"
            print(
                f"bnexp figures: error: {reason} {path} (a run directory holds meta.json or "
                ".hydra/config.yaml with metrics.csv)",
                file=sys.stderr,
            )
            return 2
        run_dirs += found
    run_dirs = find_runs(run_dirs)  # the same run reached through two paths counts once
    out_dir = make_output_dir("--out", Path(args.out) if args.out else paths[0] / "figures")
    runs, layers, metrics, warnings = collect(run_dirs, target=args.target)
    written = make_figures(
        runs, layers, metrics, out_dir, warnings=warnings, target=args.target, sources=args.paths
    )
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for path in written:
        print(path)
    counts = ", ".join(f"{n} {s}" for s, n in runs["status"].value_counts().items())
    keys = varying_keys(runs)
    print(
        f"bnexp figures: {count_text(len(runs), 'run')} ({counts}); varying: {', '.join(keys) or 'nothing'}; "
        f"wrote {len(written)} files to {out_dir} (start at {out_dir / 'index.md'})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
