"""The figures of each finding, drawn like the papers' own, from our numbers.

Each function takes a `FigureContext` (the finding's tables, its declaration, caption lines)
and returns a matplotlib Figure; no file is touched (the caller saves it). The look comes
from bnexp.analysis (style: fonts, Okabe-Ito colours, widths; draw: the seed band, the
percentile lines, title/legend/caption), the same as `bnexp figures`. The caller saves them
(bnexp.analysis.style.savefig at FIGURE_DPI).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from bnexp.analysis import style
from bnexp.analysis.draw import decorate, draw_mean_band, draw_percentile_lines
from bnexp.describe import dataset_title
from bnexp.reproduce import optimisation_figures
from bnexp.reproduce.claims import Missing, Tables, final_accuracy, select, t_interval

BN_COLOR, PLAIN_COLOR = style.COLORS[0], style.COLORS[1]
FIGURE_DPI = (
    150  # PNG: small files for the committed reference results; the PNG stays sharp in print
)


class Declaration(Protocol):
    """What a figure reads of its finding's declaration (bnexp.reproduce.findings.Finding)."""

    claims: list[dict[str, Any]]
    published_values: dict[str, Any]


@dataclass
class FigureContext:
    tables: Tables
    finding: Declaration
    caption: list[str] = field(default_factory=list)  # data source, scale, seeds


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _runs(ctx: FigureContext, where: dict) -> pd.DataFrame:
    runs = select(ctx.tables.runs, where)
    return runs[runs["status"].isin(["completed", "diverged"])]


def _series(ctx: FigureContext, run_id: str, column: str, frame: str = "metrics") -> pd.Series:
    table = ctx.tables.metrics if frame == "metrics" else ctx.tables.layers
    rows = table[table["run_id"] == run_id].dropna(subset=[column])
    return rows.groupby("step")[column].mean().sort_index()


def _layer_rows(ctx: FigureContext, run_id: str, layer: int | str = "last") -> pd.DataFrame:
    rows = ctx.tables.layers[ctx.tables.layers["run_id"] == run_id]
    if rows.empty:
        return rows
    index = int(rows["layer"].max()) if layer == "last" else int(layer)
    return rows[rows["layer"] == index].sort_values("step")


def _seed_curves(ctx: FigureContext, where: dict, column: str = "test_acc") -> pd.DataFrame:
    runs = _runs(ctx, where)
    curves = {row["seed"]: _series(ctx, row["run_id"], column) for _, row in runs.iterrows()}
    return pd.DataFrame(curves).sort_index() if curves else pd.DataFrame()


def _first_seed(runs: pd.DataFrame) -> pd.Series | None:
    if runs.empty:
        return None
    return runs.sort_values("seed").iloc[0]


def _percentile_panel(ax, rows: pd.DataFrame, color: Any) -> None:
    """The tracked unit's 15th/50th/85th percentiles over training, as in every bnexp figure."""
    if rows.empty:
        style.no_data(ax)
        return
    draw_percentile_lines(ax, rows, color)
    style.format_steps(ax)


def _dataset(ctx: FigureContext) -> str:
    """The dataset the finding's runs trained on ('MNIST', 'Fashion-MNIST'), for titles."""
    runs = ctx.tables.runs
    names = sorted({str(v) for v in runs["data"].dropna()}) if "data" in runs else []
    return " + ".join(dataset_title(n) for n in names) if names else "MNIST"


# --------------------------------------------------------------------------------------------
# fig1 and fig1-dist: the BN paper's Figure 1
# --------------------------------------------------------------------------------------------


@style.styled
def fig1(ctx: FigureContext) -> Figure:
    """Figure 1 (a, b, c): (a) test accuracy vs steps with and without BN; the tracked
    last-layer unit's 15/50/85th percentiles without BN (b) and with BN (c)."""
    fig, axes = style.new_figure(1, 3, panel_height=2.2)
    ax_a, ax_b, ax_c = axes[0]
    plain, bn = _seed_curves(ctx, {"norm": "none"}), _seed_curves(ctx, {"norm": "batch"})
    draw_mean_band(ax_a, plain, PLAIN_COLOR, label="Without BN", linestyle="--")
    draw_mean_band(ax_a, bn, BN_COLOR, label="With BN")
    _accuracy_axes(ax_a, [plain, bn])
    ax_a.set_title("(a) test accuracy")
    ax_a.set_xlabel("training steps")
    ax_a.set_ylabel("test accuracy")
    for ax, where, color, title in (
        (ax_b, {"norm": "none"}, PLAIN_COLOR, "(b) without BN"),
        (ax_c, {"norm": "batch"}, BN_COLOR, "(c) with BN"),
    ):
        run = _first_seed(_runs(ctx, where))
        _percentile_panel(
            ax, _layer_rows(ctx, run["run_id"]) if run is not None else pd.DataFrame(), color
        )
        ax.set_title(title)
        ax.set_xlabel("training steps")
    ax_b.set_ylabel("input to a last-layer sigmoid")
    _share_y(ax_b, ax_c)
    caption = [
        "(a) seed mean, band = min-max over seeds. (b, c) 15th, 50th (thick) and 85th percentiles of the input "
        "of unit 0 of the last hidden layer on a fixed probe batch of test images, lowest seed.",
        *ctx.caption,
    ]
    return decorate(
        fig,
        f"{_dataset(ctx)}, 3x100 sigmoid MLP: with and without batch normalization (cf. BN paper Fig. 1)",
        caption,
    )


def _accuracy_axes(ax, curves: list[pd.DataFrame]) -> None:
    """y from just below the lowest seed-mean accuracy after the first 10% of training to 1."""
    if all(c.empty for c in curves):
        style.no_data(ax)
        return
    late = pd.concat([c.mean(axis=1) for c in curves if not c.empty])
    late = late[late.index >= 0.1 * late.index.max()]
    low = max(0.0, float(late.min()) - 0.03) if not late.empty else 0.0
    ax.set_ylim(min(low, 0.9), 1.0)
    style.format_steps(ax)
    ax.legend(loc="lower right")


def _share_y(*axes) -> None:
    lows, highs = zip(*(ax.get_ylim() for ax in axes), strict=True)
    for ax in axes:
        ax.set_ylim(min(lows), max(highs))


@style.styled
def fig1_dist(ctx: FigureContext) -> Figure:
    """Figure 1 (b, c) for every seed: one row per seed, without BN left, with BN right."""
    plain_runs = _runs(ctx, {"norm": "none"}).sort_values("seed")
    bn_runs = _runs(ctx, {"norm": "batch"}).sort_values("seed")
    seeds = sorted(set(plain_runs["seed"]) | set(bn_runs["seed"]), key=float) or [None]
    fig, axes = style.new_figure(len(seeds), 2, width=5.2, panel_height=1.6, sharex=True)
    for row, seed in enumerate(seeds):
        for col, (runs, color, title) in enumerate(
            ((plain_runs, PLAIN_COLOR, "without BN"), (bn_runs, BN_COLOR, "with BN"))
        ):
            ax = axes[row][col]
            match = runs[runs["seed"] == seed] if seed is not None else runs.iloc[0:0]
            rows = _layer_rows(ctx, match.iloc[0]["run_id"]) if not match.empty else pd.DataFrame()
            _percentile_panel(ax, rows, color)
            ax.set_title(f"{'(b)' if col == 0 else '(c)'} {title}, seed {seed}")
        axes[row][0].set_ylabel("sigmoid input")
    for ax in axes[-1]:
        ax.set_xlabel("training steps")
    _share_y(*[ax for row in axes for ax in row])
    caption = [
        "15th, 50th (thick) and 85th percentiles of the input of unit 0 of the last hidden layer, fixed probe batch.",
        *ctx.caption,
    ]
    return decorate(fig, "Input distribution of a last-layer sigmoid over training", caption)


# --------------------------------------------------------------------------------------------
# gradient-flow
# --------------------------------------------------------------------------------------------


def _profile(ctx: FigureContext, where: dict, column: str, early: int) -> pd.DataFrame:
    """Per layer, per seed: `column` averaged over logged steps <= early."""
    runs = _runs(ctx, where)
    rows = ctx.tables.layers[ctx.tables.layers["run_id"].isin(runs["run_id"])]
    rows = rows[rows["step"] <= early]
    if rows.empty:
        return pd.DataFrame()
    return rows.groupby(["layer", "run_id"])[column].mean().unstack("run_id")


