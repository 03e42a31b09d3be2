"""`bnexp figures PATH... [--out DIR]`: compare runs and sweeps in one folder of figures.

    find_runs(paths)          every run directory under the given runs, sweeps or parents
    collect(run_dirs)         one row per run + all metrics/layers rows + warnings
    varying_keys(runs_df)     the config keys that differ between runs (seeds excluded)
    make_figures(...)         figures (PNG + PDF), runs.csv, layers_all.csv, index.md

Seeds are never a figure axis: runs that differ only in `seed` form one *variant* and are
shown as a mean with a band (time series) or a mean with a 95% t-interval (scalars). Diverged
runs are drawn as lines that stop, with an x at the divergence step; failed runs are listed,
never drawn.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from bnexp import intervals, plots, rundir, style
from bnexp.plots import format_value
from bnexp.run.outdir import make_output_dir
from bnexp.rundir import RESUME_HINT, STALE, run_status, stale_reason

# Keys that never make two runs different experiments: the seed is aggregated over, the rest
# changes where or how often things are written, not what is learnt.
BOOKKEEPING_KEYS = frozenset(
    {"seed", "threads", "plots", "data.root", "data.download", "log_every", "eval_every"}
)
# Which varying key becomes the lines, the columns, the rows: the comparison a finding is
# about (BN or not, the nonlinearity, ...) goes on the lines, inside one panel.
KEY_PRIORITY: tuple[str, ...] = (
    "norm", "act", "placement", "affine", "optim", "optim.lr", "batch_size", "depth", "width",
    "init", "init_std", "model", "data", "data.source", "data.binarize", "steps",
)  # fmt: skip
AXIS_LABELS = {
    "batch_size": "batch size (examples per step)",
    "optim.lr": "learning rate (optim.lr)",
    "depth": "depth (hidden layers)",
    "width": "width (units or channels per layer)",
    "steps": "training steps",
    "init_std": "initial weight std (init_std)",
}
# Columns of the runs table that are results or bookkeeping, not config keys.
RESULT_COLUMNS = (
    "run_dir", "status", "error", "final_test_acc", "best_test_acc", "steps_to_target",
    "steps_per_second", "diverged_at_step", "steps_done", "data_source", "train_size",
    "test_size", "wall_seconds", "plotted",
)  # fmt: skip
RUNS_CSV_RESULTS = (
    "status", "error", "final_test_acc", "best_test_acc", "steps_to_target",
    "steps_per_second", "diverged_at_step", "steps_done", "data_source", "plotted",
)  # fmt: skip
FIGURE_NAMES: tuple[str, ...] = (
    "test_acc_vs_step", "grad_profile", "act_range_by_layer", "unit_percentiles",
    "saturation_heatmap", "final_acc_by_variant",
)  # fmt: skip

MAX_FACET_COLS = 5  # values of the column key in a faceted figure
MAX_FACET_VALUES = 4  # values of the row key (and rows of any split figure)
MAX_LINES = 10  # per panel; more are unreadable
MAX_VARIANT_PANELS = 12  # figures with one panel per variant
SKIP_DIRS = frozenset({"plots", "figures", "__pycache__", "node_modules"})


# --------------------------------------------------------------------------------------------
# Finding and reading runs
# --------------------------------------------------------------------------------------------


def is_run_dir(path: Path) -> bool:
    """A run writes meta.json; an older or crashed one may only have Hydra's config and a
    metrics.csv; a Hydra job that crashed before training has only its .hydra folder."""
    hydra_config = (path / ".hydra" / "config.yaml").is_file()
    return (path / "meta.json").is_file() or hydra_config


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Every run directory at or below the given paths, each once, in natural order
    (job 2 before job 10). Accepts single runs, sweeps and folders of sweeps."""
    found: dict[Path, Path] = {}
    for root in map(Path, paths):
        for run_dir in _walk_runs(root):
            found.setdefault(run_dir.resolve(), run_dir)
    return sorted(found.values(), key=_natural_key)


def _walk_runs(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    if is_run_dir(root):
        return [root]
    runs = []
    for dirpath, dirnames, _files in os.walk(root):
        here = Path(dirpath)
        if is_run_dir(here):
            runs.append(here)
            dirnames.clear()  # a run holds no other runs
            continue
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d not in SKIP_DIRS]
    return runs


