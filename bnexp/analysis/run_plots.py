"""Per-run figures: what one run's CSVs show, drawn into `<run dir>/plots/` (plots=true).

Every `plot_*` function is pure: a DataFrame with the columns of docs/design.md §5 goes in,
a matplotlib Figure comes out; no file is touched. `save_run_plots(run_dir)` is the one
function with I/O: it reads the run (bnexp.rundir.load_run) and writes PNGs to
`<run_dir>/plots/`. Comparing runs is bnexp.analysis.sweep_figures' job (`bnexp figures`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from bnexp.analysis import style
from bnexp.analysis.captions import data_source_text, title_with_source
from bnexp.analysis.draw import (
    STEP_LABEL,
    decorate,
    divergence_handles,
    draw_percentile_lines,
    finite,
    label_outer_panels,
    mark_divergence,
    marker_for,
    percentile_legend_handles,
    positive,
)
from bnexp.analysis.tables import has_norm_params
from bnexp.describe import config_summary, is_missing
from bnexp.rundir import PLOTS_DIR, Run, load_run

# The figures save_run_plots writes into <run>/plots/ (file name without extension: title).
RUN_PLOT_TITLES: dict[str, str] = {
    "curves": "Loss and accuracy",
    "grad_profile": "Gradient magnitude per layer",
    "pre_bands": "Input to the nonlinearity over training",
    "act_range": "Activation range over training",
    "unit_percentiles": "One unit's input over training (BN paper Fig. 1b,c)",
    "norm_params": "The norm's gamma and beta over training",
}

RUN_PLOT_NAMES: tuple[str, ...] = tuple(RUN_PLOT_TITLES)


# --------------------------------------------------------------------------------------------
# Captions and layout
# --------------------------------------------------------------------------------------------


def run_caption(run: Run) -> list[str]:
    """Caption lines for a per-run figure: config, data, status."""
    status = f"status: {run.status}"
    if run.diverged_at_step is not None:
        status += f" at step {run.diverged_at_step:,.0f}"
    if run.status == "failed" and run.meta.get("error"):
        status += f" ({run.meta['error']})"
    steps = f", {len(run.metrics):,} logged steps" if not run.metrics.empty else ""
    return [
        config_summary(run.config),
        data_source_text(run.meta, run.config.get("data")),
        f"{status}{steps}; run: {run.path}",
    ]


def pick_steps(steps: Iterable[float], n: int = 4) -> list[float]:
    """n logged steps spread over training: first, evenly spaced middles, last."""
    unique = sorted(set(float(s) for s in steps if not is_missing(s)))
    if len(unique) <= n:
        return unique
    positions = sorted({round(i * (len(unique) - 1) / (n - 1)) for i in range(n)})
    return [unique[i] for i in positions]


def layer_indices(layers: pd.DataFrame) -> list[int]:
    return sorted(int(v) for v in layers["layer"].dropna().unique())


def layer_grid(n_layers: int, *, sharey: bool = True) -> tuple[Figure, list[Axes]]:
    """One small panel per hidden layer, five to a row (depth 20 -> 4 x 5)."""
    rows, cols = style.grid_shape(n_layers, max_cols=5)
    fig, axes = style.new_figure(
        rows, cols, panel_height=1.35 if rows > 1 else 2.1, sharex=True, sharey=sharey
    )
    style.hide_unused(axes, n_layers)
    return fig, list(axes.flat)[:n_layers]


# --------------------------------------------------------------------------------------------
# Per-run figures
# --------------------------------------------------------------------------------------------


# The y label of the loss panel, by the run's `loss` key.
LOSS_LABELS = {
    "cross_entropy": "cross-entropy loss (nats)",
    "mse": "mean squared error (target units²)",
}


@style.styled
def plot_curves(
    metrics: pd.DataFrame,
    *,
    diverged_at_step: float | None = None,
    title: str = RUN_PLOT_TITLES["curves"],
    caption: Sequence[str] = (),
    loss_label: str = "cross-entropy loss (nats)",
) -> Figure:
    """Train (per batch) and test loss and accuracy against the training step. A run without
    accuracy (a regression loss: the column is empty) gets its accuracy panel marked so."""
    fig, axes = style.new_figure(1, 2, panel_height=2.3, sharex=True)
    loss_ax, acc_ax = axes[0]
    train = metrics[metrics["train_loss"].notna() | metrics["train_acc"].notna()]
    test = metrics[metrics["test_acc"].notna() | metrics["test_loss"].notna()]
    if train.empty and test.empty:
        style.no_data(loss_ax)
        style.no_data(acc_ax)
        return decorate(fig, title, caption)

    train_style = dict(
        color=style.COLORS[0], linewidth=0.8, alpha=0.7, marker=marker_for(len(train))
    )
    test_style = dict(color=style.COLORS[1], linewidth=1.4, marker=marker_for(len(test)) or ".")
    loss_ax.plot(
        train["step"], finite(train["train_loss"]), label="train (current batch)", **train_style
    )
    loss_ax.plot(test["step"], finite(test["test_loss"]), label="test (eval mode)", **test_style)
    acc_ax.plot(
        train["step"], 100 * train["train_acc"], label="train (current batch)", **train_style
    )
    acc_ax.plot(test["step"], 100 * test["test_acc"], label="test (eval mode)", **test_style)

    loss_values = pd.concat([finite(train["train_loss"]), finite(test["test_loss"])])
    if style.spans_decades(loss_values, decades=1.0):
        loss_ax.set_yscale("log")
        style.plain_log_ticks(loss_ax)
    loss_ax.set_ylabel(loss_label)
    acc_ax.set_ylabel("accuracy (%)")
    acc_ax.set_ylim(top=min(100.5, acc_ax.get_ylim()[1]))
    if metrics["train_acc"].isna().all() and metrics["test_acc"].isna().all():
        style.no_data(acc_ax, "no accuracy: regression targets")
    for ax in (loss_ax, acc_ax):
        ax.set_xlabel(STEP_LABEL)
        style.format_steps(ax)
        mark_divergence(ax, diverged_at_step, label=ax is acc_ax)
    loss_ax.legend(loc="best")
    return decorate(fig, title, caption)


@style.styled
def plot_grad_profile(
    layers: pd.DataFrame,
    *,
    n_steps: int = 4,
    title: str = RUN_PLOT_TITLES["grad_profile"],
    caption: Sequence[str] = (),
) -> Figure:
    """Mean |dL/dW| and mean |dL/d act| against the layer index, one line per moment of
    training (log y: without BN these fall by orders of magnitude towards layer 1)."""
    fig, axes = style.new_figure(1, 2, panel_height=2.4)
    weight_ax, act_ax = axes[0]
    steps = pick_steps(layers["step"], n_steps)
    colors = style.sequential_colors(len(steps))
    panels = (
        (weight_ax, "grad_w_mean_abs", "mean |∂L/∂W| (weight gradient)"),
        (act_ax, "grad_act_mean_abs", "mean |∂L/∂a| (activation gradient)"),
    )
    for ax, column, ylabel in panels:
        values = positive(layers[column])
        if values.isna().all():
            style.no_data(ax, f"no {column}")
            continue
        for step, color in zip(steps, colors, strict=True):
            at_step = layers[layers["step"] == step].sort_values("layer")
            ax.plot(
                at_step["layer"],
                positive(at_step[column]),
                color=color,
                marker="o",
                label=f"step {step:,.0f}",
            )
        ax.set_yscale("log")
        ax.set_xlabel("hidden layer (1 = nearest the input)")
        ax.set_ylabel(ylabel)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if steps:
        weight_ax.legend(title="training step", loc="best")
    return decorate(fig, title, caption)


def empty_figure(title: str, caption: Sequence[str]) -> Figure:
    """A one-panel figure that says there is no data (a run that logged no layer rows)."""
    fig, axes = style.new_figure(1, 1, panel_height=2.0)
    style.no_data(axes[0, 0])
    return decorate(fig, title, caption)


def per_layer_figure(
    layers: pd.DataFrame,
    draw: Callable[[Axes, pd.DataFrame], None],
    *,
    handles: list[Any],
    ylabel: str,
    diverged_at_step: float | None,
    title: str,
    caption: Sequence[str],
) -> Figure:
    """One panel per hidden layer, steps on x; `draw(ax, rows)` fills a layer's panel."""
    layer_ids = layer_indices(layers)
    if not layer_ids:
        return empty_figure(title, caption)
    fig, panels = layer_grid(len(layer_ids))
    for ax, layer in zip(panels, layer_ids, strict=True):
        draw(ax, layers[layers["layer"] == layer])
        ax.set_title(f"layer {layer}", pad=2)
        style.format_steps(ax)
        mark_divergence(ax, diverged_at_step, label=False)
    style.add_legend_below(fig, handles + divergence_handles(diverged_at_step))
    label_outer_panels(fig, STEP_LABEL, ylabel)
    return decorate(fig, title, caption)


