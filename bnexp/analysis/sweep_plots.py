"""The figures of `bnexp figures`: one function per figure, each comparing a sweep's variants.

Every `plot_*_by_variant` / `plot_final_accuracy_vs` function is pure: a `Sweep` (bnexp.analysis
.variants) and the runs' tables go in, a matplotlib Figure comes out; no file is touched
(bnexp.analysis.sweep_figures saves them and writes index.md). Diverged runs are drawn as lines
that stop, with an x at the divergence step; failed runs are never drawn.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from bnexp.analysis import style
from bnexp.analysis.draw import (
    SPARSE_POINTS,
    STEP_LABEL,
    decorate,
    draw_mean_band,
    draw_percentile_lines,
    finite,
    label_outer_panels,
    mark_divergence,
    percentile_legend_handles,
)
from bnexp.analysis.intervals import mean_ci95
from bnexp.analysis.variants import (
    MAX_FACET_VALUES,
    Sweep,
    geometric_mean,
    group_by_keys,
    hashable,
    line_keys_of,
    plan_facets,
    runs_by_cell,
)
from bnexp.describe import format_value

AXIS_LABELS = {
    "batch_size": "batch size (examples per step)",
    "optim.lr": "learning rate (optim.lr)",
    "depth": "depth (hidden layers)",
    "width": "width (units or channels per layer)",
    "steps": "training steps",
    "init_std": "initial weight std (init_std)",
}

MAX_VARIANT_PANELS = 12  # figures with one panel per variant


def _panel_grid(
    n_rows: int, n_cols: int, *, panel_height: float = 1.9, **shared: Any
) -> tuple[Figure, Any]:
    # One or two panels need not fill a page width; wider, their lines would only stretch.
    width = {1: 4.8, 2: 6.2}.get(n_cols, style.WIDTH_IN)
    return style.new_figure(n_rows, n_cols, width=width, panel_height=panel_height, **shared)


def _variant_title(ax: Axes, sweep: Sweep, variant: str) -> None:
    """Panel titles name a variant; long ones wrap at a comma rather than run into the next
    panel, and a note such as "(1 of 2 diverged)" gets a line of its own."""
    text = _wrap(variant, 24)  # 4 panels across a 7-inch figure: about 24 characters each
    note = sweep.variant_suffix.get(variant, "").strip()
    ax.set_title(f"{text}\n{note}" if note else text, fontsize=7.5, pad=3)


def _wrap(label: str, width: int) -> str:
    """Break a long "key=value, key=value" label between its parts."""
    return "\n".join(textwrap.wrap(label, width, break_long_words=False)) or label


def _diverged_marker(ax: Axes, x: float, y: float | None, color: Any) -> None:
    """The x that ends a diverged run's line; at the bottom of the panel if it never had a
    value there (so it is still seen)."""
    kwargs = dict(
        marker=style.DIVERGED_MARKER,
        markersize=7,
        markeredgewidth=1.6,
        color=color,
        zorder=5,
        clip_on=False,
    )
    if y is None or not np.isfinite(y):
        ax.plot([x], [0.03], transform=ax.get_xaxis_transform(), **kwargs)
    else:
        ax.plot([x], [y], **kwargs)


def _diverged_handle(label: str = "diverged run (line stops there)") -> Line2D:
    return Line2D(
        [],
        [],
        color="black",
        linestyle="none",
        marker=style.DIVERGED_MARKER,
        markersize=6,
        markeredgewidth=1.4,
        label=label,
    )


@style.styled
def plot_test_accuracy_by_variant(
    sweep: Sweep, metrics: pd.DataFrame, *, title: str = "", caption: Sequence[str] = ()
) -> Figure:
    """Test accuracy against the step: one line per value of the first varying key (seed
    mean, band = range over seeds), panels by the next two keys."""
    facets = plan_facets(sweep, sweep.keys)
    n_rows, n_cols = facets.shape
    fig, axes = _panel_grid(
        n_rows, n_cols, panel_height=2.1 if n_rows > 1 else 2.5, sharex=True, sharey=True
    )
    tested = metrics.dropna(subset=["test_acc"]).merge(
        sweep.runs[["run_dir", "variant", "status"]], on="run_dir"
    )
    if tested.empty:
        style.no_data(axes[0, 0], "no test evaluations logged")
    line_keys = line_keys_of(sweep.keys)
    run_info = sweep.runs.set_index("run_dir")
    drawn: dict[str, Line2D] = {}
    for (r, c), cell_runs in runs_by_cell(sweep, facets):
        ax = axes[r, c]
        for label, line_runs in group_by_keys(cell_runs, line_keys):
            look = sweep.style_for(line_runs.iloc[0], line_keys)
            rows = tested[tested["run_dir"].isin(line_runs["run_dir"])]
            _draw_seed_mean(ax, rows[rows["status"] != "diverged"], "test_acc", look, scale=100)
            for run_dir, run_rows in rows[rows["status"] == "diverged"].groupby("run_dir"):
                _draw_diverged_run(ax, run_rows, run_info.loc[run_dir], "test_acc", look, scale=100)
            drawn.setdefault(label, _line_handle(look, label))
        style.format_steps(ax)
    facets.label_panels(axes)
    label_outer_panels(fig, STEP_LABEL, "test accuracy (%)")
    handles = list(drawn.values()) + [
        Patch(color=style.MUTED, alpha=0.25, label="range over seeds")
    ]
    if (sweep.runs["status"] == "diverged").any():
        handles.append(_diverged_handle())
    style.add_legend_below(fig, handles)
    return decorate(fig, title, [*caption, *facets.notes])


def _line_handle(look: dict[str, Any], label: str) -> Line2D:
    return Line2D([], [], color=look["color"], linestyle=look["linestyle"], label=label)


def _draw_seed_mean(
    ax: Axes, rows: pd.DataFrame, column: str, look: dict, *, scale: float = 1.0
) -> None:
    """Mean over seeds at each logged step, with the min-max range over seeds as a band."""
    if rows.empty:
        return
    by_step = rows.pivot_table(index="step", columns="run_dir", values=column, aggfunc="mean")
    marker = look["marker"] if len(by_step) <= SPARSE_POINTS else None
    draw_mean_band(ax, by_step * scale, look["color"], linestyle=look["linestyle"], marker=marker)


def _draw_diverged_run(
    ax: Axes, rows: pd.DataFrame, run: pd.Series, column: str, look: dict, *, scale: float = 1.0
) -> None:
    """A diverged seed on its own: a thin line that stops, and an x at the divergence step."""
    values = finite(rows[column]) * scale
    ax.plot(
        rows["step"],
        values,
        color=look["color"],
        linestyle=look["linestyle"],
        linewidth=0.8,
        alpha=0.8,
    )
    last = values.dropna()
    at_step = run.get("diverged_at_step")
    x = at_step if at_step is not None and np.isfinite(at_step) else rows["step"].max()
    _diverged_marker(ax, x, float(last.iloc[-1]) if not last.empty else None, look["color"])


def stage_steps(steps: Iterable[float]) -> dict[str, float]:
    """The logged steps that stand for early, middle and late training."""
    unique = sorted(set(float(s) for s in steps))
    if not unique:
        return {}
    middle_target = (unique[0] + unique[-1]) / 2
    middle = min(unique, key=lambda s: abs(s - middle_target))
    return {"early": unique[0], "middle": middle, "late": unique[-1]}


def _rows_near(rows: pd.DataFrame, step: float, tolerance: float) -> pd.DataFrame:
    """Each run's rows at its logged step nearest to `step`, if within `tolerance` (a run
    that diverged long before has none)."""
    picked = []
    for _, run_rows in rows.groupby("run_dir"):
        distance = (run_rows["step"] - step).abs()
        nearest = distance.min()
        if nearest <= tolerance:
            picked.append(run_rows[distance == nearest])
    return pd.concat(picked) if picked else rows.iloc[0:0]


STAGE_TITLES = {
    "early": "early: first logged step",
    "middle": "middle: step nearest half-way",
    "late": "late: last logged step",
}


@style.styled
def plot_grad_profile_by_variant(
    sweep: Sweep, layers: pd.DataFrame, *, title: str = "", caption: Sequence[str] = ()
) -> Figure:
    """Mean |dL/dW| against the layer at early, middle and late training (columns), one line
    per variant (geometric mean over seeds; log y). Beyond four variants, rows split them by
    the second varying key, so a panel keeps a few lines."""
    split = sweep.keys[1] if len(sweep.variants) > 4 and len(sweep.keys) > 1 else None
    row_values = sweep.values[split][:MAX_FACET_VALUES] if split else [None]
    line_keys = [k for k in sweep.keys if k != split]
    fig, axes = style.new_figure(
        len(row_values), 3, panel_height=2.1 if split else 2.4, sharex=True, sharey=True
    )
    layers = layers.merge(sweep.runs[["run_dir", "variant"]], on="run_dir")
    any_drawn = False
    handles: dict[str, Line2D] = {}
    for r, split_value in enumerate(row_values):
        runs = (
            sweep.runs
            if split is None
            else sweep.runs[sweep.runs[split].map(hashable) == split_value]
        )
        for label, line_runs in group_by_keys(runs, line_keys):
            look = sweep.style_for(line_runs.iloc[0], line_keys)
            rows = layers[layers["run_dir"].isin(line_runs["run_dir"])]
            for ax, profile in zip(axes[r], _stage_profiles(rows).values(), strict=False):
                if profile.empty:
                    continue
                ax.plot(
                    profile.index,
                    profile.values,
                    color=look["color"],
                    linestyle=look["linestyle"],
                    marker=look["marker"],
                    markersize=3,
                )
                any_drawn = True
            handles.setdefault(
                label,
                Line2D(
                    [],
                    [],
                    color=look["color"],
                    linestyle=look["linestyle"],
                    marker=look["marker"],
                    markersize=3,
                    label=label,
                ),
            )
        if split is not None:
            axes[r, 0].set_ylabel(f"{split}={format_value(split_value)}\nmean |∂L/∂W|")
    for ax, stage in zip(axes[0], STAGE_TITLES, strict=True):
        ax.set_title(STAGE_TITLES[stage], fontsize=7.5, pad=3)
    for ax in axes[-1]:
        ax.set_xlabel("hidden layer (1 = nearest the input)")
        ax.xaxis.get_major_locator().set_params(integer=True)
    if any_drawn:
        axes[0, 0].set_yscale("log")
    else:
        style.no_data(axes[0, 0], "no grad_w_mean_abs logged")
    if split is None:
        axes[0, 0].set_ylabel("mean |∂L/∂W| (weight gradient)")
    style.add_legend_below(fig, list(handles.values()))
    notes = (
        []
        if len(sweep.values.get(split, [])) <= MAX_FACET_VALUES
        else [f"rows show the first {MAX_FACET_VALUES} values of {split} only"]
    )
    return decorate(fig, title, [*caption, *notes])


def _stage_profiles(rows: pd.DataFrame) -> dict[str, pd.Series]:
    """Per stage, the per-layer geometric mean of |dL/dW| over the given runs."""
    steps = stage_steps(rows["step"])
    tolerance = 0.05 * (steps["late"] - steps["early"]) if steps else 0.0
    return {
        stage: _rows_near(rows, step, tolerance)
        .groupby("layer")["grad_w_mean_abs"]
        .apply(geometric_mean)
        .dropna()
        for stage, step in steps.items()
    }


def _variant_cap_note(sweep: Sweep, cap: int) -> list[str]:
    if len(sweep.variants) <= cap:
        return []
    return [f"{cap} of {len(sweep.variants)} variants are shown; the others are in runs.csv"]


@style.styled
def plot_norm_params_by_variant(
    sweep: Sweep, layers: pd.DataFrame, *, title: str = "", caption: Sequence[str] = ()
) -> Figure:
    """At each run's last logged step, per layer: mean gamma (left) and mean beta (right) over
    the layer's units, one line per variant that has them (mean over seeds). Gamma = 1 and
    beta = 0 at initialisation; the distance from there is what the network made of them."""
    fig, axes = style.new_figure(1, 2, panel_height=2.4, sharex=True)
    gamma_ax, beta_ax = axes[0]
    final = _last_step_rows(layers).merge(sweep.runs[["run_dir", "variant"]], on="run_dir")
    handles: dict[str, Line2D] = {}
    for label, runs in group_by_keys(sweep.runs, sweep.keys):
        look = sweep.style_for(runs.iloc[0], sweep.keys)
        rows = final[final["run_dir"].isin(runs["run_dir"])]
        by_layer = rows.groupby("layer")[["gamma_mean", "beta_mean"]].mean().dropna()
        if by_layer.empty:
            continue  # no norm, or affine=false: nothing to draw
        for ax, column in ((gamma_ax, "gamma_mean"), (beta_ax, "beta_mean")):
            ax.plot(
                by_layer.index,
                by_layer[column],
                color=look["color"],
                linestyle=look["linestyle"],
                marker=look["marker"],
                markersize=3,
            )
        handles[label] = Line2D(
            [],
            [],
            color=look["color"],
            linestyle=look["linestyle"],
            marker=look["marker"],
            markersize=3,
            label=label,
        )
    for ax, reference, ylabel in (
        (gamma_ax, 1.0, "γ: mean over units"),
        (beta_ax, 0.0, "β: mean over units"),
    ):
        ax.axhline(reference, color=style.MUTED, linewidth=0.8, linestyle=":")
        ax.set_xlabel("hidden layer (1 = nearest the input)")
        ax.set_ylabel(ylabel)
        ax.xaxis.get_major_locator().set_params(integer=True)
    style.add_legend_below(fig, list(handles.values()))
    return decorate(fig, title, caption)


def _last_step_rows(layers: pd.DataFrame) -> pd.DataFrame:
    """Every run's rows at its own last logged step (a diverged run: just before it stopped)."""
    last = layers.groupby("run_dir")["step"].transform("max")
    return layers[layers["step"] == last]