def _natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def collect(
    run_dirs: Sequence[Path], target: float = 0.9
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, list[str]]:
    """Read every run: (runs_df, layers_df, metrics_df, warnings).

    runs_df has one row per run: `run_dir`, the flattened config (`norm`, `optim.lr`, ...),
    the status from meta.json and summary results (`final_test_acc`, `best_test_acc`,
    `steps_to_target`: first step with test accuracy >= `target`, ...), and `plotted`.
    layers_df and metrics_df hold the CSV rows of the plotted runs with a `run_dir` column.
    Failed runs (status failed, or nothing logged) are in runs_df and in the warnings only.
    """
    rows, layer_frames, metric_frames, warnings = [], [], [], []
    for run_dir in run_dirs:
        run = rundir.load_run(run_dir)
        row = {"run_dir": str(run_dir), **run.config, **summarize_run(run, target)}
        warnings += run.warnings + status_warnings(run, row)
        rows.append(row)
        if row["plotted"]:
            metric_frames.append(run.metrics.assign(run_dir=str(run_dir)))
            layer_frames.append(run.layers.assign(run_dir=str(run_dir)))
    runs = pd.DataFrame(rows)
    metrics = _concat(metric_frames, rundir.METRICS_COLUMNS)
    layers = _concat(layer_frames, rundir.LAYERS_COLUMNS)
    return runs, layers, metrics, warnings


def summarize_run(run: rundir.Run, target: float) -> dict[str, Any]:
    tested = run.metrics.dropna(subset=["test_acc"])
    reached = tested[tested["test_acc"] >= target]
    status = run_status(run.meta) if run.meta else run.status  # "stale": running, process gone
    error = run.meta.get("error") or ""
    if not run.meta and run.metrics.empty:
        status = "failed"
        error = error or "no meta.json and no metrics.csv: the job stopped before training"
    return {
        "status": status,
        "error": str(error),
        "final_test_acc": tested["test_acc"].iloc[-1] if not tested.empty else np.nan,
        "best_test_acc": tested["test_acc"].max() if not tested.empty else np.nan,
        "steps_to_target": reached["step"].iloc[0] if not reached.empty else np.nan,
        "steps_per_second": _number(run.meta.get("steps_per_second")),
        "diverged_at_step": run.diverged_at_step if run.diverged_at_step is not None else np.nan,
        "steps_done": _number(run.meta.get("steps_done")),
        "data_source": run.meta.get("data_source") or "",
        "train_size": _number(run.meta.get("train_size")),
        "test_size": _number(run.meta.get("test_size")),
        "wall_seconds": _number(run.meta.get("wall_seconds")),
        "plotted": status != "failed" and not run.metrics.empty,
    }


def status_warnings(run: rundir.Run, row: dict[str, Any]) -> list[str]:
    """What a reader of the figures must know about this run's status."""
    where = run.path
    status = row["status"]
    if status == "failed":
        return [f"failed run {where}: {row['error'] or 'no error message'} (not plotted)"]
    if run.metrics.empty:
        return [f"run {where} ({status}) has no logged steps yet (not plotted)"]
    last_step = run.metrics["step"].max()
    if status == "running":
        return [f"run {where} is still running: using its logged steps up to step {last_step:,.0f}"]
    if status == STALE:
        return [
            f"run {where} is stale: meta.json says running, but {stale_reason(run.meta)}; "
            f"plotted up to step {last_step:,.0f}. To finish it, {RESUME_HINT}"
        ]
    if status == "interrupted":
        return [f"run {where} was interrupted: plotted up to step {last_step:,.0f}"]
    if not run.meta:
        return [f"run {where} has no meta.json: status unknown, plotted from its CSVs"]
    return []


def _concat(frames: list[pd.DataFrame], columns: Sequence[str]) -> pd.DataFrame:
    frames = [f for f in frames if not f.empty]
    if not frames:
        return rundir.empty_frame([*columns, "run_dir"])
    return pd.concat(frames, ignore_index=True)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return np.nan


# --------------------------------------------------------------------------------------------
# What varies: keys, variants, facets
# --------------------------------------------------------------------------------------------


def config_columns(runs_df: pd.DataFrame) -> list[str]:
    return [c for c in runs_df.columns if c not in RESULT_COLUMNS]


def varying_keys(runs_df: pd.DataFrame) -> list[str]:
    """Config keys with more than one value across the runs, most telling first.

    Not counted: the seed and bookkeeping keys, and a group's own settings that merely follow
    the group's choice (`norm.momentum` exists for norm=batch, not for norm=none).
    """
    columns = config_columns(runs_df)
    # A run whose config could not be read says nothing about what varies.
    configured = runs_df[runs_df[columns].notna().any(axis=1)] if columns else runs_df
    candidates = [
        key for key in columns if key not in BOOKKEEPING_KEYS and _n_distinct(configured[key]) > 1
    ]
    keys = [k for k in candidates if not _follows_group_choice(configured, k, candidates)]
    rank = {key: i for i, key in enumerate(KEY_PRIORITY)}
    return sorted(keys, key=lambda k: (rank.get(k, len(rank)), k))