@style.styled
def gradient_flow(ctx: FigureContext) -> Figure:
    """Per hidden layer, early in training: (a) ||dL/dW|| with the published norms beside it,
    (b) mean |dL/dW|, (c) mean |dL/d(activation)|; with and without BN."""
    early = _claim_arg(ctx.finding, "early_steps", 100)
    fig, axes = style.new_figure(1, 3, panel_height=2.4)
    for ax, column, title in (
        (axes[0][0], "grad_w_norm", "(a) ||dL/dW|| per layer"),
        (axes[0][1], "grad_w_mean_abs", "(b) mean |dL/dW| per layer"),
        (axes[0][2], "grad_act_mean_abs", "(c) mean |dL/d(activation)| per layer"),
    ):
        drawn = False
        for where, color, label, ls in (
            ({"norm": "none"}, PLAIN_COLOR, "without BN (ours)", "--"),
            ({"norm": "batch"}, BN_COLOR, "with BN (ours)", "-"),
        ):
            prof = (
                _profile(ctx, where, column, early)
                if column in ctx.tables.layers
                else pd.DataFrame()
            )
            if prof.empty:
                continue
            drawn = True
            if prof.shape[1] > 1:
                ax.fill_between(
                    prof.index,
                    prof.min(axis=1),
                    prof.max(axis=1),
                    color=color,
                    alpha=0.18,
                    linewidth=0,
                )
            ax.plot(
                prof.index, prof.mean(axis=1), color=color, linestyle=ls, marker="o", label=label
            )
        if not drawn:
            style.no_data(ax)
            continue
        ax.set_yscale("log")
        ax.set_xlabel("hidden layer (1 = input side)")
        ax.set_title(title)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    published = ctx.finding.published_values
    ax = axes[0][0]
    for norm, color, label in (
        ("none", PLAIN_COLOR, "published, without BN"),
        ("batch", BN_COLOR, "published, with BN"),
    ):
        values = published.get(norm)
        if isinstance(values, dict) and values:
            layers = sorted(values, key=int)
            ax.plot(
                [int(k) for k in layers],
                [float(values[k]) for k in layers],
                linestyle=":",
                color=color,
                marker="x",
                markersize=5,
                label=label,
            )
    if ax.has_data():
        ax.set_yscale("log")
        ax.legend(loc="lower right", fontsize=5.5)
    for other in axes[0][1:]:
        if other.has_data():
            other.legend(loc="lower right", fontsize=5.5)
    caption = [
        f"Ours: averaged over the logged steps 0-{early} of each run (first iterations of epoch 1), then over "
        "seeds; band = min-max over seeds. ||dL/dW||: Frobenius norm. Published (a, crosses): the largest singular "
        "value of the batch-mean dW at epoch 1, iteration 10, hidden layers 1-10 (output layer left out), from "
        "happynear's CSDN blog (2015), printed by github.com/happynear/DeepLearnToolbox NN/nntrain.m; its loss and "
        "setup differ, so compare the slope across layers, not absolute values.",
        *ctx.caption,
    ]
    return decorate(
        fig, "10-layer sigmoid MLP: gradient magnitude by layer, early in training", caption
    )


def _claim_arg(finding: Declaration, key: str, default: Any) -> Any:
    for claim in finding.claims:
        if key in (claim.get("args") or {}):
            return claim["args"][key]
    return default


# --------------------------------------------------------------------------------------------
# affine
# --------------------------------------------------------------------------------------------


def _sigmoid(x: pd.Series | np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.asarray(x, dtype=float)))


def _final_rows(ctx: FigureContext, where: dict) -> pd.DataFrame:
    runs = _runs(ctx, where)
    rows = ctx.tables.layers[ctx.tables.layers["run_id"].isin(runs["run_id"])]
    if rows.empty:
        return rows
    last = rows[rows["step"] == rows.groupby("run_id")["step"].transform("max")]
    return last.groupby("layer").mean(numeric_only=True)


@style.styled
def affine(ctx: FigureContext) -> Figure:
    fig, axes = style.new_figure(1, 3, panel_height=2.3)
    ax_a, ax_b, ax_c = axes[0]
    variants = (
        ({"affine": False}, PLAIN_COLOR, "gamma/beta off", -0.15),
        ({"affine": True}, BN_COLOR, "gamma/beta on", 0.15),
    )
    for where, color, label, dx in variants:
        rows = _final_rows(ctx, where)
        if rows.empty:
            continue
        x = rows.index.to_numpy(dtype=float) + dx
        ax_a.vlines(x, rows["act_min"], rows["act_max"], color=color, linewidth=0.8)
        ax_a.vlines(
            x,
            _sigmoid(rows["pre_p15"]),
            _sigmoid(rows["pre_p85"]),
            color=color,
            linewidth=4,
            label=label,
        )
        ax_a.plot(
            x, _sigmoid(rows["pre_p50"]), "o", color="white", markeredgecolor=color, markersize=3
        )
        ax_b.bar(x, 100 * rows["act_sat_frac"], width=0.3, color=color, label=label)
    for bound in (0.089, 0.911):
        ax_a.axhline(bound, color="black", linestyle=":", linewidth=0.8)
    ax_a.set_ylim(0, 1)
    ax_a.set_title("(a) sigmoid outputs at the end")
    ax_a.set_ylabel("sigmoid output")
    ax_b.axhline(0.33, color="black", linestyle=":", linewidth=0.8, label="N(0,1) input: 0.33%")
    ax_b.set_title("(b) saturated: <0.05 or >0.95")
    ax_b.set_ylabel("% of outputs")
    for ax in (ax_a, ax_b):
        ax.set_xlabel("hidden layer")
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax_b.legend(loc="upper right")
    runs = _runs(ctx, {"affine": True})
    run = _first_seed(runs)
    if run is not None:
        rows = ctx.tables.layers[ctx.tables.layers["run_id"] == run["run_id"]]
        colors = style.sequential_colors(int(rows["layer"].max()) if not rows.empty else 1)
        for layer, group in rows.groupby("layer"):
            color = colors[int(layer) - 1]
            ax_c.plot(
                group["step"], group["gamma_mean"], color=color, label=f"layer {int(layer)} gamma"
            )
            ax_c.plot(
                group["step"],
                group["beta_mean"],
                color=color,
                linestyle="--",
                label=f"layer {int(layer)} beta",
            )
        style.format_steps(ax_c)
        ax_c.legend(loc="best", ncols=2, fontsize=5.5)
    else:
        style.no_data(ax_c)
    ax_c.set_title("(c) gamma (solid), beta (dashed)")
    ax_c.set_xlabel("training steps")
    caption = [
        "(a) thin line: min-max over the training batch; thick bar: 15th-85th percentile (sigmoid of the logged "
        "input percentiles); dot: median; dotted: [0.089, 0.911], the 1st-99th percentiles of sigmoid(N(0,1)); "
        "seed mean at the last logged step. (c) gamma/beta on, lowest seed.",
        *ctx.caption,
    ]
    return decorate(fig, "BN + sigmoid with and without gamma/beta", caption)


# --------------------------------------------------------------------------------------------
# placement
# --------------------------------------------------------------------------------------------


def _final_acc(ctx: FigureContext, run_id: str) -> float:
    """The claims' final accuracy (mean of the last 3 evaluations); NaN for a run without any."""
    try:
        return final_accuracy(ctx.tables, run_id)
    except Missing:
        return math.nan


@style.styled
def placement(ctx: FigureContext) -> Figure:
    fig, axes = style.new_figure(1, 2, width=6.0, panel_height=2.3)
    ax_a, ax_b = axes[0]
    acts = [a for a in ("sigmoid", "relu") if not _runs(ctx, {"act": a}).empty]
    ticks, labels = [], []
    for i, act in enumerate(acts):
        for j, (place, color) in enumerate((("pre", BN_COLOR), ("post", PLAIN_COLOR))):
            runs = _runs(ctx, {"act": act, "placement": place})
            values = [100 * _final_acc(ctx, r) for r in runs["run_id"]]
            x = i * 3 + j
            ticks.append(x)
            labels.append(f"{act}\n{place}")
            if values:
                ax_a.plot([x] * len(values), values, "o", color=color, alpha=0.6)
                ax_a.hlines(np.mean(values), x - 0.3, x + 0.3, color=color, linewidth=2)
        diffs = []
        pre = _runs(ctx, {"act": act, "placement": "pre"})
        post = _runs(ctx, {"act": act, "placement": "post"})
        for seed in sorted(set(pre["seed"]) & set(post["seed"]), key=float):
            a = _final_acc(ctx, post[post["seed"] == seed].iloc[0]["run_id"])
            b = _final_acc(ctx, pre[pre["seed"] == seed].iloc[0]["run_id"])
            diffs.append(100 * (a - b))
        if diffs:
            mean, low, high = t_interval(np.array(diffs))
            low, high = (low, high) if math.isfinite(low) else (min(diffs), max(diffs))
            ax_b.errorbar(
                [i], [mean], yerr=[[mean - low], [high - mean]], fmt="o", color="black", capsize=4
            )
            ax_b.plot([i] * len(diffs), diffs, ".", color=style.MUTED)
    ax_a.set_xticks(ticks, labels)
    ax_a.set_ylabel("final test accuracy (%)")
    ax_a.set_title("(a) per seed (dots) and mean (bar)")
    ax_b.axhspan(-3, 3, color="grey", alpha=0.12)
    ax_b.text(
        0.5,
        0.5,
        "published gaps:\nup to +-3 points",
        transform=ax_b.get_xaxis_transform(),
        ha="center",
        va="center",
        fontsize=6,
        color=style.MUTED,
    )
    ax_b.axhline(0, color="black", linewidth=0.6)
    ax_b.set_xticks(range(len(acts)), acts)
    ax_b.set_xlim(-0.7, len(acts) - 0.3)
    ax_b.set_ylabel("post - pre (points)")
    ax_b.set_title("(b) difference, mean and 95% interval")
    caption = [
        "Final accuracy = mean of the last 3 evaluations; difference paired by seed.",
        *ctx.caption,
    ]
    return decorate(fig, "BN before (pre) vs after (post) the nonlinearity", caption)