@style.styled
def plot_pre_bands(
    layers: pd.DataFrame,
    *,
    diverged_at_step: float | None = None,
    title: str = RUN_PLOT_TITLES["pre_bands"],
    caption: Sequence[str] = (),
) -> Figure:
    """One panel per layer: the batch's 15-85th percentile band and median of the
    pre-activation, with its min and max as thin lines."""
    color = style.COLORS[0]

    def draw(ax: Axes, rows: pd.DataFrame) -> None:
        marker = marker_for(len(rows))
        ax.fill_between(
            rows["step"],
            finite(rows["pre_p15"]),
            finite(rows["pre_p85"]),
            color=color,
            alpha=0.3,
            linewidth=0,
        )
        ax.plot(rows["step"], finite(rows["pre_p50"]), color=color, marker=marker)
        for column in ("pre_min", "pre_max"):
            ax.plot(
                rows["step"],
                finite(rows[column]),
                color=style.MUTED,
                linewidth=0.6,
                marker=marker,
                markersize=2,
            )

    handles = [
        Patch(color=color, alpha=0.3, label="15th–85th percentile"),
        Line2D([], [], color=color, label="median"),
        Line2D([], [], color=style.MUTED, linewidth=0.6, label="min and max"),
    ]
    return per_layer_figure(
        layers,
        draw,
        handles=handles,
        ylabel="pre-activation (input to the nonlinearity)",
        diverged_at_step=diverged_at_step,
        title=title,
        caption=caption,
    )