def _n_distinct(values: pd.Series) -> int:
    return values.map(_hashable).nunique(dropna=False)


def _hashable(value: Any) -> Any:
    """A value that compares and hashes like the user typed it (numpy 3 -> 3, lists -> text)."""
    if isinstance(value, np.generic):
        value = value.item()
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)


def _follows_group_choice(runs_df: pd.DataFrame, key: str, candidates: list[str]) -> bool:
    group = key.split(".", 1)[0]
    if key == group or group not in plots.GROUP_KEYS or group not in candidates:
        return False
    per_choice = runs_df[[group, key]].map(_hashable).groupby(group, dropna=False)[key]
    return bool((per_choice.nunique(dropna=False) <= 1).all())


def ordered_values(values: pd.Series) -> list[Any]:
    """Distinct values in reading order: numbers ascending, then text; missing last."""
    distinct = list(dict.fromkeys(_hashable(v) for v in values))
    present = [v for v in distinct if not plots.is_missing(v)]
    missing = [v for v in distinct if plots.is_missing(v)]
    numbers = sorted(v for v in present if isinstance(v, int | float) and not isinstance(v, bool))
    others = sorted((v for v in present if v not in numbers), key=str)
    return numbers + others + missing[:1]


def value_index(values: list[Any], value: Any) -> int:
    """Position of a config value among `ordered_values`; a missing value (NaN is not equal
    to itself) matches the missing entry."""
    if plots.is_missing(value):
        for i, candidate in enumerate(values):
            if plots.is_missing(candidate):
                return i
        raise ValueError("no missing value among the values")
    return values.index(_hashable(value))


def variant_label(row: pd.Series | dict, keys: Sequence[str]) -> str:
    if not keys:
        return "all runs"
    return ", ".join(f"{key}={format_value(row[key])}" for key in keys)


def is_numeric_key(values: Sequence[Any]) -> bool:
    present = [v for v in values if not plots.is_missing(v)]
    return len(present) > 1 and all(
        isinstance(v, int | float | np.integer | np.floating) and not isinstance(v, bool | np.bool_)
        for v in present
    )


@dataclass
class Sweep:
    """The plotted runs with their variant, plus what every figure's caption says."""

    runs: pd.DataFrame  # plotted runs only; columns: run_dir, keys..., seed, variant, ...
    keys: list[str]
    values: dict[str, list[Any]]  # ordered distinct values per varying key
    variants: list[str]  # in reading order
    caption: list[str]
    title_suffix: str
    variant_suffix: dict[str, str] = field(default_factory=dict)  # "(1 of 2 diverged)"

    def variant_rows(self) -> pd.DataFrame:
        """One row per variant (its key values), in reading order."""
        return self.runs.drop_duplicates("variant").set_index("variant").loc[self.variants]

    def style_of(self, variant: str) -> dict[str, Any]:
        """How a variant is drawn wherever all its keys must be told apart by the line."""
        return self.style_for(self.variant_rows().loc[variant], self.keys)

    def style_for(self, row: Any, keys: Sequence[str]) -> dict[str, Any]:
        """Colour by the first of `keys`, line style by the second, marker by the third, so a
        value looks the same in every figure. Keys already shown by panels are left out of
        `keys`, so lines in a panel differ only in what the legend names."""
        styling: dict[str, Any] = {"color": style.COLORS[0], "linestyle": "-", "marker": "o"}
        for key, attribute in zip(keys[:3], ("color", "linestyle", "marker"), strict=False):
            index = value_index(self.values[key], row[key])
            if attribute == "color":
                styling["color"] = self.color_of(key, index)
            elif attribute == "linestyle":
                styling["linestyle"] = style.LINESTYLES[index % len(style.LINESTYLES)]
            else:
                styling["marker"] = style.MARKERS[index % len(style.MARKERS)]
        if len(keys) > 3:  # beyond three keys, styles would repeat: one colour per combination
            labels = list(
                dict.fromkeys(variant_label(r, keys) for _, r in self.variant_rows().iterrows())
            )
            index = labels.index(variant_label(row, keys))
            styling["color"] = style.COLORS[index % len(style.COLORS)]
        return styling

    def color_of(self, key: str, index: int) -> Any:
        values = self.values[key]
        if is_numeric_key(values) and len(values) > 2:
            return style.sequential_colors(len(values))[index]  # ordered values, ordered colours
        return style.COLORS[index % len(style.COLORS)]

    def panel_order(self) -> list[str]:
        """Variants in the order of one-panel-per-variant figures: neighbours differ only in
        the first key (norm=batch next to norm=none), so a capped figure still shows whole
        comparisons."""
        rows = self.variant_rows()
        keys = [*self.keys[1:], *self.keys[:1]]
        position = {
            variant: tuple(value_index(self.values[k], rows.loc[variant, k]) for k in keys)
            for variant in self.variants
        }
        return sorted(self.variants, key=position.__getitem__)

    def label_of(self, variant: str) -> str:
        return variant + self.variant_suffix.get(variant, "")