def _variant_panels(
    sweep: Sweep, rows_per_variant: int = 1, **shared: Any
) -> tuple[Figure, list[list[Axes]], list[str]]:
    """A grid with `rows_per_variant` stacked panels per variant, four variants to a row, at
    most MAX_VARIANT_PANELS variants: (figure, the panel stacks, the variants they show)."""
    variants = sweep.panel_order()[:MAX_VARIANT_PANELS]
    grid_rows, cols = style.grid_shape(len(variants), max_cols=4)
    n_rows = grid_rows * rows_per_variant
    height = 2.2 if n_rows == 1 else 1.5 if n_rows <= 4 else 1.25
    fig, axes = _panel_grid(n_rows, cols, panel_height=height, **shared)
    panels = []
    for i in range(grid_rows * cols):
        r, c = divmod(i, cols)
        stack = [axes[r * rows_per_variant + k, c] for k in range(rows_per_variant)]
        if i < len(variants):
            panels.append(stack)
        else:
            for ax in stack:
                ax.set_visible(False)
    return fig, panels, variants


@style.styled
def plot_activation_ranges_by_variant(
    sweep: Sweep, layers: pd.DataFrame, *, title: str = "", caption: Sequence[str] = ()
) -> Figure:
    """Per variant, against the layer at the end of training: the input of the nonlinearity
    (min-max and 15-85th percentile bands, median) above its output (min-max band, mean)."""
    fig, panels, variants = _variant_panels(sweep, rows_per_variant=2)
    final = _last_step_rows(layers).merge(sweep.runs[["run_dir", "variant"]], on="run_dir")
    columns = [
        "pre_min",
        "pre_max",
        "pre_p15",
        "pre_p50",
        "pre_p85",
        "act_min",
        "act_max",
        "act_mean",
    ]
    for (pre_ax, act_ax), variant in zip(panels, variants, strict=True):
        color = sweep.style_of(variant)["color"]
        by_layer = finite(final[final["variant"] == variant].groupby("layer")[columns].mean())
        _variant_title(pre_ax, sweep, variant)
        if by_layer.empty:
            style.no_data(pre_ax)
            style.no_data(act_ax)
            continue
        _band(pre_ax, by_layer["pre_min"], by_layer["pre_max"], color, alpha=0.15)
        _band(pre_ax, by_layer["pre_p15"], by_layer["pre_p85"], color, alpha=0.4)
        _band(act_ax, by_layer["act_min"], by_layer["act_max"], color, alpha=0.25)
        marker = "o" if len(by_layer) == 1 else None
        pre_ax.plot(by_layer.index, by_layer["pre_p50"], color=color, marker=marker)
        act_ax.plot(by_layer.index, by_layer["act_mean"], color=color, marker=marker)
        for ax in (pre_ax, act_ax):
            ax.xaxis.get_major_locator().set_params(integer=True)
    _share([stack[0] for stack in panels])
    _share([stack[1] for stack in panels])
    n_cols = style.grid_shape(len(panels), max_cols=4)[1]
    for i, (pre_ax, act_ax) in enumerate(panels):
        pre_ax.tick_params(labelbottom=False)
        act_ax.set_xlabel("hidden layer")
        if i % n_cols == 0:
            pre_ax.set_ylabel("pre-activation")
            act_ax.set_ylabel("activation")
    handles = [
        Patch(color=style.MUTED, alpha=0.15, label="min–max over the batch"),
        Patch(color=style.MUTED, alpha=0.45, label="15th–85th percentile (pre-activation)"),
        Line2D([], [], color=style.MUTED, label="median (pre) / mean (activation)"),
    ]
    style.add_legend_below(fig, handles)
    return decorate(fig, title, [*caption, *_variant_cap_note(sweep, MAX_VARIANT_PANELS)])