# --------------------------------------------------------------------------------------------
# learning-rate
# --------------------------------------------------------------------------------------------


@style.styled
def learning_rate(ctx: FigureContext) -> Figure:
    fig, axes = style.new_figure(1, 2, panel_height=2.4)
    ax_a, ax_b = axes[0]
    runs = ctx.tables.runs
    rates = sorted({float(v) for v in runs.get("optim.lr", pd.Series(dtype=float)).dropna()})
    colors = dict(zip(rates, style.sequential_colors(len(rates)), strict=False))  # no rates: none
    base = rates[0] if rates else None
    target = None
    if base is not None:
        ref = _runs(ctx, {"norm": "none", "optim.lr": base})
        ref = ref[ref["status"] == "completed"]
        if not ref.empty:
            target = float(np.mean([_final_acc(ctx, r) for r in ref["run_id"]]))
    handles, bars = [], []
    for norm, ls, name in (("batch", "-", "BN"), ("none", "--", "plain")):
        for rate in rates:
            variant = _runs(ctx, {"norm": norm, "optim.lr": rate})
            if variant.empty:
                continue
            label = f"{name} x{rate / base:g} (lr {rate:g})"
            handles.append(Line2D([], [], color=colors[rate], linestyle=ls, label=label))
            diverged = variant[variant["status"] == "diverged"]
            for _, run in variant.iterrows():
                curve = _series(ctx, run["run_id"], "test_acc")
                ax_a.plot(
                    curve.index,
                    curve.values,
                    color=colors[rate],
                    linestyle=ls,
                    alpha=0.85,
                    linewidth=1.0,
                )
                if run["status"] == "diverged":
                    step = run.get("diverged_at_step")
                    step = (
                        float(step)
                        if step is not None and not pd.isna(step)
                        else (curve.index.max() if len(curve) else 0)
                    )
                    y = curve.iloc[-1] if len(curve) else 0.1
                    ax_a.plot(
                        [step],
                        [y],
                        marker=style.DIVERGED_MARKER,
                        color=style.DIVERGED_COLOR,
                        markersize=7,
                    )
            reached = None
            if diverged.empty and target is not None:
                mean = _seed_curves(ctx, {"norm": norm, "optim.lr": rate}).dropna().mean(axis=1)
                hits = mean[mean >= target - 1e-12]
                reached = float(hits.index[0]) if len(hits) else None
            bars.append((label, reached, not diverged.empty, colors[rate], ls))
    if target is not None:
        ax_a.axhline(target, color="black", linestyle=":", linewidth=0.8)
        handles.append(
            Line2D(
                [],
                [],
                color="black",
                linestyle=":",
                label=f"target: plain x1 final ({100 * target:.1f}%)",
            )
        )
    handles.append(
        Line2D(
            [],
            [],
            marker=style.DIVERGED_MARKER,
            color=style.DIVERGED_COLOR,
            linestyle="",
            label="diverged",
        )
    )
    ax_a.set_ylim(0, 1)
    ax_a.set_xlabel("training steps")
    ax_a.set_ylabel("test accuracy")
    ax_a.set_title("(a) test accuracy (each seed)")
    style.format_steps(ax_a)
    if bars:
        top = max([b[1] for b in bars if b[1] is not None] or [1.0])
        for i, (_label, reached, diverged, color, ls) in enumerate(bars):
            if reached is not None:
                ax_b.barh(
                    i,
                    max(reached, top * 0.005),
                    color=color,
                    hatch="//" if ls == "--" else None,
                    edgecolor="white",
                )
                ax_b.text(reached, i, f" {reached:,.0f}", va="center", fontsize=6)
            else:
                ax_b.text(
                    0,
                    i,
                    " diverged" if diverged else " never reached",
                    va="center",
                    fontsize=6,
                    color=style.DIVERGED_COLOR,
                )
        ax_b.set_yticks(range(len(bars)), [b[0] for b in bars])
        ax_b.invert_yaxis()
        ax_b.set_xlim(0, top * 1.25)
    else:
        style.no_data(ax_b)
    ax_b.set_xlabel("steps to the target (seed-mean curve)")
    ax_b.set_title("(b) steps to plain x1's final accuracy")
    caption = ["Divergence: loss not finite (the run stops).", *ctx.caption]
    return decorate(
        fig, "Learning rate x1, x5, x30 with and without BN (10x100 ReLU MLP)", caption, handles
    )


# --------------------------------------------------------------------------------------------
# batch-size
# --------------------------------------------------------------------------------------------

NORM_LOOK = {
    "batch": (style.COLORS[0], "o", "BatchNorm"),
    "group": (style.COLORS[2], "s", "GroupNorm"),
    "layer": (style.COLORS[3], "^", "LayerNorm"),
    "none": (style.COLORS[1], "D", "no norm"),
}


@style.styled
def batch_size(ctx: FigureContext) -> Figure:
    fig, axes = style.new_figure(1, 2, width=6.5, panel_height=2.4)
    ax_a, ax_b = axes[0]
    runs = ctx.tables.runs
    drawn = []  # the labels of the norms that have runs (the title names only those)
    if not runs.empty and "batch_size" in runs and "norm" in runs:
        for norm, (color, marker, label) in NORM_LOOK.items():
            points = []
            for size in sorted({int(v) for v in runs["batch_size"].dropna()}):
                variant = _runs(ctx, {"norm": norm, "batch_size": size})
                variant = variant[variant["status"] == "completed"]
                errors = [100 * (1 - _final_acc(ctx, r)) for r in variant["run_id"]]
                if errors:
                    points.append((size, np.mean(errors), min(errors), max(errors)))
            if points:
                drawn.append(label)
                sizes, mean, low, high = map(np.array, zip(*points, strict=True))
                ax_a.errorbar(
                    sizes,
                    mean,
                    yerr=[mean - low, high - mean],
                    color=color,
                    marker=marker,
                    label=label,
                    capsize=2,
                )
    if drawn:
        ax_a.set_xscale("log", base=2)
        ax_a.invert_xaxis()
        ax_a.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax_a.legend(loc="best", ncols=2)
    else:
        style.no_data(ax_a, "no runs (CNN not available?)")
    ax_a.set_xlabel("images per batch")
    ax_a.set_ylabel("test error (%)")
    ax_a.set_title(f"(a) ours: small CNN on {_dataset(ctx)}")
    published = ctx.finding.published_values
    for norm in ("batch", "group"):
        values = published.get(norm)
        if values:
            color, marker, label = NORM_LOOK[norm]
            sizes = sorted(values, key=int, reverse=True)
            ax_b.plot(
                [int(s) for s in sizes],
                [float(values[s]) for s in sizes],
                color=color,
                marker=marker,
                label=label,
            )
    ax_b.set_xscale("log", base=2)
    ax_b.invert_xaxis()
    ax_b.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax_b.set_xlabel("images per batch (per GPU)")
    ax_b.set_ylabel("validation error (%)")
    ax_b.set_title("(b) published: ResNet-50, ImageNet (Wu & He)")
    ax_b.legend(loc="upper left")
    caption = [
        "Learning rate 0.1 x batch/256, same number of training images at every batch size; error = 1 - mean of the "
        "last 3 test accuracies; seed mean, bars = min-max over seeds.",
        *ctx.caption,
    ]
    shown = drawn or [label for _, _, label in NORM_LOOK.values()]
    names = ", ".join(shown[:-1]) + (" and " if len(shown) > 1 else "") + shown[-1]
    return decorate(
        fig, f"Test error vs batch size for {names.replace('BatchNorm', 'BN')}", caption
    )