def build_sweep(runs_df: pd.DataFrame, keys: list[str]) -> Sweep:
    runs = runs_df[runs_df["plotted"].astype(bool)].copy()
    if "seed" not in runs:
        runs["seed"] = np.nan
    runs["variant"] = [variant_label(row, keys) for _, row in runs.iterrows()]
    values = {key: ordered_values(runs[key]) if key in runs else [] for key in keys}

    def order(label: str) -> tuple:
        row = runs[runs["variant"] == label].iloc[0]
        return tuple(value_index(values[k], row[k]) for k in keys)

    variants = sorted(runs["variant"].unique(), key=order)
    suffix = {}
    for variant, group in runs.groupby("variant"):
        n_diverged = int((group["status"] == "diverged").sum())
        if n_diverged:
            suffix[variant] = f" ({n_diverged} of {len(group)} diverged)"
    return Sweep(
        runs=runs,
        keys=keys,
        values=values,
        variants=variants,
        caption=sweep_caption(runs_df, keys),
        title_suffix=f" · data: {rundir.BUNDLED_TEXT}"
        if (runs_df.get("data_source", pd.Series(dtype=str)) == rundir.BUNDLED_SOURCE).any()
        else "",
        variant_suffix=suffix,
    )


def sweep_caption(runs_df: pd.DataFrame, keys: list[str]) -> list[str]:
    """Config of the sweep (varying keys as sets), data source, how many runs and seeds."""
    first = runs_df.iloc[0].to_dict()
    varying = {key: ordered_values(runs_df[key]) for key in keys}
    counts = runs_df["status"].value_counts()
    status_text = ", ".join(f"{n} {status}" for status, n in counts.items())
    seeds = ordered_values(runs_df["seed"]) if "seed" in runs_df else []
    seed_list = ", ".join(format_value(s) for s in seeds)
    seed_text = f"{'seed' if len(seeds) == 1 else 'seeds'} {seed_list}" if seeds else "no seed"
    return [
        plots.config_summary(first, varying),
        sweep_data_text(runs_df),
        f"{_count(len(runs_df), 'run')} ({status_text}); {seed_text}",
    ]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def sweep_data_text(runs_df: pd.DataFrame) -> str:
    sources = runs_df.get("data_source", pd.Series([""] * len(runs_df))).fillna("")
    parts = []
    for source, group in runs_df.groupby(sources.values):
        first = group.iloc[0].to_dict()
        text = plots.data_source_text({**first, "data_source": source}, first.get("data"))
        parts.append(
            text if source == "" or len(runs_df) == len(group) else f"{text} [{len(group)} runs]"
        )
    return "; ".join(parts)


@dataclass
class Facets:
    """Panels by up to two keys (columns, rows); lines by the rest."""

    col_key: str | None
    row_key: str | None
    col_values: list[Any]
    row_values: list[Any]
    notes: list[str]

    @property
    def shape(self) -> tuple[int, int]:
        return max(1, len(self.row_values)), max(1, len(self.col_values))

    def cell_of(self, row: pd.Series) -> tuple[int, int] | None:
        """(row, col) panel of a run, or None if its value was left out by the cap."""
        r = self._index(self.row_key, self.row_values, row)
        c = self._index(self.col_key, self.col_values, row)
        return None if r is None or c is None else (r, c)

    def label_panels(self, axes: Any) -> None:
        """Column values as titles over the top row, row values as the y label of the first
        column (margin labels: each says once what a whole column or row shares)."""
        for c, value in enumerate(self.col_values):
            axes[0, c].set_title(f"{self.col_key}={format_value(value)}", fontsize=7.5, pad=3)
        for r, value in enumerate(self.row_values):
            axes[r, 0].set_ylabel(f"{self.row_key}={format_value(value)}", fontsize=7.5)

    @staticmethod
    def _index(key: str | None, values: list[Any], row: pd.Series) -> int | None:
        if key is None:
            return 0
        try:
            return value_index(values, row[key])
        except ValueError:  # a value left out by the cap on panels
            return None


