"""What varies across a sweep's runs, and how it is laid out: the variant/facet model.

    varying_keys(runs_df)     the config keys that differ between runs (seeds excluded)
    build_sweep(runs_df, keys) the plotted runs with their variant, values and caption (Sweep)
    plan_facets(sweep, keys)  panels by up to two keys (columns, rows); lines by the rest

Seeds are never a figure axis: runs that differ only in `seed` form one *variant*, shown as a
mean over seeds (with a band, or a 95% t-interval from bnexp.analysis.intervals). Pure: tables
in, tables and labels out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bnexp.analysis import style
from bnexp.analysis.captions import data_source_text
from bnexp.analysis.tables import RESULT_COLUMNS
from bnexp.describe import GROUP_KEYS, config_summary, format_value, is_missing
from bnexp.rundir import BUNDLED_SOURCE, BUNDLED_TEXT

# Keys that never make two runs different experiments: the seed is aggregated over, the rest
# changes where or how often things are written, not what is learnt.
BOOKKEEPING_KEYS = frozenset(
    {
        "seed",
        "threads",
        "plots",
        "logger",
        "data.root",
        "data.download",
        "log_every",
        "eval_every",
        "checkpoint_every",
    }
)

# Which varying key becomes the lines, the columns, the rows: the comparison a finding is
# about (BN or not, the nonlinearity, ...) goes on the lines, inside one panel.
KEY_PRIORITY: tuple[str, ...] = (
    "norm",
    "act",
    "placement",
    "affine",
    "optim",
    "optim.lr",
    "batch_size",
    "depth",
    "width",
    "init",
    "init_std",
    "model",
    "data",
    "data.source",
    "data.binarize",
    "steps",
)


MAX_FACET_COLS = 5  # values of the column key in a faceted figure
MAX_FACET_VALUES = 4  # values of the row key (and rows of any split figure)
MAX_LINES = 10  # per panel; more are unreadable


# --------------------------------------------------------------------------------------------
# What varies: keys and variants
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
    return values.map(hashable).nunique(dropna=False)


def hashable(value: Any) -> Any:
    """A value that compares and hashes like the user typed it (numpy 3 -> 3, lists -> text)."""
    if isinstance(value, np.generic):
        value = value.item()
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)


def _follows_group_choice(runs_df: pd.DataFrame, key: str, candidates: list[str]) -> bool:
    group = key.split(".", 1)[0]
    if key == group or group not in GROUP_KEYS or group not in candidates:
        return False
    per_choice = runs_df[[group, key]].map(hashable).groupby(group, dropna=False)[key]
    return bool((per_choice.nunique(dropna=False) <= 1).all())


def ordered_values(values: pd.Series) -> list[Any]:
    """Distinct values in reading order: numbers ascending, then text; missing last."""
    distinct = list(dict.fromkeys(hashable(v) for v in values))
    present = [v for v in distinct if not is_missing(v)]
    missing = [v for v in distinct if is_missing(v)]
    numbers = sorted(v for v in present if isinstance(v, int | float) and not isinstance(v, bool))
    others = sorted((v for v in present if v not in numbers), key=str)
    return numbers + others + missing[:1]


def value_index(values: list[Any], value: Any) -> int:
    """Position of a config value among `ordered_values`; a missing value (NaN is not equal
    to itself) matches the missing entry."""
    if is_missing(value):
        for i, candidate in enumerate(values):
            if is_missing(candidate):
                return i
        raise ValueError("no missing value among the values")
    return values.index(hashable(value))


def variant_label(row: pd.Series | dict, keys: Sequence[str]) -> str:
    if not keys:
        return "all runs"
    return ", ".join(f"{key}={format_value(row[key])}" for key in keys)


def is_numeric_key(values: Sequence[Any]) -> bool:
    present = [v for v in values if not is_missing(v)]
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
        title_suffix=f" · data: {BUNDLED_TEXT}"
        if (runs_df.get("data_source", pd.Series(dtype=str)) == BUNDLED_SOURCE).any()
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
        config_summary(first, varying),
        sweep_data_text(runs_df),
        f"{count_text(len(runs_df), 'run')} ({status_text}); {seed_text}",
    ]


def count_text(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def sweep_data_text(runs_df: pd.DataFrame) -> str:
    sources = runs_df.get("data_source", pd.Series([""] * len(runs_df))).fillna("")
    parts = []
    for source, group in runs_df.groupby(sources.values):
        first = group.iloc[0].to_dict()
        text = data_source_text({**first, "data_source": source}, first.get("data"))
        parts.append(
            text if source == "" or len(runs_df) == len(group) else f"{text} [{len(group)} runs]"
        )
    return "; ".join(parts)


# --------------------------------------------------------------------------------------------
# Panels and lines: facets
# --------------------------------------------------------------------------------------------


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


def runs_by_cell(sweep: Sweep, facets: Facets) -> list[tuple[tuple[int, int], pd.DataFrame]]:
    cells: dict[tuple[int, int], list[int]] = {}
    for index, row in sweep.runs.iterrows():
        cell = facets.cell_of(row)
        if cell is not None:
            cells.setdefault(cell, []).append(index)
    return [(cell, sweep.runs.loc[indices]) for cell, indices in sorted(cells.items())]


def group_by_keys(runs: pd.DataFrame, keys: Sequence[str]) -> list[tuple[str, pd.DataFrame]]:
    if not keys:
        return [("all runs", runs)]
    labels = runs.apply(lambda row: variant_label(row, keys), axis=1)
    order = list(dict.fromkeys(labels))
    return [(label, runs[labels == label]) for label in order][:MAX_LINES]


# --------------------------------------------------------------------------------------------
# Statistics over seeds
# --------------------------------------------------------------------------------------------


def geometric_mean(values: pd.Series) -> float:
    """Mean of gradient magnitudes on a log axis: a geometric mean, so one large seed does not
    hide the others."""
    positive = values[(values > 0) & np.isfinite(values)]
    return float(np.exp(np.log(positive).mean())) if len(positive) else math.nan