# --------------------------------------------------------------------------------------------
# running-stats and scale-invariance (tables computed in-process)
# --------------------------------------------------------------------------------------------


@style.styled
def running_stats(ctx: FigureContext) -> Figure:
    fig, axes = style.new_figure(1, 1, width=4.0, panel_height=2.5)
    ax = axes[0][0]
    table = ctx.tables.extra.get("eval_batch_size")
    if table is None or table.empty:
        style.no_data(ax)
    else:
        for mode, color, label in (
            ("running", BN_COLOR, "running (population) statistics"),
            ("batch", PLAIN_COLOR, "statistics of the eval batch"),
        ):
            rows = table[table["mode"] == mode]
            by = rows.groupby("eval_batch_size")["accuracy"]
            mean = by.mean()
            ax.plot(mean.index, 100 * mean.values, marker="o", color=color, label=label)
            if rows["seed"].nunique() > 1:
                ax.fill_between(
                    mean.index, 100 * by.min(), 100 * by.max(), color=color, alpha=0.18, linewidth=0
                )
        ax.axhline(10, color="black", linestyle=":", linewidth=0.8, label="chance (10 classes)")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_ylim(0, 100)
        ax.legend(loc="lower right")
    ax.set_xlabel("evaluation batch size")
    ax.set_ylabel("test accuracy (%)")
    caption = [
        "Trained fig1 network with BN; test set shuffled once; seed mean (band = min-max).",
        *ctx.caption,
    ]
    return decorate(fig, "Inference with running vs batch statistics", caption)


@style.styled
def scale_invariance(ctx: FigureContext) -> Figure:
    """Relative error of the three scale-invariance checks vs the weight scale a: bnexp's formula
    without eps (identity checks, solid) and torch's BatchNorm1d with its eps (the claim,
    dashed), with the declared tolerances and where a·σ_min = sqrt(eps)."""
    fig, axes = style.new_figure(1, 1, width=4.6, panel_height=2.7)
    ax = axes[0][0]
    table = ctx.tables.extra.get("scale_invariance")
    handles: list[Any] = []
    if table is None or table.empty:
        style.no_data(ax)
    else:
        if "layer" not in table.columns:  # tables written before torch's layer was measured
            table = table.assign(layer="formula")
        looks = {
            "forward": style.COLORS[0],
            "input_jacobian": style.COLORS[2],
            "weight_gradient": style.COLORS[1],
        }
        series = sorted(
            {(layer, float(eps)) for layer, eps in zip(table["layer"], table["eps"], strict=True)}
        )
        styles = {key: ("-" if key[1] == 0 else "--") for key in series}
        for check, color in looks.items():
            for layer, eps in series:
                rows = table[
                    (table["check"] == check)
                    & (table["layer"] == layer)
                    & (table["eps"] == eps)
                    & ~np.isclose(table["a"], 1.0)  # the reference itself: error exactly 0
                ].sort_values("a")
                values = rows["rel_error"].clip(lower=1e-18)
                ax.plot(
                    rows["a"],
                    values,
                    color=color,
                    linestyle=styles[(layer, eps)],
                    marker="o",
                    markersize=2.5,
                )
            handles.append(Patch(color=color, label=check.replace("_", " ")))
        for layer, eps in series:
            name = "torch BatchNorm1d" if layer == "torch" else "bnexp formula"
            handles.append(
                Line2D(
                    [],
                    [],
                    color="black",
                    linestyle=styles[(layer, eps)],
                    label=f"{name}, eps = {eps:g}",
                )
            )
        for claim in ctx.finding.claims:
            if claim.get("measure") != "max_relative_error" or claim.get("retired"):
                continue
            args, bound = claim.get("args") or {}, float(claim["criterion"]["value"])
            identity = claim.get("kind") == "identity"
            low, high = args.get("a_min"), args.get("a_max")
            x0 = float(low) if low is not None else float(table["a"].min())
            x1 = float(high) if high is not None else float(table["a"].max())
            ax.hlines(bound, x0, x1, color="black", linestyle=":", linewidth=0.9)
            label = (
                f"identity checks <= {bound:g}"
                if identity
                else f"claim <= {bound:g} (a {x0:g}-{x1:g})"
            )
            ax.text(x0, bound * 1.6, label, fontsize=5.5, color=style.MUTED)
        if "a_sigma_min" in table.columns:
            torch_rows = table[table["eps"] > 0]
            if not torch_rows.empty:
                eps = float(torch_rows["eps"].iloc[0])
                ratio = torch_rows["a_sigma_min"] / torch_rows["a"]
                a_star = math.sqrt(eps) / float(ratio.iloc[0])
                ax.axvline(a_star, color=style.MUTED, linewidth=0.8, linestyle="-.")
                ax.text(
                    a_star * 1.15,
                    0.35,
                    "a·σ_min = sqrt(eps)",
                    transform=ax.get_xaxis_transform(),
                    fontsize=5.5,
                    color=style.MUTED,
                    rotation=90,
                    va="bottom",
                )
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("weight scale a (W -> aW)")
    ax.set_ylabel("relative error vs a = 1")
    caption = [
        "Relative error = max|difference| / max|reference| (reference: the same layer at a = 1, not drawn); "
        "float64; an exact 0 is drawn at 1e-18. σ_min: the smallest per-unit std of Wu over the batch. "
        "Paper: Ioffe & Szegedy 2015, Sec. 3.3.",
        *ctx.caption,
    ]
    return decorate(
        fig, "BN scale invariance: eps-free formula and torch's own layer", caption, handles
    )


# --------------------------------------------------------------------------------------------
# noisy-bn
# --------------------------------------------------------------------------------------------

NOISY_COLOR, NOISE_ONLY_COLOR = style.COLORS[2], style.COLORS[3]


@style.styled
def noisy_bn(ctx: FigureContext) -> Figure:
    """Santurkar et al.'s Figure 2 on the Figure 1 network: (a) training accuracy (what their
    Figure 2 plots) of BN, noisy BN, no BN and no BN + the same noise; (b-e) the tracked
    last-layer unit's 15/50/85th percentiles for each."""
    variants = (
        ({"norm": "none"}, PLAIN_COLOR, "Without BN", "--"),
        ({"norm": "batch"}, BN_COLOR, "With BN", "-"),
        ({"norm": "noisy"}, NOISY_COLOR, "With noisy BN", "-."),
        ({"norm": "noise_only"}, NOISE_ONLY_COLOR, "Noise without BN", ":"),
    )
    # The accuracy panel large on the left, the four variants' unit panels in a 2 x 2 grid.
    fig = Figure(figsize=(style.WIDTH_IN, 2 * 2.1 + 0.5), layout="constrained")
    panels = fig.subplot_mosaic([["a", "a", "b", "c"], ["a", "a", "d", "e"]])
    ax_acc, unit_axes = panels["a"], [panels[letter] for letter in "bcde"]
    curves = [_seed_curves(ctx, where, "train_acc") for where, *_ in variants]
    for curve, (_, color, label, ls) in zip(curves, variants):
        draw_mean_band(ax_acc, curve, color, label=label, linestyle=ls)
    _accuracy_axes(ax_acc, curves)
    ax_acc.set_title("(a) training accuracy")
    ax_acc.set_xlabel("training steps")
    ax_acc.set_ylabel("training accuracy")
    for ax, (where, color, label, _), letter in zip(unit_axes, variants, "bcde"):
        run = _first_seed(_runs(ctx, where))
        _percentile_panel(
            ax, _layer_rows(ctx, run["run_id"]) if run is not None else pd.DataFrame(), color
        )
        ax.set_title(f"({letter}) {label.lower().replace('bn', 'BN')}")
    for ax in unit_axes[2:]:
        ax.set_xlabel("training steps")
    for ax in unit_axes[::2]:
        ax.set_ylabel("last-layer sigmoid input")
    _share_y(*unit_axes)
    caption = [
        "Noise (Santurkar et al., Algorithm 1): every step, per unit, mu ~ U(-noise_shift, noise_shift) "
        "and sigma ~ U(1, noise_scale); per sample and unit, s ~ N(sigma, noise_scale_jitter^2) and "
        "m ~ U(mu -/+ noise_shift_jitter); output s * BN(x) + m (noise without BN: s * x + m). "
        "(a) training batches as trained on (noise included), mean over the log interval; seed mean, "
        "band = min-max over seeds. (b-e) percentiles of unit 0 of the last hidden layer on the probe "
        "batch (train mode: its own noise draws), lowest seed.",
        *ctx.caption,
    ]
    return decorate(
        fig,
        "BN with noise that makes layer inputs unstable still trains (cf. Santurkar et al. 2018, Fig. 2)",
        caption,
    )