def plan_facets(sweep: Sweep, keys: Sequence[str]) -> Facets:
    """Lines by keys[0]; columns by keys[1]; rows by keys[2]; each capped."""
    col_key = keys[1] if len(keys) > 1 else None
    row_key = keys[2] if len(keys) > 2 else None
    notes: list[str] = []

    def capped(key: str | None, cap: int) -> list[Any]:
        if key is None:
            return []
        values = sweep.values[key]
        if len(values) > cap:
            shown = ", ".join(format_value(v) for v in values[:cap])
            notes.append(f"panels show {key} = {shown} only ({len(values)} values in the runs)")
        return values[:cap]

    return Facets(
        col_key, row_key, capped(col_key, MAX_FACET_COLS), capped(row_key, MAX_FACET_VALUES), notes
    )


def line_keys_of(keys: Sequence[str]) -> list[str]:
    """The keys told apart by lines when panels show keys[1] (columns) and keys[2] (rows)."""
    return [*keys[:1], *keys[3:]]


# --------------------------------------------------------------------------------------------
# Statistics over seeds
# --------------------------------------------------------------------------------------------

# Student t quantiles: the same implementation as the claims' intervals (bnexp.intervals).
t_quantile_975 = intervals.t_quantile_975


def mean_ci95(values: Iterable[float]) -> tuple[float, float, int]:
    """(mean, half-width of the 95% t-interval, n) of the finite values; half-width is NaN
    for fewer than two values."""
    finite_values = np.array([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    n = len(finite_values)
    if n == 0:
        return math.nan, math.nan, 0
    if n == 1:
        return float(finite_values[0]), math.nan, 1
    sem = finite_values.std(ddof=1) / math.sqrt(n)
    return float(finite_values.mean()), t_quantile_975(n - 1) * sem, n


def geometric_mean(values: pd.Series) -> float:
    """Mean of gradient magnitudes on a log axis: a geometric mean, so one large seed does not
    hide the others."""
    positive = values[(values > 0) & np.isfinite(values)]
    return float(np.exp(np.log(positive).mean())) if len(positive) else math.nan


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


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
    return Line2D([], [], color="black", linestyle="none", marker=style.DIVERGED_MARKER,
                  markersize=6, markeredgewidth=1.4, label=label)  # fmt: skip


@style.styled
def plot_test_accuracy(
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
    for (r, c), cell_runs in _runs_by_cell(sweep, facets):
        ax = axes[r, c]
        for label, line_runs in _group_by_keys(cell_runs, line_keys):
            look = sweep.style_for(line_runs.iloc[0], line_keys)
            rows = tested[tested["run_dir"].isin(line_runs["run_dir"])]
            _draw_seed_mean(ax, rows[rows["status"] != "diverged"], "test_acc", look, scale=100)
            for run_dir, run_rows in rows[rows["status"] == "diverged"].groupby("run_dir"):
                _draw_diverged_run(ax, run_rows, run_info.loc[run_dir], "test_acc", look, scale=100)
            drawn.setdefault(label, _line_handle(look, label))
        style.format_steps(ax)
    facets.label_panels(axes)
    plots.label_outer_panels(fig, plots.STEP_LABEL, "test accuracy (%)")
    handles = list(drawn.values()) + [
        Patch(color=style.MUTED, alpha=0.25, label="range over seeds")
    ]
    if (sweep.runs["status"] == "diverged").any():
        handles.append(_diverged_handle())
    style.add_legend_below(fig, handles)
    return plots.decorate(fig, title, [*caption, *facets.notes])


def _line_handle(look: dict[str, Any], label: str) -> Line2D:
    return Line2D([], [], color=look["color"], linestyle=look["linestyle"], label=label)


def _runs_by_cell(sweep: Sweep, facets: Facets) -> list[tuple[tuple[int, int], pd.DataFrame]]:
    cells: dict[tuple[int, int], list[int]] = {}
    for index, row in sweep.runs.iterrows():
        cell = facets.cell_of(row)
        if cell is not None:
            cells.setdefault(cell, []).append(index)
    return [(cell, sweep.runs.loc[indices]) for cell, indices in sorted(cells.items())]


def _draw_seed_mean(
    ax: Axes, rows: pd.DataFrame, column: str, look: dict, *, scale: float = 1.0
) -> None:
    """Mean over seeds at each logged step, with the min-max range over seeds as a band."""
    if rows.empty:
        return
    by_step = rows.pivot_table(index="step", columns="run_dir", values=column, aggfunc="mean")
    by_step = plots.finite(by_step) * scale
    mean = by_step.mean(axis=1)
    marker = look["marker"] if len(mean) <= plots.SPARSE_POINTS else None
    ax.plot(
        mean.index,
        mean.values,
        color=look["color"],
        linestyle=look["linestyle"],
        marker=marker,
        markersize=3,
    )
    if by_step.shape[1] > 1:
        ax.fill_between(
            mean.index,
            by_step.min(axis=1),
            by_step.max(axis=1),
            color=look["color"],
            alpha=0.18,
            linewidth=0,
        )


def _draw_diverged_run(
    ax: Axes, rows: pd.DataFrame, run: pd.Series, column: str, look: dict, *, scale: float = 1.0
) -> None:
    """A diverged seed on its own: a thin line that stops, and an x at the divergence step."""
    values = plots.finite(rows[column]) * scale
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
def plot_grad_profile(
    sweep: Sweep, layers: pd.DataFrame, *, title: str = "", caption: Sequence[str] = ()
) -> Figure:
    """Mean |dL/dW| against the layer at early, middle and late training (columns), one line
    per variant (geometric mean over seeds; log y). Beyond four variants, rows split them by
    the second varying key, so a panel keeps a few lines."""
    split = sweep.keys[1] if len(sweep.variants) > 4 and len(sweep.keys) > 1 else None
    row_values = sweep.values[split][:MAX_FACET_VALUES] if split else [None]
    line_keys = [k for k in sweep.keys if k != split]
    fig, axes = style.new_figure(len(row_values), 3, panel_height=2.1 if split else 2.4, sharex=True, sharey=True)  # fmt: skip
    layers = layers.merge(sweep.runs[["run_dir", "variant"]], on="run_dir")
    any_drawn = False
    handles: dict[str, Line2D] = {}
    for r, split_value in enumerate(row_values):
        runs = (
            sweep.runs
            if split is None
            else sweep.runs[sweep.runs[split].map(_hashable) == split_value]
        )
        for label, line_runs in _group_by_keys(runs, line_keys):
            look = sweep.style_for(line_runs.iloc[0], line_keys)
            rows = layers[layers["run_dir"].isin(line_runs["run_dir"])]
            for ax, profile in zip(axes[r], _stage_profiles(rows).values(), strict=False):
                if profile.empty:
                    continue
                ax.plot(profile.index, profile.values, color=look["color"], linestyle=look["linestyle"],
                        marker=look["marker"], markersize=3)  # fmt: skip
                any_drawn = True
            handles.setdefault(label, Line2D([], [], color=look["color"], linestyle=look["linestyle"],
                                             marker=look["marker"], markersize=3, label=label))  # fmt: skip
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
    notes = [] if len(sweep.values.get(split, [])) <= MAX_FACET_VALUES else [
        f"rows show the first {MAX_FACET_VALUES} values of {split} only"
    ]  # fmt: skip
    return plots.decorate(fig, title, [*caption, *notes])


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
def plot_norm_params_by_layer(
    sweep: Sweep, layers: pd.DataFrame, *, title: str = "", caption: Sequence[str] = ()
) -> Figure:
    """At each run's last logged step, per layer: mean gamma (left) and mean beta (right) over
    the layer's units, one line per variant that has them (mean over seeds). Gamma = 1 and
    beta = 0 at initialisation; the distance from there is what the network made of them."""
    fig, axes = style.new_figure(1, 2, panel_height=2.4, sharex=True)
    gamma_ax, beta_ax = axes[0]
    final = _last_step_rows(layers).merge(sweep.runs[["run_dir", "variant"]], on="run_dir")
    handles: dict[str, Line2D] = {}
    for label, runs in _group_by_keys(sweep.runs, sweep.keys):
        look = sweep.style_for(runs.iloc[0], sweep.keys)
        rows = final[final["run_dir"].isin(runs["run_dir"])]
        by_layer = rows.groupby("layer")[["gamma_mean", "beta_mean"]].mean().dropna()
        if by_layer.empty:
            continue  # no norm, or affine=false: nothing to draw
        for ax, column in ((gamma_ax, "gamma_mean"), (beta_ax, "beta_mean")):
            ax.plot(by_layer.index, by_layer[column], color=look["color"], linestyle=look["linestyle"],
                    marker=look["marker"], markersize=3)  # fmt: skip
        handles[label] = Line2D([], [], color=look["color"], linestyle=look["linestyle"],
                                marker=look["marker"], markersize=3, label=label)  # fmt: skip
    for ax, reference, ylabel in ((gamma_ax, 1.0, "γ: mean over units"), (beta_ax, 0.0, "β: mean over units")):
        ax.axhline(reference, color=style.MUTED, linewidth=0.8, linestyle=":")
        ax.set_xlabel("hidden layer (1 = nearest the input)")
        ax.set_ylabel(ylabel)
        ax.xaxis.get_major_locator().set_params(integer=True)
    style.add_legend_below(fig, list(handles.values()))
    return plots.decorate(fig, title, caption)


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
def plot_activation_ranges(
    sweep: Sweep, layers: pd.DataFrame, *, title: str = "", caption: Sequence[str] = ()
) -> Figure:
    """Per variant, against the layer at the end of training: the input of the nonlinearity
    (min-max and 15-85th percentile bands, median) above its output (min-max band, mean)."""
    fig, panels, variants = _variant_panels(sweep, rows_per_variant=2)
    final = _last_step_rows(layers).merge(sweep.runs[["run_dir", "variant"]], on="run_dir")
    columns = ["pre_min", "pre_max", "pre_p15", "pre_p50", "pre_p85", "act_min", "act_max", "act_mean"]  # fmt: skip
    for (pre_ax, act_ax), variant in zip(panels, variants, strict=True):
        color = sweep.style_of(variant)["color"]
        by_layer = plots.finite(final[final["variant"] == variant].groupby("layer")[columns].mean())
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
    return plots.decorate(fig, title, [*caption, *_variant_cap_note(sweep, MAX_VARIANT_PANELS)])


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
def plot_unit_percentiles(
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
        plots.draw_percentile_lines(ax, rows, look["color"])
        if run["status"] == "diverged":
            plots.mark_divergence(ax, run["diverged_at_step"], label=False)
            divergence_shown = True
        seeds_used[variant] = run["seed"]
        style.format_steps(ax)
    _share(axes)
    plots.label_outer_panels(fig, plots.STEP_LABEL, "tracked unit's pre-activation")
    handles = plots.percentile_legend_handles(style.MUTED)
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
    return plots.decorate(fig, title, [*caption, *notes])


def _lowest_seed_run(runs: pd.DataFrame) -> pd.Series:
    """The run shown for a variant: a finished one if there is any, then the lowest seed."""
    finished_first = runs.assign(_unfinished=runs["status"] != "completed")
    return finished_first.sort_values(["_unfinished", "seed"], na_position="last").iloc[0]


@style.styled
def plot_saturation(
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
        mesh = ax.pcolormesh(_edges(steps), _edges(layer_ids), plots.finite(grid).to_numpy(),
                             vmin=0, vmax=1, cmap=style.SEQUENTIAL_CMAP, rasterized=True, shading="flat")  # fmt: skip
        ax.grid(False)
        ax.yaxis.get_major_locator().set_params(integer=True)
        style.format_steps(ax)
        runs = sweep.runs[sweep.runs["variant"] == variant]
        for step in runs.loc[runs["status"] == "diverged", "diverged_at_step"].dropna():
            plots.mark_divergence(ax, step, label=False)
            divergence_shown = True
    plots.label_outer_panels(fig, plots.STEP_LABEL, "hidden layer (1 = nearest the input)")
    if divergence_shown:
        handle = Line2D([], [], color=style.DIVERGED_COLOR, linestyle="--", label="a seed diverged")
        style.add_legend_below(fig, [handle])
    if mesh is not None:
        fig.colorbar(
            mesh, ax=axes, label="saturated fraction of activations", shrink=0.9, aspect=30
        )
    return plots.decorate(fig, title, [*caption, *_variant_cap_note(sweep, MAX_VARIANT_PANELS)])


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
        handles.append(Line2D([], [], color=style.MUTED, marker=style.DIVERGED_MARKER, linestyle="none",
                              label="diverged seed (last accuracy; not in the mean)"))  # fmt: skip
    style.add_legend_below(fig, handles)
    return plots.decorate(fig, title, [*caption, *_variant_cap_note(sweep, 40)])


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
    for (r, c), cell_runs in _runs_by_cell(sweep, facets):
        ax = axes[r, c]
        for label, line_runs in _group_by_keys(cell_runs, line_keys):
            look = sweep.style_for(line_runs.iloc[0], line_keys)
            healthy = line_runs[line_runs["status"] != "diverged"]
            points = [
                mean_ci95(healthy.loc[healthy[axis_key] == x, "final_test_acc"] * 100)
                for x in x_values
            ]
            means = np.array([p[0] for p in points])
            halves = np.nan_to_num(np.array([p[1] for p in points]))  # one seed: no bar
            ax.errorbar(x_values, means, yerr=halves, color=look["color"],
                        linestyle=look["linestyle"], marker="o", markersize=3.5, capsize=2.5)  # fmt: skip
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
    plots.label_outer_panels(fig, AXIS_LABELS.get(axis_key, axis_key), "final test accuracy (%)")
    legend = [h for h in handles.values() if h.get_label() != "all runs"]
    legend.append(
        Line2D([], [], color=style.MUTED, marker="o", label="mean ± 95% t-interval over seeds")
    )
    if (sweep.runs["status"] == "diverged").any():
        legend.append(_diverged_handle("diverged seed (last accuracy; not in the mean)"))
    style.add_legend_below(fig, legend)
    return plots.decorate(fig, title, [*caption, *facets.notes])


def _group_by_keys(runs: pd.DataFrame, keys: Sequence[str]) -> list[tuple[str, pd.DataFrame]]:
    if not keys:
        return [("all runs", runs)]
    labels = runs.apply(lambda row: variant_label(row, keys), axis=1)
    order = list(dict.fromkeys(labels))
    return [(label, runs[labels == label]) for label in order][:MAX_LINES]


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
        FigureSpec("test_acc_vs_step", "Test accuracy during training",
                   "Test accuracy (eval mode) against the training step; line = mean over seeds, band = range over seeds.",
                   lambda **kw: plot_test_accuracy(sweep, metrics, **kw)),
        FigureSpec("grad_profile", "Gradient magnitude per layer",
                   "Mean |∂L/∂W| per hidden layer at the first, middle and last logged step (geometric mean over seeds, log scale).",
                   lambda **kw: plot_grad_profile(sweep, layers, **kw)),
        FigureSpec("act_range_by_layer", "Input and output of the nonlinearity per layer",
                   "At each run's last logged step, per layer: pre-activation min–max and 15–85th percentile bands with median (top), activation min–max band and mean (bottom); means over seeds.",
                   lambda **kw: plot_activation_ranges(sweep, layers, **kw)),
        FigureSpec("unit_percentiles", "One unit's input over training (BN paper Fig. 1b,c)",
                   "15th, 50th and 85th percentile of one unit's pre-activation in the last hidden layer on a fixed probe batch, over training.",
                   lambda **kw: plot_unit_percentiles(sweep, layers, **kw)),
        FigureSpec("saturation_heatmap", "Saturated activations per layer over training",
                   "Fraction of saturated activations (sigmoid < 0.05 or > 0.95, tanh |a| > 0.97, ReLU a = 0) per layer and step, mean over seeds.",
                   lambda **kw: plot_saturation(sweep, layers, **kw)),
        FigureSpec("final_acc_by_variant", "Final test accuracy per variant",
                   "Final test accuracy of each variant: dots are seeds, diamonds the mean with its 95% t-interval.",
                   lambda **kw: plot_final_accuracy_by_variant(sweep, **kw)),
    ]  # fmt: skip
    if plots.has_norm_params(layers):
        specs.append(FigureSpec(
            "norm_params_by_layer", "The norm's gamma and beta per layer",
            "At each run's last logged step: mean gamma (scale) and beta (shift) of each layer's norm, mean over seeds; dotted = their initial values. Variants without gamma/beta are absent.",
            lambda **kw: plot_norm_params_by_layer(sweep, layers, **kw)))  # fmt: skip
    for key in sweep.keys:
        if is_numeric_key(sweep.values[key]):
            specs.append(FigureSpec(
                f"final_acc_vs_{key}", f"Final test accuracy against {key}",
                f"Final test accuracy against {key}: mean ± 95% t-interval over seeds, one line per value of the other varying keys.",
                lambda key=key, **kw: plot_final_accuracy_vs(sweep, key, **kw)))  # fmt: skip
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
    """runs.csv (one row per run) and layers_all.csv (every layers.csv row, labelled)."""
    runs = runs_df.copy()
    if "seed" not in runs:
        runs["seed"] = np.nan
    lead = ["run_dir", *keys, "seed"]
    for column in ("steps_to_target", "diverged_at_step", "steps_done"):
        runs[column] = runs[column].round().astype("Int64")  # steps are counts: 300, not 300.0
    runs_path = out_dir / "runs.csv"
    runs[lead + [c for c in RUNS_CSV_RESULTS if c in runs]].to_csv(runs_path, index=False)
    labels = runs[lead]
    layers = labels.merge(layers_df, on="run_dir", how="inner")
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
        f"{_count(len(runs_df), 'run')}. Varying: {varying or 'nothing (one configuration)'}; seeds are aggregated."
    )
    lines += [
        "",
        f"Config: `{plots.config_summary(runs_df.iloc[0].to_dict(), {k: ordered_values(runs_df[k]) for k in keys})}`",
        "",
    ]
    data_text = sweep_data_text(runs_df)
    lines += [f"**{data_text}**" if rundir.BUNDLED_TEXT in data_text else data_text, ""]
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
            print(f"bnexp figures: error: {reason} {path} (a run directory holds meta.json or "
                  ".hydra/config.yaml with metrics.csv)", file=sys.stderr)  # fmt: skip
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
    print(f"bnexp figures: {_count(len(runs), 'run')} ({counts}); varying: {', '.join(keys) or 'nothing'}; "
          f"wrote {len(written)} files to {out_dir} (start at {out_dir / 'index.md'})")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