@style.styled
def plot_act_range(
    layers: pd.DataFrame,
    *,
    diverged_at_step: float | None = None,
    title: str = RUN_PLOT_TITLES["act_range"],
    caption: Sequence[str] = (),
) -> Figure:
    """One panel per layer: the batch's min-max range of the activation output and its mean,
    with the saturated fraction as a dotted line (0..1 on the same axis)."""
    color = style.COLORS[2]

    def draw(ax: Axes, rows: pd.DataFrame) -> None:
        marker = marker_for(len(rows))
        ax.fill_between(
            rows["step"],
            finite(rows["act_min"]),
            finite(rows["act_max"]),
            color=color,
            alpha=0.25,
            linewidth=0,
        )
        ax.plot(rows["step"], finite(rows["act_mean"]), color=color, marker=marker)
        ax.plot(
            rows["step"],
            finite(rows["act_sat_frac"]),
            color=style.COLORS[3],
            linestyle=":",
            linewidth=1.0,
            marker=marker,
            markersize=2,
        )

    handles = [
        Patch(color=color, alpha=0.25, label="min–max over the batch"),
        Line2D([], [], color=color, label="mean"),
        Line2D([], [], color=style.COLORS[3], linestyle=":", label="saturated fraction"),
    ]
    return per_layer_figure(
        layers,
        draw,
        handles=handles,
        ylabel="activation output",
        diverged_at_step=diverged_at_step,
        title=title,
        caption=caption,
    )