# --------------------------------------------------------------------------------------------
# bn-backward
# --------------------------------------------------------------------------------------------


@style.styled
def bn_backward(ctx: FigureContext) -> Figure:
    """Largest relative error (forward, dx, dγ, dβ) of the two hand-derived BN backward passes
    against autograd on torch's BatchNorm1d, per batch size, affine on and off, with the
    declared tolerance and float64's machine epsilon."""
    fig, axes = style.new_figure(1, 1, width=4.2, panel_height=2.6)
    ax = axes[0][0]
    table = ctx.tables.extra.get("bn_backward")
    handles: list[Any] = []
    if table is None or table.empty:
        style.no_data(ax)
    else:
        forms = {
            "closed_form": ("-", "o", "closed form (chain rule)"),
            "compact": ("--", "s", "compact form"),
        }
        looks = {True: (BN_COLOR, "affine on"), False: (PLAIN_COLOR, "affine off")}
        for form, (linestyle, marker, form_label) in forms.items():
            for affine_on, (color, _) in looks.items():
                rows = table[
                    (table["form"] == form)
                    & (table["affine"].astype(str).str.lower() == str(affine_on).lower())
                ]
                rows = rows.sort_values("batch_size")
                if rows.empty:
                    continue
                ax.plot(
                    rows["batch_size"],
                    rows["max_error"].clip(lower=1e-18),
                    color=color,
                    linestyle=linestyle,
                    marker=marker,
                    markersize=3,
                )
            handles.append(
                Line2D([], [], color="black", linestyle=linestyle, marker=marker, label=form_label)
            )
        handles += [Patch(color=color, label=label) for color, label in looks.values()]
        for claim in ctx.finding.claims:
            if claim.get("measure") == "table_value" and not claim.get("retired"):
                bound = float(claim["criterion"]["value"])
                ax.axhline(bound, color="black", linestyle=":", linewidth=0.9)
                ax.text(
                    table["batch_size"].min(),
                    bound * 2,
                    f"declared tolerance {bound:g}",
                    fontsize=5.5,
                    color=style.MUTED,
                )
                break
        machine_eps = float(np.finfo(np.float64).eps)
        ax.axhline(machine_eps, color=style.MUTED, linestyle="-.", linewidth=0.8)
        ax.text(
            table["batch_size"].min(),
            machine_eps * 2,
            "float64 machine epsilon",
            fontsize=5.5,
            color=style.MUTED,
        )
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_yscale("log")
    ax.set_xlabel("batch size m")
    ax.set_ylabel("max relative error vs autograd")
    caption = [
        "Relative error = max|ours - torch's| / max|torch's|, the largest of forward, dx, dγ, dβ; float64, eps 1e-5, "
        "random x, γ, β, dy (7 features). Formula: Ioffe & Szegedy 2015, Sec. 3 (p. 4).",
        *ctx.caption,
    ]
    return decorate(fig, "BN backward by hand vs autograd (torch BatchNorm1d)", caption, handles)


# --------------------------------------------------------------------------------------------
# running-average
# --------------------------------------------------------------------------------------------


@style.styled
def running_average(ctx: FigureContext) -> Figure:
    """(a) test accuracy after T updates, eval mode (running statistics, solid) and batch
    statistics (dashed), per norm.momentum; (b) the gap batch - running per momentum, seed mean
    with the 95% interval; the step the claims read is marked."""
    fig, axes = style.new_figure(1, 2, panel_height=2.4)
    ax_a, ax_b = axes[0]
    table = ctx.tables.extra.get("momentum_lag")
    handles: list[Any] = []
    claim_steps = sorted(
        {
            float(where["step"])
            for claim in ctx.finding.claims
            for where in [(claim.get("args") or {}).get("where") or {}]
            if claim.get("measure") == "mode_accuracy_gap" and "step" in where
        }
    )
    if table is None or table.empty:
        style.no_data(ax_a)
        style.no_data(ax_b)
    else:
        momenta = sorted(table["momentum"].unique())
        colors = style.sequential_colors(len(momenta))
        for momentum, color in zip(momenta, colors, strict=True):
            rows = table[table["momentum"] == momentum]
            for mode, linestyle in (("running", "-"), ("batch", "--")):
                mean = rows[rows["mode"] == mode].groupby("step")["accuracy"].mean()
                ax_a.plot(
                    mean.index,
                    100 * mean.values,
                    color=color,
                    linestyle=linestyle,
                    marker="o",
                    markersize=2.5,
                )
            by_seed = rows.pivot_table(index=["step", "seed"], columns="mode", values="accuracy")
            gaps = (100 * (by_seed["batch"] - by_seed["running"])).groupby("step")
            stats = pd.DataFrame(
                [(step, *t_interval(g.to_numpy())) for step, g in gaps],
                columns=["step", "mean", "low", "high"],
            )
            ax_b.plot(stats["step"], stats["mean"], color=color, marker="o", markersize=2.5)
            finite = stats[np.isfinite(stats["low"]) & np.isfinite(stats["high"])]
            ax_b.fill_between(
                finite["step"], finite["low"], finite["high"], color=color, alpha=0.18, linewidth=0
            )
            handles.append(Patch(color=color, label=f"momentum {momentum:g}"))
        handles += [
            Line2D([], [], color="black", linestyle="-", label="eval mode (running statistics)"),
            Line2D([], [], color="black", linestyle="--", label="batch statistics (1,000 images)"),
        ]
        ax_b.axhline(0, color="black", linewidth=0.6)
        for ax in (ax_a, ax_b):
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            for step in claim_steps:
                ax.axvline(step, color=style.MUTED, linestyle=":", linewidth=0.9)
        ax_a.axhline(10, color="black", linestyle=":", linewidth=0.6)
        ax_a.set_ylim(0, 100)
    ax_a.set_title("(a) test accuracy after T updates")
    ax_a.set_xlabel("updates T")
    ax_a.set_ylabel("test accuracy (%)")
    ax_b.set_title("(b) batch minus running statistics")
    ax_b.set_xlabel("updates T")
    ax_b.set_ylabel("gap (points)")
    caption = [
        "fig1 network with BN (3 x 100 sigmoid); each T a separate run from the same seed; 1,000 test images in "
        "one batch; seed mean, band = 95% t-interval; dotted line: the step the claims read. "
        "Convention: running = (1 - momentum) running + momentum batch (PyTorch docs, BatchNorm1d).",
        *ctx.caption,
    ]
    return decorate(
        fig, "Running statistics lag early training when the momentum is small", caption, handles
    )


# --------------------------------------------------------------------------------------------
# linear-depth
# --------------------------------------------------------------------------------------------


def _gain_profile(ctx: FigureContext, where: dict, column: str, step: int) -> pd.Series:
    """Per hidden layer: `column` at `step`, geometric mean over the runs (seeds) of `where`."""
    runs = _runs(ctx, where)
    rows = ctx.tables.layers[
        ctx.tables.layers["run_id"].isin(runs["run_id"]) & (ctx.tables.layers["step"] == step)
    ]
    rows = rows[rows[column] > 0]
    return np.exp(np.log(rows[column]).groupby(rows["layer"]).mean()).sort_index()