def _band(ax: Axes, low: pd.Series, high: pd.Series, color: Any, *, alpha: float) -> None:
    """A shaded band between two per-layer series; over a single layer (depth 1) a band has
    no width, so it is drawn as a thick vertical bar instead."""
    if len(low) == 1:
        ax.vlines(low.index, low, high, color=color, alpha=alpha, linewidth=8)
    else:
        ax.fill_between(low.index, low, high, color=color, alpha=alpha, linewidth=0)


def _share(axes: list[Axes]) -> None:
    """Same y range in every panel of a kind, so that variants compare at a glance."""
    for ax in axes[1:]:
        ax.sharey(axes[0])
    if axes:
        axes[0].autoscale_view(scalex=False)  # now over the data of every shared panel
    for ax in axes[1:]:
        if ax.get_subplotspec().colspan.start != 0:
            ax.tick_params(labelleft=False)


@style.styled
def plot_unit_percentiles_by_variant(
    sweep: Sweep, layers: pd.DataFrame, *, title: str = "", caption: Sequence[str] = ()
) -> Figure:
    """The BN paper's Fig. 1b,c per variant: the tracked unit of the last hidden layer, its
    15th/50th/85th percentile over the probe batch during training, lowest seed."""
    fig, panels, variants = _variant_panels(sweep, sharex=True)
    axes = [p[0] for p in panels]
    seeds_used = {}
    divergence_shown = False
    for ax, variant in zip(axes, variants, strict=True):
        look = sweep.style_of(variant)
        run = _lowest_seed_run(sweep.runs[sweep.runs["variant"] == variant])
        rows = layers[layers["run_dir"] == run["run_dir"]]
        last_layer = rows["layer"].max()
        rows = rows[rows["layer"] == last_layer]
        _variant_title(ax, sweep, variant)
        if rows[["unit_p15", "unit_p50", "unit_p85"]].isna().all().all():
            style.no_data(ax, "no unit percentiles logged")
            continue
        draw_percentile_lines(ax, rows, look["color"])
        if run["status"] == "diverged":
            mark_divergence(ax, run["diverged_at_step"], label=False)
            divergence_shown = True
        seeds_used[variant] = run["seed"]
        style.format_steps(ax)
    _share(axes)
    label_outer_panels(fig, STEP_LABEL, "tracked unit's pre-activation")
    handles = percentile_legend_handles(style.MUTED)
    if divergence_shown:
        handles.append(
            Line2D([], [], color=style.DIVERGED_COLOR, linestyle="--", label="divergence step")
        )
    style.add_legend_below(fig, handles)
    seed_text = ", ".join(sorted({format_value(s) for s in seeds_used.values()}))
    notes = [
        f"one network per variant (seed {seed_text}): a unit's percentiles are not averaged over "
        "seeds, since different seeds learn different units; last hidden layer, fixed probe batch",
        *_variant_cap_note(sweep, MAX_VARIANT_PANELS),
    ]
    return decorate(fig, title, [*caption, *notes])