@style.styled
def plot_unit_percentiles(
    layers: pd.DataFrame,
    *,
    diverged_at_step: float | None = None,
    title: str = RUN_PLOT_TITLES["unit_percentiles"],
    caption: Sequence[str] = (),
) -> Figure:
    """One panel per layer: 15th, 50th and 85th percentile of one unit's pre-activation over
    a fixed probe batch. Without BN these drift; with BN they stay put."""
    color = style.COLORS[0]
    return per_layer_figure(
        layers,
        lambda ax, rows: draw_percentile_lines(ax, rows, color),
        handles=percentile_legend_handles(color),
        ylabel="tracked unit's pre-activation",
        diverged_at_step=diverged_at_step,
        title=title,
        caption=caption,
    )


@style.styled
def plot_norm_params(
    layers: pd.DataFrame,
    *,
    diverged_at_step: float | None = None,
    title: str = RUN_PLOT_TITLES["norm_params"],
    caption: Sequence[str] = (),
) -> Figure:
    """One panel per layer: mean of gamma (scale) and beta (shift) over the layer's units,
    with a band of +-1 std across units. At initialisation gamma = 1, beta = 0; where they
    move is what the network uses them for (e.g. to push a sigmoid out of its linear part)."""
    series = (("gamma", style.COLORS[0], "γ (scale)"), ("beta", style.COLORS[1], "β (shift)"))

    def draw(ax: Axes, rows: pd.DataFrame) -> None:
        marker = marker_for(len(rows))
        for name, color, _ in series:
            mean, spread = finite(rows[f"{name}_mean"]), finite(rows[f"{name}_std"])
            ax.fill_between(
                rows["step"], mean - spread, mean + spread, color=color, alpha=0.2, linewidth=0
            )
            ax.plot(rows["step"], mean, color=color, marker=marker)

    handles = [
        Line2D([], [], color=color, label=f"{label}: mean over units") for _, color, label in series
    ]
    handles.append(Patch(color=style.MUTED, alpha=0.3, label="± 1 std over units"))
    return per_layer_figure(
        layers,
        draw,
        handles=handles,
        ylabel="parameter value",
        diverged_at_step=diverged_at_step,
        title=title,
        caption=caption,
    )


def save_run_plots(run_dir: Path) -> list[Path]:
    """Write a run's own figures as PNGs into `<run_dir>/plots/` and return their paths.

    Figures whose data the run does not have (no metrics yet, no layer rows, no gamma/beta)
    are skipped.
    """
    run = load_run(run_dir)
    diverged_at = run.diverged_at_step
    builders: dict[str, Callable[..., Figure]] = {}
    if not run.metrics.empty:
        loss = (run.config or {}).get("loss", "cross_entropy")
        builders["curves"] = partial(
            plot_curves,
            run.metrics,
            diverged_at_step=diverged_at,
            loss_label=LOSS_LABELS.get(loss, loss),
        )
    if not run.layers.empty:
        builders["grad_profile"] = partial(plot_grad_profile, run.layers)
        for name, plot in (
            ("pre_bands", plot_pre_bands),
            ("act_range", plot_act_range),
            ("unit_percentiles", plot_unit_percentiles),
            ("norm_params", plot_norm_params),
        ):
            builders[name] = partial(plot, run.layers, diverged_at_step=diverged_at)
        if not has_norm_params(run.layers):
            del builders["norm_params"]
    caption = run_caption(run)
    written: list[Path] = []
    for name, build in builders.items():
        fig = build(title=title_with_source(RUN_PLOT_TITLES[name], run.meta), caption=caption)
        written += style.savefig(fig, Path(run_dir) / PLOTS_DIR / name, formats=("png",))
    return written