@style.styled
def linear_depth(ctx: FigureContext) -> Figure:
    """Deep linear network of orthogonal gain g: (a) act_std and (b) grad_act_mean_abs per
    hidden layer at step 0 at the largest depth, without BN (solid) and with BN (dashed);
    (c) the hidden layers' ||dL/dW|| vs depth without BN, with the predicted g^D; (d) (b) at
    the 'early training' step of the claims."""
    fig, axes = style.new_figure(2, 2, panel_height=2.2)
    (ax_a, ax_b), (ax_c, ax_d) = axes
    runs = ctx.tables.runs
    handles: list[Any] = []
    early = max([int((c.get("args") or {}).get("step", 0)) for c in ctx.finding.claims] + [0])
    if runs.empty or "init_gain" not in runs or "depth" not in runs:
        for ax in (ax_a, ax_b, ax_c, ax_d):
            style.no_data(ax)
    else:
        gains = sorted(float(g) for g in runs["init_gain"].dropna().unique())
        depth = int(runs["depth"].max())
        colors = dict(zip(gains, style.sequential_colors(len(gains)), strict=True))
        for g in gains:
            for norm, linestyle in (("none", "-"), ("batch", "--")):
                where = {"init_gain": g, "depth": depth, "norm": norm}
                for ax, column, step in (
                    (ax_a, "act_std", 0),
                    (ax_b, "grad_act_mean_abs", 0),
                    (ax_d, "grad_act_mean_abs", early),
                ):
                    profile = _gain_profile(ctx, where, column, step)
                    if not profile.empty:
                        ax.plot(
                            profile.index,
                            profile.values,
                            color=colors[g],
                            linestyle=linestyle,
                            marker="o",
                            markersize=2,
                        )
            points = []
            for d in sorted(int(v) for v in runs["depth"].unique()):
                profile = _gain_profile(
                    ctx, {"init_gain": g, "depth": d, "norm": "none"}, "grad_w_norm", 0
                )
                profile = profile[profile.index >= 2]
                if not profile.empty:
                    points.append((d, float(np.exp(np.log(profile).mean()))))
            if points:
                depths, values = zip(*points, strict=True)
                ax_c.plot(depths, values, color=colors[g], marker="o", linestyle="none")
                d0, v0 = depths[0], values[0]
                grid = np.linspace(min(depths), max(depths), 20)
                ax_c.plot(grid, v0 * g ** (grid - d0), color=colors[g], linestyle=":", linewidth=1)
            handles.append(Patch(color=colors[g], label=f"g = {g:g}"))
        handles += [
            Line2D([], [], color="black", linestyle="-", label="without BN"),
            Line2D([], [], color="black", linestyle="--", label="with BN"),
            Line2D([], [], color="black", linestyle=":", label="predicted g^D (c)"),
        ]
        for ax in (ax_a, ax_b, ax_c, ax_d):
            ax.set_yscale("log")
        ax_a.set_title(f"(a) act_std, step 0, D = {depth}")
        ax_b.set_title(f"(b) mean |dL/dh|, step 0, D = {depth}")
        ax_d.set_title(f"(d) mean |dL/dh|, step {early}, D = {depth}")
    ax_c.set_title("(c) ||dL/dW_k|| (k >= 2), no BN")
    for ax in (ax_a, ax_b, ax_d):
        ax.set_xlabel("hidden layer")
    ax_c.set_xlabel("depth D (hidden layers)")
    caption = [
        "act=identity, width 100, every weight g times an orthogonal matrix (init=orthogonal), biases 0; "
        "geometric mean over seeds. Prediction: x g per layer forward, x g per layer towards the input, "
        "||dL/dW_k|| equal over k = 2..D and proportional to g^D. Yang et al. 2019 (Sec. 3.1.2): with BN "
        "gradients grow by only sqrt((B-2)/(B-3)) per layer. A run that diverged before step "
        f"{early} has no curve in (d).",
        *ctx.caption,
    ]
    return decorate(fig, "Deep linear network of gain g, without and with BN", caption, handles)


# --------------------------------------------------------------------------------------------
# init-scale
# --------------------------------------------------------------------------------------------


def _final_or_chance(ctx: FigureContext, run: pd.Series) -> float:
    """As the claims count it: the final accuracy, a diverged run at chance (10%)."""
    return 0.1 if run["status"] == "diverged" else _final_acc(ctx, run["run_id"])


@style.styled
def init_scale(ctx: FigureContext) -> Figure:
    """Final test accuracy vs init_std (N(0, init_std^2) weights), with and without BN, one
    panel per activation; PyTorch's default init as a dotted line of the same colour."""
    fig, axes = style.new_figure(1, 2, panel_height=2.4)
    handles: list[Any] = [
        Line2D([], [], color=BN_COLOR, marker="o", label="With BN"),
        Line2D([], [], color=PLAIN_COLOR, marker="s", linestyle="--", label="Without BN"),
        Line2D([], [], color="black", linestyle=":", label="PyTorch's default init"),
    ]
    for ax, act in zip(axes[0], ("sigmoid", "relu"), strict=True):
        ax.set_title(f"{act}")
        ax.set_xlabel("init_std (weights N(0, init_std²))")
        ax.set_ylabel("final test accuracy (%)")
        drawn = False
        for norm, color, marker, linestyle in (
            ("batch", BN_COLOR, "o", "-"),
            ("none", PLAIN_COLOR, "s", "--"),
        ):
            gaussian = _runs(ctx, {"norm": norm, "act": act, "init": "gaussian"})
            if not gaussian.empty:
                finals = gaussian.assign(
                    final=[_final_or_chance(ctx, r) for _, r in gaussian.iterrows()]
                )
                by_std = finals.groupby("init_std")["final"]
                mean = by_std.mean()
                ax.plot(
                    mean.index, 100 * mean.values, color=color, marker=marker, linestyle=linestyle
                )
                ax.fill_between(
                    mean.index,
                    100 * by_std.min(),
                    100 * by_std.max(),
                    color=color,
                    alpha=0.15,
                    linewidth=0,
                )
                drawn = True
            default = _runs(ctx, {"norm": norm, "act": act, "init": "default"})
            if not default.empty:
                value = np.mean([_final_or_chance(ctx, r) for _, r in default.iterrows()])
                ax.axhline(100 * value, color=color, linestyle=":", linewidth=1)
                drawn = True
        if not drawn:
            style.no_data(ax)
            continue
        ax.axhline(10, color=style.MUTED, linewidth=0.6)
        ax.set_xscale("log")
        ax.set_ylim(0, 100)
    caption = [
        "3 x 100 MLP, binary MNIST, SGD lr 0.1, batch 60; final = mean of the last 3 evaluations, a diverged run "
        "counted at chance (10%); seed mean, band = min-max. Claim source: Ioffe & Szegedy 2015, abstract and Sec. 3.3.",
        *ctx.caption,
    ]
    return decorate(
        fig, "Sensitivity of the final accuracy to the initial weight scale", caption, handles
    )


# --------------------------------------------------------------------------------------------
# explosion
# --------------------------------------------------------------------------------------------


