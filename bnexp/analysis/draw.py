"""Drawing helpers shared by the per-run, sweep and finding figures (bnexp.analysis.run_plots,
bnexp.analysis.sweep_plots, bnexp.reproduce.finding_figures): one look for the same thing
wherever it is drawn. Pure: axes and frames in, artists out; no file is touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from bnexp.analysis import style

STEP_LABEL = "training step (SGD updates)"
SPARSE_POINTS = 12  # series with at most this many points get markers, so one point shows


def finite(values: pd.Series) -> pd.Series:
    """inf (an exploding loss) plots as a gap, like an empty cell."""
    return values.replace([np.inf, -np.inf], np.nan)


def positive(values: pd.Series) -> pd.Series:
    """Values a log axis can show; zeros and negatives become gaps, not errors."""
    values = finite(values)
    return values.where(values > 0)


def marker_for(n_points: int) -> str | None:
    """Markers only on sparse series, so that a run with one logged step still shows a dot."""
    return "o" if n_points <= SPARSE_POINTS else None


def mark_divergence(ax: Axes, step: float | None, *, label: bool = True) -> None:
    """A dashed vertical line where the run diverged (its loss became NaN or exploded)."""
    if step is None:
        return
    ax.axvline(step, color=style.DIVERGED_COLOR, linestyle="--", linewidth=0.9, zorder=1)
    if label:
        ax.annotate(
            f"diverged\nstep {step:,.0f}",
            xy=(step, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(-3, -3),
            textcoords="offset points",
            ha="right",
            va="top",
            fontsize=6.5,
            color=style.DIVERGED_COLOR,
        )


def divergence_handles(step: float | None) -> list[Any]:
    """A legend entry for the divergence line, where small panels have no room for a label."""
    if step is None:
        return []
    return [
        Line2D(
            [],
            [],
            color=style.DIVERGED_COLOR,
            linestyle="--",
            linewidth=0.9,
            label=f"diverged at step {step:,.0f}",
        )
    ]


def label_outer_panels(fig: Figure, xlabel: str, ylabel: str) -> None:
    """One x and one y label for a grid of small panels, instead of one per panel."""
    fig.supxlabel(xlabel, fontsize=style.RC["axes.labelsize"])
    fig.supylabel(ylabel, fontsize=style.RC["axes.labelsize"])


def decorate(
    fig: Figure, title: str, caption: Sequence[str], handles: Sequence[Any] | None = None
) -> Figure:
    """Title above; a legend (`handles`, if any) and the caption lines below: every figure says
    what it shows and what was run."""
    style.add_title(fig, title)
    if handles:
        style.add_legend_below(fig, handles)
    style.add_caption(fig, caption)
    return fig


def draw_mean_band(
    ax: Axes,
    curves: pd.DataFrame,
    color: Any,
    *,
    label: str | None = None,
    linestyle: str = "-",
    marker: str | None = None,
) -> None:
    """Seeds of one variant: their mean as a line and their min-max range as a band.

    `curves` has one row per step and one column per seed (or run). The band is drawn on the
    steps every seed logged (a band over fewer seeds would look narrower than it is); inf (an
    exploding loss) plots as a gap.
    """
    if curves.empty:
        return
    curves = finite(curves)
    common = curves.dropna()
    if curves.shape[1] > 1 and not common.empty:
        ax.fill_between(
            common.index,
            common.min(axis=1),
            common.max(axis=1),
            color=color,
            alpha=0.18,
            linewidth=0,
        )
    mean = curves.mean(axis=1)
    ax.plot(
        mean.index,
        mean.values,
        color=color,
        linestyle=linestyle,
        marker=marker,
        markersize=3,
        label=label,
    )


def draw_percentile_lines(ax: Axes, rows: pd.DataFrame, color: Any) -> None:
    """The paper's Fig. 1b,c: median solid, 15th and 85th percentiles thin, band between."""
    marker = marker_for(len(rows))
    ax.fill_between(
        rows["step"],
        finite(rows["unit_p15"]),
        finite(rows["unit_p85"]),
        color=color,
        alpha=0.15,
        linewidth=0,
    )
    ax.plot(rows["step"], finite(rows["unit_p50"]), color=color, linewidth=1.3, marker=marker)
    for column in ("unit_p15", "unit_p85"):
        ax.plot(
            rows["step"],
            finite(rows[column]),
            color=color,
            linewidth=0.7,
            linestyle="--",
            marker=marker,
            markersize=2,
        )


def percentile_legend_handles(color: Any) -> list[Any]:
    return [
        Line2D([], [], color=color, linewidth=0.7, linestyle="--", label="15th / 85th percentile"),
        Line2D([], [], color=color, linewidth=1.3, label="50th percentile (median)"),
    ]