def _lowest_seed_run(runs: pd.DataFrame) -> pd.Series:
    """The run shown for a variant: a finished one if there is any, then the lowest seed."""
    finished_first = runs.assign(_unfinished=runs["status"] != "completed")
    return finished_first.sort_values(["_unfinished", "seed"], na_position="last").iloc[0]


@style.styled
def plot_saturation_by_variant(
    sweep: Sweep, layers: pd.DataFrame, *, title: str = "", caption: Sequence[str] = ()
) -> Figure:
    """Per variant, a layers x steps heatmap of the saturated fraction of activations (seed
    mean). Sigmoid: output < 0.05 or > 0.95; tanh: |a| > 0.97; ReLU: a == 0 (dead)."""
    fig, panels, variants = _variant_panels(sweep, sharex=True)  # a run that stops shows it
    axes = [p[0] for p in panels]
    layers = layers.merge(sweep.runs[["run_dir", "variant"]], on="run_dir")
    mesh = None
    divergence_shown = False
    for ax, variant in zip(axes, variants, strict=True):
        _variant_title(ax, sweep, variant)
        grid = layers[layers["variant"] == variant].pivot_table(
            index="layer", columns="step", values="act_sat_frac", aggfunc="mean"
        )
        if grid.empty:
            style.no_data(ax, "no act_sat_frac logged")
            continue
        steps, layer_ids = grid.columns.to_numpy(float), grid.index.to_numpy(float)
        mesh = ax.pcolormesh(
            _edges(steps),
            _edges(layer_ids),
            finite(grid).to_numpy(),
            vmin=0,
            vmax=1,
            cmap=style.SEQUENTIAL_CMAP,
            rasterized=True,
            shading="flat",
        )
        ax.grid(False)
        ax.yaxis.get_major_locator().set_params(integer=True)
        style.format_steps(ax)
        runs = sweep.runs[sweep.runs["variant"] == variant]
        for step in runs.loc[runs["status"] == "diverged", "diverged_at_step"].dropna():
            mark_divergence(ax, step, label=False)
            divergence_shown = True
    label_outer_panels(fig, STEP_LABEL, "hidden layer (1 = nearest the input)")
    if divergence_shown:
        handle = Line2D([], [], color=style.DIVERGED_COLOR, linestyle="--", label="a seed diverged")
        style.add_legend_below(fig, [handle])
    if mesh is not None:
        fig.colorbar(
            mesh, ax=axes, label="saturated fraction of activations", shrink=0.9, aspect=30
        )
    return decorate(fig, title, [*caption, *_variant_cap_note(sweep, MAX_VARIANT_PANELS)])


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges around logged positions (uneven spacing allowed; one position -> width 1)."""
    if len(centres) == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    middles = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[2 * centres[0] - middles[0]], middles, [2 * centres[-1] - middles[-1]]])


@style.styled
def plot_final_accuracy_by_variant(
    sweep: Sweep, *, title: str = "", caption: Sequence[str] = ()
) -> Figure:
    """Final test accuracy of every variant: seeds as dots, mean with 95% t-interval."""
    variants = sweep.variants[:40]
    height = 0.9 + 0.24 * len(variants)
    fig, axes = style.new_figure(1, 1, width=style.WIDTH_IN * 0.8, panel_height=height)
    ax = axes[0, 0]
    for y, variant in enumerate(variants):
        runs = sweep.runs[sweep.runs["variant"] == variant]
        look = sweep.style_of(variant)
        healthy = runs[runs["status"] != "diverged"]
        mean, half, _n = mean_ci95(healthy["final_test_acc"] * 100)
        # Seeds sit just below their variant's mean, spread a little, so none hides another.
        offsets = 0.22 + 0.08 * np.linspace(-1, 1, len(healthy)) if len(healthy) > 1 else 0.22
        ax.scatter(
            healthy["final_test_acc"] * 100,
            y + offsets * np.ones(len(healthy)),
            s=12,
            color=look["color"],
            alpha=0.5,
            linewidths=0,
            zorder=3,
        )
        if np.isfinite(mean):
            ax.errorbar(
                [mean],
                [y],
                xerr=[[half if np.isfinite(half) else 0]],
                color=look["color"],
                marker="D",
                markersize=4,
                capsize=3,
                zorder=4,
            )
        for _, run in runs[runs["status"] == "diverged"].iterrows():
            if np.isfinite(run["final_test_acc"]):
                ax.plot(
                    [run["final_test_acc"] * 100],
                    [y],
                    marker=style.DIVERGED_MARKER,
                    color=look["color"],
                    markersize=7,
                    markeredgewidth=1.6,
                    linestyle="none",
                    zorder=5,
                )
    ax.set_yticks(range(len(variants)), [_wrap(sweep.label_of(v), 45) for v in variants])
    ax.set_ylim(len(variants) - 0.5, -0.5)
    ax.set_xlabel("final test accuracy (%)")
    ax.grid(axis="y", visible=False)
    handles = [
        Line2D(
            [], [], color=style.MUTED, marker="o", alpha=0.5, linestyle="none", label="one seed"
        ),
        Line2D([], [], color=style.MUTED, marker="D", label="mean ± 95% t-interval"),
    ]
    if (sweep.runs["status"] == "diverged").any():
        handles.append(
            Line2D(
                [],
                [],
                color=style.MUTED,
                marker=style.DIVERGED_MARKER,
                linestyle="none",
                label="diverged seed (last accuracy; not in the mean)",
            )
        )
    style.add_legend_below(fig, handles)
    return decorate(fig, title, [*caption, *_variant_cap_note(sweep, 40)])


@style.styled
def plot_final_accuracy_vs(
    sweep: Sweep, axis_key: str, *, title: str = "", caption: Sequence[str] = ()
) -> Figure:
    """Final test accuracy against one numeric key: mean ± 95% t-interval over seeds, one
    line per value of the other keys (panels by the second and third of them)."""
    others = [k for k in sweep.keys if k != axis_key]
    facets = plan_facets(sweep, others)
    line_keys = line_keys_of(others)
    n_rows, n_cols = facets.shape
    fig, axes = _panel_grid(
        n_rows, n_cols, panel_height=2.1 if n_rows > 1 else 2.5, sharex=True, sharey=True
    )
    x_values = sweep.values[axis_key]
    handles: dict[str, Line2D] = {}
    for (r, c), cell_runs in runs_by_cell(sweep, facets):
        ax = axes[r, c]
        for label, line_runs in group_by_keys(cell_runs, line_keys):
            look = sweep.style_for(line_runs.iloc[0], line_keys)
            healthy = line_runs[line_runs["status"] != "diverged"]
            points = [
                mean_ci95(healthy.loc[healthy[axis_key] == x, "final_test_acc"] * 100)
                for x in x_values
            ]
            means = np.array([p[0] for p in points])
            halves = np.nan_to_num(np.array([p[1] for p in points]))  # one seed: no bar
            ax.errorbar(
                x_values,
                means,
                yerr=halves,
                color=look["color"],
                linestyle=look["linestyle"],
                marker="o",
                markersize=3.5,
                capsize=2.5,
            )
            for _, run in line_runs[line_runs["status"] == "diverged"].iterrows():
                _diverged_marker(ax, run[axis_key], run["final_test_acc"] * 100, look["color"])
            handles.setdefault(label, _line_handle(look, label))
    log_x = all(v > 0 for v in x_values) and max(x_values) / min(x_values) >= 10
    for ax in axes.flat:
        if log_x:  # learning rates and batch sizes are swept in multiples
            ax.set_xscale("log")
        ax.set_xticks(x_values, [format_value(v) for v in x_values])
        ax.minorticks_off()
    facets.label_panels(axes)
    label_outer_panels(fig, AXIS_LABELS.get(axis_key, axis_key), "final test accuracy (%)")
    legend = [h for h in handles.values() if h.get_label() != "all runs"]
    legend.append(
        Line2D([], [], color=style.MUTED, marker="o", label="mean ± 95% t-interval over seeds")
    )
    if (sweep.runs["status"] == "diverged").any():
        legend.append(_diverged_handle("diverged seed (last accuracy; not in the mean)"))
    style.add_legend_below(fig, legend)
    return decorate(fig, title, [*caption, *facets.notes])