@style.styled
def explosion(ctx: FigureContext) -> Figure:
    """Yang et al. 2019: (a) step-0 ||dL/dW|| per hidden layer at the largest depth, ReLU + BN
    per batch size and ReLU without BN, normalised to the top hidden layer, with the slope
    sqrt(pi/(pi-1)); (b) the fitted per-layer factor vs batch size (ReLU + BN, identity + BN,
    ReLU without BN; one marker per depth) with the theory's rates; (c) final test accuracy vs
    depth of the trained ReLU networks, with and without BN."""
    from bnexp.reproduce.layer_growth import (
        RELU_INFINITE_BATCH_NORM_RATE,
        fitted_layers,
        growth_factors,
        linear_norm_rate,
    )

    fig, axes = style.new_figure(1, 3, panel_height=2.4)
    ax_a, ax_b, ax_c = axes[0]
    step0 = ctx.tables.extra.get("step0_layers")
    trained = ctx.tables.extra.get("trainability")
    handles: list[Any] = []
    if step0 is None or step0.empty:
        style.no_data(ax_a)
        style.no_data(ax_b)
    else:
        depth = int(step0["depth"].max())
        batches = sorted(int(b) for b in step0["batch_size"].unique())
        colors = dict(zip(batches, style.sequential_colors(len(batches)), strict=True))
        for (act, norm, batch), rows in step0[step0["depth"] == depth].groupby(
            ["act", "norm", "batch_size"]
        ):
            if act != "relu" or (norm == "none" and batch != batches[len(batches) // 2]):
                continue
            rows = rows[rows["grad_w_norm"] > 0]
            profile = np.exp(np.log(rows["grad_w_norm"]).groupby(rows["layer"]).mean())
            if profile.empty:
                continue
            profile = profile / profile.iloc[-1]
            ax_a.plot(profile.index, profile.values, marker="o", markersize=1.5, linewidth=1,
                      color=colors[int(batch)] if norm == "batch" else PLAIN_COLOR,
                      linestyle="-" if norm == "batch" else "--")  # fmt: skip
        layers = np.arange(1, depth + 1)
        ax_a.plot(layers, RELU_INFINITE_BATCH_NORM_RATE ** (depth - layers), color="black",
                  linestyle=":", linewidth=1)  # fmt: skip
        ax_a.set_yscale("log")
        ax_a.set_title(f"(a) ||dL/dW_l|| / top, depth {depth}")
        ax_a.set_xlabel("hidden layer l")
        fit_rows = step0[fitted_layers(step0["layer"], step0["depth"], 2, 2)]
        markers = dict(zip(sorted(step0["depth"].unique()), "osD^v<>", strict=False))
        series = (("relu", "batch", BN_COLOR), ("identity", "batch", style.COLORS[2]),
                  ("relu", "none", PLAIN_COLOR))  # fmt: skip
        for act, norm, color in series:
            rows = fit_rows[(fit_rows["act"] == act) & (fit_rows["norm"] == norm)]
            rows = rows[rows["grad_w_norm"] > 0]
            if rows.empty:
                continue
            try:
                factors = growth_factors(rows, "grad_w_norm", first_layer=2, skip_top=2)
            except ValueError:
                continue
            for d, group in factors.groupby("depth"):
                ax_b.plot(group["batch_size"], group["factor"], color=color,
                          marker=markers.get(d, "o"), markersize=3.5, linestyle="-", linewidth=0.7)  # fmt: skip
            handles.append(
                Line2D([], [], color=color, label=f"{act}, {'BN' if norm == 'batch' else 'no BN'}")
            )
        grid = np.geomspace(max(4.5, min(batches)), max(batches), 50)
        ax_b.axhline(RELU_INFINITE_BATCH_NORM_RATE, color=BN_COLOR, linestyle=":", linewidth=1)
        ax_b.plot(grid, [linear_norm_rate(b) for b in grid], color=style.COLORS[2], linestyle=":",
                  linewidth=1)  # fmt: skip
        ax_b.axhline(1.0, color=PLAIN_COLOR, linestyle=":", linewidth=1)
        ax_b.set_xscale("log")
        ax_b.set_title("(b) factor per layer")
        ax_b.set_xlabel("batch size B")
        handles += [
            Line2D([], [], color=colors[b], label=f"(a) ReLU + BN, B = {b}") for b in batches
        ]
        handles += [
            Line2D(
                [],
                [],
                color="black",
                linestyle=":",
                label="theory: sqrt(pi/(pi-1)) = 1.211 (ReLU, B -> inf), sqrt((B-2)/(B-3)) (identity), 1",
            ),
        ]
        handles += [Line2D([], [], color="black", marker=m, linestyle="none", label=f"(b) depth {d}")
                    for d, m in markers.items()]  # fmt: skip
    if trained is None or trained.empty:
        style.no_data(ax_c)
    else:
        for norm, color, label in (("batch", BN_COLOR, "BN"), ("none", PLAIN_COLOR, "no BN")):
            rows = trained[trained["norm"] == norm]
            if rows.empty:
                continue
            mean = rows.groupby("depth")["final_test_acc"].mean()
            ax_c.plot(mean.index, 100 * mean.values, color=color, marker="o", markersize=3,
                      label=label)  # fmt: skip
        limit = ctx.finding.published_values.get("untrainable_beyond_depth")
        if limit is not None:
            ax_c.axvspan(float(limit), float(trained["depth"].max()), color=style.MUTED,
                         alpha=0.12, linewidth=0)  # fmt: skip
        ax_c.axhline(10, color="black", linestyle=":", linewidth=0.6)
        ax_c.set_ylim(0, 100)
        ax_c.legend(fontsize="small")
    ax_c.set_title("(c) trained, B = 32")
    ax_c.set_xlabel("depth (hidden layers)")
    ax_c.set_ylabel("test accuracy (%)")
    caption = [
        "Width 384, Kaiming init; (a), (b) at step 0 (the first training batch, initial weights). (b): growth per layer towards the input, exp(-slope) of "
        "log ||dL/dW_l|| over hidden layers 2..depth-2, geometric mean over seeds; dotted: Yang et al. 2019 "
        "(ICLR, Sec. 3.1.2), the norm's rate = square root of their squared-norm rate. (c): ReLU nets, final test accuracy; grey = deeper than "
        "the ~50 layers Yang et al. (Sec. 4) found untrainable on MNIST at any batch size; dotted = chance.",
        *ctx.caption,
    ]
    return decorate(
        fig, "BN's gradient explosion at initialisation, and the trainable depth", caption, handles
    )


# --------------------------------------------------------------------------------------------
# regularization
# --------------------------------------------------------------------------------------------

GAP_VARIANTS = (  # (norm, dropout, label, colour, hatch)
    ("none", 0.0, "plain", PLAIN_COLOR, ""),
    ("none", 0.4, "plain + dropout 0.4", PLAIN_COLOR, "//"),
    ("batch", 0.0, "BN", BN_COLOR, ""),
    ("batch", 0.4, "BN + dropout 0.4", BN_COLOR, "//"),
)


def _gap_bars(ax, table: pd.DataFrame, column: str, scale: float = 1.0) -> None:
    """One bar per variant: seed mean of `column` x scale, 95% t-interval, the seeds as dots."""
    for x, (norm, dropout, _label, color, hatch) in enumerate(GAP_VARIANTS):
        rows = select(table, {"norm": norm, "dropout": dropout})
        if rows.empty:
            continue
        values = scale * rows[column].to_numpy(dtype=float)
        mean, low, high = t_interval(values)
        ax.bar(x, mean, color=color, alpha=0.35 if hatch else 0.8, hatch=hatch, edgecolor=color)
        if np.isfinite(low) and np.isfinite(high):
            ax.errorbar(x, mean, yerr=[[mean - low], [high - mean]], color="black", capsize=3,
                        linewidth=0.9)  # fmt: skip
        ax.plot(np.full(len(values), x), values, "o", color="black", markersize=2.2)
    ax.set_xticks(range(len(GAP_VARIANTS)))
    ax.set_xticklabels([v[2].replace(" + ", "\n+ ") for v in GAP_VARIANTS], fontsize=7)


@style.styled
def regularization(ctx: FigureContext) -> Figure:
    """Per variant (norm x dropout): (a) train - test accuracy gap in points, (b) test - train
    cross-entropy, (c) train and test accuracy; eval mode, seed mean with the 95% interval."""
    fig, axes = style.new_figure(1, 3, panel_height=2.4)
    ax_a, ax_b, ax_c = axes[0]
    table = ctx.tables.extra.get("generalization")
    if table is None or table.empty:
        for ax in (ax_a, ax_b, ax_c):
            style.no_data(ax)
    else:
        _gap_bars(ax_a, table, "acc_gap_points")
        _gap_bars(ax_b, table, "loss_gap")
        for x, (norm, dropout, _label, color, _hatch) in enumerate(GAP_VARIANTS):
            rows = select(table, {"norm": norm, "dropout": dropout})
            for column, marker in (("train_acc", "^"), ("test_acc", "o")):
                if rows.empty:
                    continue
                mean, low, high = t_interval(100 * rows[column].to_numpy(dtype=float))
                yerr = [[mean - low], [high - mean]] if np.isfinite(low) else None
                ax_c.errorbar(x, mean, yerr=yerr, color=color, marker=marker, markersize=4,
                              capsize=2, linewidth=0.9)  # fmt: skip
        ax_c.set_xticks(range(len(GAP_VARIANTS)))
        ax_c.set_xticklabels([v[2].replace(" + ", "\n+ ") for v in GAP_VARIANTS], fontsize=7)
        ax_a.axhline(0, color="black", linewidth=0.6)
        ax_b.axhline(0, color="black", linewidth=0.6)
    ax_a.set_title("(a) train − test accuracy")
    ax_a.set_ylabel("gap (points)")
    ax_b.set_title("(b) test − train loss")
    ax_b.set_ylabel("cross-entropy gap (nats)")
    ax_c.set_title("(c) accuracy")
    ax_c.set_ylabel("accuracy (%)")
    handles = [
        Line2D([], [], color="black", marker="^", linestyle="", label="training images"),
        Line2D([], [], color="black", marker="o", linestyle="", label="test images"),
    ]
    caption = [
        f"{_dataset(ctx)}: 3 x 256 ReLU MLP, SGD lr 0.1, batch 60; after training, every training "
        "and test image classified in eval mode (running statistics, no unit dropped). Bar = seed "
        "mean, whiskers = 95% t-interval, dots = seeds. Claims: BN paper (Ioffe & Szegedy 2015), "
        "Sec. 3.4 and 4.2.1; it prints no number.",
        *ctx.caption,
    ]
    return decorate(fig, "BN as a regularizer, with and without dropout", caption, handles)


# --------------------------------------------------------------------------------------------
# renorm
# --------------------------------------------------------------------------------------------

RENORM_LOOK = {
    "batch": (style.COLORS[0], "o", "BatchNorm"),
    "renorm": (style.COLORS[4], "D", "batch renorm"),
    "group": (style.COLORS[2], "s", "GroupNorm"),
}


def _renorm_finals(ctx: FigureContext) -> pd.DataFrame:
    """One row per finished run: norm, batch_size, non_iid (bool), final test accuracy (%)."""
    runs = ctx.tables.runs
    if runs.empty or "norm" not in runs or "batch_size" not in runs:
        return pd.DataFrame(columns=["norm", "batch_size", "non_iid", "acc"])
    runs = runs[runs["status"] == "completed"]
    classes = runs.get("data.batch_classes", pd.Series(np.nan, index=runs.index))
    return pd.DataFrame(
        {
            "norm": runs["norm"].astype(str),
            "batch_size": runs["batch_size"].astype(int),
            "non_iid": classes.notna().to_numpy(),
            "acc": [100 * _final_acc(ctx, r) for r in runs["run_id"]],
        }
    )


@style.styled
def renorm(ctx: FigureContext) -> Figure:
    """Ioffe 2017 on an MLP: (a) final test accuracy vs i.i.d. batch size for BN, batch renorm
    and GroupNorm; (b) i.i.d. vs non-i.i.d. (2 classes per batch) at batch 32; (c) the paper's
    ImageNet numbers (Sec. 4.1-4.3), for comparison of the pattern, not of the values."""
    fig, axes = style.new_figure(1, 3, panel_height=2.4)
    ax_a, ax_b, ax_c = axes[0]
    finals = _renorm_finals(ctx)
    handles = [
        Line2D([], [], color=color, marker=marker, label=label)
        for color, marker, label in RENORM_LOOK.values()
    ]
    if finals.empty:
        style.no_data(ax_a)
        style.no_data(ax_b)
    else:
        iid = finals[~finals["non_iid"]]
        norms = [n for n in RENORM_LOOK if n in set(finals["norm"])]
        for norm in norms:
            color, marker, _ = RENORM_LOOK[norm]
            mean = iid[iid["norm"] == norm].groupby("batch_size")["acc"].mean()
            ax_a.plot(mean.index, mean.values, color=color, marker=marker, markersize=4)
        ax_a.set_xscale("log", base=2)
        ax_a.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        width = 0.38
        for i, norm in enumerate(norms):
            color, _, _ = RENORM_LOOK[norm]
            rows = finals[(finals["norm"] == norm) & (finals["batch_size"] == 32)]
            for offset, non_iid, hatch in ((-width / 2, False, None), (width / 2, True, "//")):
                values = rows[rows["non_iid"] == non_iid]["acc"]
                if not values.empty:
                    ax_b.bar(i + offset, values.mean(), width, color=color, hatch=hatch,
                             edgecolor="white" if hatch else color)  # fmt: skip
        ax_b.set_xticks(
            range(len(norms)), [{"batch": "BN", "group": "GN"}.get(n, n) for n in norms]
        )
        handles += [
            Patch(facecolor=style.MUTED, label="(b) i.i.d. batches of 32"),
            Patch(facecolor=style.MUTED, hatch="//", edgecolor="white",
                  label="(b) non-i.i.d.: 2 classes x 16"),
        ]  # fmt: skip
    ax_a.set_title("(a) i.i.d. batches")
    ax_a.set_xlabel("batch size (normalisation and gradient)")
    ax_a.set_ylabel("test accuracy (%)")
    ax_b.set_title("(b) batch 32, i.i.d. vs non-i.i.d.")
    ax_b.set_ylabel("test accuracy (%)")
    ax_b.set_ylim(0, 100)
    published = ctx.finding.published_values or {}
    labels, values, colors = [], [], []
    for group in ("micro", "non_iid"):
        for label, value in (published.get(group) or {}).items():
            labels.append(label)
            values.append(float(value))
            colors.append(RENORM_LOOK["renorm" if label.startswith("renorm") else "batch"][0])
    if values:
        ax_c.barh(range(len(values)), values, color=colors)
        ax_c.set_yticks(range(len(values)), labels)
        ax_c.invert_yaxis()
        for y, value in enumerate(values):
            ax_c.text(value + 0.3, y, f"{value:.1f}", va="center", fontsize="small")
        ax_c.set_xlim(60, 82)
    else:
        style.no_data(ax_c)
    ax_c.set_title("(c) published: Inception, ImageNet")
    ax_c.set_xlabel("top-1 accuracy (%)")
    caption = [
        "MLP 3 x 100 ReLU, norm before the ReLU; every run sees 84,000 images, lr 0.1 x B/32, SGD momentum 0.9; "
        "final test accuracy in inference mode (moving averages), seed mean. Batch renorm: the paper's schedule "
        "scaled to each run's length, alpha = 0.01. (c): Ioffe 2017, Sec. 4.1-4.3 (micro-batches of 4 inside "
        "batches of 32 there; here the whole batch is 2 or 4).",
        *ctx.caption,
    ]
    return decorate(fig, "Batch renormalization: small and non-i.i.d. batches", caption, handles)


# --------------------------------------------------------------------------------------------
# lenet
# --------------------------------------------------------------------------------------------


@style.styled
def lenet(ctx: FigureContext) -> Figure:
    """The slides' CNN: (a) test accuracy vs epochs (of the claims' `epoch_steps` updates), with
    and without BN, BN's epoch-1 accuracy dotted; (b) accuracy after epochs 1-3 beside the
    slides' published BN numbers."""
    fig, axes = style.new_figure(1, 2, panel_height=2.5)
    ax_a, ax_b = axes[0]
    epoch_steps = int(_claim_arg(ctx.finding, "epoch_steps", 1563))
    published_batch = ctx.finding.published_values.get("batch") or {}
    published = {int(k): float(v) for k, v in published_batch.items()}
    handles: list[Any] = []
    drawn, lowest_after_epoch_1 = False, math.inf
    for norm, color, label in (("batch", BN_COLOR, "BN"), ("none", PLAIN_COLOR, "no BN")):
        curves = _seed_curves(ctx, {"norm": norm})
        if curves.empty:
            continue
        drawn = True
        in_epochs = curves.set_axis(curves.index / epoch_steps, axis=0) * 100
        after = in_epochs[in_epochs.index >= 1].mean(axis=1)
        if not after.empty:
            lowest_after_epoch_1 = min(lowest_after_epoch_1, float(after.min()))
        draw_mean_band(ax_a, in_epochs, color, label=label)
        handles.append(Line2D([], [], color=color, label=f"{label} (ours)"))
        whole = curves[(curves.index > 0) & (curves.index % epoch_steps == 0)]
        epochs = [int(s // epoch_steps) for s in whole.index if s // epoch_steps <= 3]
        if epochs:
            means = [100 * whole.loc[e * epoch_steps].mean() for e in epochs]
            ax_b.plot(epochs, means, color=color, marker="o", markersize=4)
            for e, m in zip(epochs, means, strict=True):
                ax_b.annotate(f"{m:.2f}", (e, m), textcoords="offset points", xytext=(4, -9),
                              fontsize=6, color=color)  # fmt: skip
            if norm == "batch" and 1 in epochs:
                ax_a.axhline(means[0], color=color, linestyle=":", linewidth=0.9)
    if published:
        epochs = sorted(published)
        ax_b.plot(epochs, [published[e] for e in epochs], color="black", marker="s",
                  markersize=4, linestyle="--")  # fmt: skip
        for e in epochs:
            ax_b.annotate(f"{published[e]:.2f}", (e, published[e]), textcoords="offset points",
                          xytext=(4, 4), fontsize=6)  # fmt: skip
        label = "BN, the slides (MNIST)"
        handles.append(Line2D([], [], color="black", marker="s", linestyle="--", label=label))
    if not drawn:
        style.no_data(ax_a)
    elif lowest_after_epoch_1 < math.inf:  # zoom on the epochs the claims compare
        ax_a.set_ylim(max(0.0, lowest_after_epoch_1 - 2), 100)
    ax_a.set_title("(a) test accuracy")
    ax_a.set_xlabel(f"epochs ({epoch_steps:,} updates = the slides' epoch)")
    ax_a.set_ylabel("test accuracy (%)")
    ax_b.set_title("(b) after epochs 1-3")
    ax_b.set_xlabel("epoch")
    ax_b.set_xticks([1, 2, 3])
    ax_b.set_ylabel("test accuracy (%)")
    caption = [
        f"{_dataset(ctx)}: the slides' Keras CNN (model=lenet), batch 32, SGD lr 0.01, BN momentum 0.99 "
        "(Keras convention), eps 1e-3. Line = seed mean, band = seed range; dotted: BN after epoch 1. "
        "Published: the slides quoted in issue 12 (MNIST, 50,000 train / 10,000 validation images).",
        *ctx.caption,
    ]
    return decorate(fig, "The slides' CNN with and without BN", caption, handles)


FIGURES: dict[str, Callable[[FigureContext], Figure]] = {
    "fig1": fig1,
    "fig1_dist": fig1_dist,
    "gradient_flow": gradient_flow,
    "affine": affine,
    "placement": placement,
    "learning_rate": learning_rate,
    "batch_size": batch_size,
    "running_stats": running_stats,
    "scale_invariance": scale_invariance,
    "noisy_bn": noisy_bn,
    "bn_backward": bn_backward,
    "running_average": running_average,
    "linear_depth": linear_depth,
    "init_scale": init_scale,
    "explosion": explosion,
    "renorm": renorm,
    "regularization": regularization,
    "lenet": lenet,
    "ics": optimisation_figures.ics,
    "ics_linear": optimisation_figures.ics_linear,
    "smoothness": optimisation_figures.smoothness,
}
