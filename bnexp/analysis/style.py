"""One matplotlib look for every bnexp figure: readable in print, safe for colour-blind readers.

Nothing here changes matplotlib's global rcParams: figure-building functions are wrapped in
`styled`, which applies `RC` only while they run, and `savefig` applies it again while
writing (some settings are read at draw time). Figures are `matplotlib.figure.Figure` objects
that pyplot never sees, so they are freed as soon as the caller drops them; nothing
accumulates across the hundreds of runs of a sweep.
"""

from __future__ import annotations

import functools
import math
import textwrap
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window, work on headless machines

from cycler import cycler  # noqa: E402  (after the backend is chosen)
from matplotlib import ticker, transforms  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Annotation  # noqa: E402

# Okabe & Ito (2008), the palette most colour-vision deficiencies can tell apart. Their yellow
# is left out: it disappears on white paper. Ordered so the first two are the most distinct
# (most comparisons here are BN vs no BN).
COLORS: tuple[str, ...] = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#000000",  # black
)
LINESTYLES: tuple[str, ...] = ("-", "--", ":", "-.")
MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P")
# Ordered quantities (layer index, training time, a swept number) use a perceptually uniform
# map that stays readable in grey-scale and for colour-blind readers.
SEQUENTIAL_CMAP = "viridis"
DIVERGED_COLOR = "#D55E00"
DIVERGED_MARKER = "x"
MUTED = "#555555"

WIDTH_IN = 7.0  # a full text width of a two-column paper, in inches
PANEL_HEIGHT_IN = 1.8

RC: dict[str, Any] = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.title_fontsize": 7,
    "figure.titlesize": 9.5,
    "figure.titleweight": "bold",
    "axes.prop_cycle": cycler(color=COLORS),
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.6,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.linewidth": 0.35,
    "grid.alpha": 0.6,
    "grid.color": "#c8c8c8",
    "lines.linewidth": 1.3,
    "lines.markersize": 3.5,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.minor.width": 0.4,
    "ytick.minor.width": 0.4,
    "legend.frameon": False,
    "legend.handlelength": 2.2,
    "image.cmap": SEQUENTIAL_CMAP,
    "figure.dpi": 100,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",  # also pulls the caption, drawn below the axes, into the file
    "savefig.pad_inches": 0.06,
    "savefig.facecolor": "white",
    "pdf.fonttype": 42,  # embed TrueType: text in the PDF stays text (selectable, editable)
    "ps.fonttype": 42,
}

CAPTION_FONTSIZE = 6.5

F = TypeVar("F", bound=Callable[..., Any])


def styled(build: F) -> F:
    """Run a figure-building function under `RC` (fonts, colours and widths are read when
    artists are created), without touching matplotlib's global settings."""

    @functools.wraps(build)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with matplotlib.rc_context(RC):
            return build(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def new_figure(
    nrows: int = 1,
    ncols: int = 1,
    *,
    width: float = WIDTH_IN,
    panel_height: float = PANEL_HEIGHT_IN,
    sharex: bool | str = False,
    sharey: bool | str = False,
) -> tuple[Figure, Any]:
    """A constrained-layout figure with a grid of axes (always a 2-D array of Axes).

    The figure is not registered with pyplot, so it needs no `plt.close` to be freed.
    """
    fig = Figure(figsize=(width, panel_height * nrows + 0.5), layout="constrained")
    axes = fig.subplots(nrows, ncols, sharex=sharex, sharey=sharey, squeeze=False)
    return fig, axes


def grid_shape(n_panels: int, max_cols: int = 4) -> tuple[int, int]:
    """(rows, cols) for n small panels, filled row by row, at most `max_cols` wide."""
    cols = max(1, min(max_cols, n_panels))
    return math.ceil(max(1, n_panels) / cols), cols


def hide_unused(axes: Any, n_used: int) -> None:
    """Switch off the trailing axes of a grid that has more cells than panels."""
    for ax in list(axes.flat)[n_used:]:
        ax.set_visible(False)


def add_title(fig: Figure, title: str) -> None:
    """The figure's title; on a figure too narrow for it, a " · " part (the data source)
    moves to a second line instead of running past the edges."""
    bold_glyph_pt = RC["figure.titlesize"] * 0.62
    if len(title) * bold_glyph_pt > fig.get_figwidth() * 72 and " · " in title:
        head, _, tail = title.partition(" · ")
        title = f"{head}\n{tail}"
    fig.suptitle(title)


def add_legend_below(fig: Figure, handles: Sequence[Any], *, title: str | None = None) -> None:
    """A figure-wide legend under the panels, in as many columns as fit the width.

    It sits just below the figure's bottom edge (like the caption, which then goes under it)
    rather than in a constrained-layout "outside" slot: those are misplaced when the figure
    is saved with a tight bounding box, which the caption needs.
    """
    if not handles:
        return
    longest = max(len(str(h.get_label())) for h in handles)
    entry_width_pt = longest * RC["legend.fontsize"] * 0.55 + 30  # text + line sample + gap
    ncols = max(1, min(len(handles), int(fig.get_figwidth() * 72 // entry_width_pt)))
    fig.legend(
        handles=list(handles),
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        bbox_transform=transforms.offset_copy(fig.transFigure, fig=fig, y=2, units="points"),
        ncols=ncols,
        title=title,
        frameon=False,
        fontsize=RC["legend.fontsize"],
        title_fontsize=RC["legend.title_fontsize"],
        columnspacing=1.5,
    )


def add_caption(
    fig: Figure, lines: str | Iterable[str], *, fontsize: float = CAPTION_FONTSIZE
) -> None:
    """Put a small grey footnote (config summary, data source, how seeds were aggregated)
    under the figure, wrapped to the figure's width.

    It is drawn below the figure's bottom edge, or below a legend placed there by
    `add_legend_below`; `savefig`'s tight bounding box grows the saved image to include it,
    so it never overlaps tick labels or legend entries.
    """
    if isinstance(lines, str):
        lines = [lines]
    # Average glyph width is about half the font size; this keeps lines inside the figure.
    chars_per_line = max(40, int(fig.get_figwidth() * 72 / (fontsize * 0.55)))
    wrapped = [
        textwrap.fill(line, chars_per_line, subsequent_indent="  ") for line in lines if line
    ]
    if not wrapped:
        return
    # x: the figure's left edge; y: the bottom of the legend under the figure, if there is
    # one. The coordinates are given as fig.transFigure itself, not as "figure fraction":
    # a tight bounding box shifts transFigure while saving, and only the object follows.
    anchor = (fig.transFigure, fig.legends[-1]) if fig.legends else fig.transFigure
    fig.add_artist(
        Annotation(
            "\n".join(wrapped),
            xy=(0.0, 0.0),
            xycoords=anchor,
            xytext=(2, -4),
            textcoords="offset points",
            ha="left",
            va="top",
            fontsize=fontsize,
            color=MUTED,
            linespacing=1.35,
        )
    )


def savefig(
    fig: Figure,
    path_without_ext: str | Path,
    formats: Sequence[str] = ("png", "pdf"),
    *,
    close: bool = True,
    dpi: float | None = None,
) -> list[Path]:
    """Write `fig` once per format next to each other (`name.png`, `name.pdf`) and return the
    paths. The extension is appended, never substituted, so names such as
    `final_acc_vs_optim.lr` keep their dot. `dpi` replaces RC's savefig.dpi (raster formats)."""
    base = Path(path_without_ext)
    base.parent.mkdir(parents=True, exist_ok=True)
    written = []
    rc = RC if dpi is None else {**RC, "savefig.dpi": dpi}
    with matplotlib.rc_context(rc):
        for fmt in formats:
            path = base.parent / f"{base.name}.{fmt}"
            fig.savefig(path, format=fmt)
            written.append(path)
    if close:
        # Drop the artists now: callers in a loop over many runs keep no reference alive.
        fig.clear()
    return written


def format_steps(ax: Axes, axis: str = "x") -> None:
    """Training steps as 0, 500, 2k, 50k: short tick labels that never collide."""
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_formatter(ticker.FuncFormatter(lambda v, _pos: short_number(v)))
    target.set_major_locator(ticker.MaxNLocator(nbins=5, integer=True, min_n_ticks=2))


def short_number(value: float) -> str:
    """1234 -> '1.2k', 50000 -> '50k', 2e6 -> '2M'; small numbers unchanged."""
    magnitude = abs(value)
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if magnitude >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:g}"


def plain_log_ticks(ax: Axes) -> None:
    """y tick labels 0.2, 0.5, 1, 2 instead of 2×10⁻¹ on a log axis over a few decades
    (losses). Call after plotting: minor ticks are labelled (at 2 and 5) only when the data
    span under two decades, where there is room for them."""
    low, high = ax.dataLim.intervaly
    few_decades = low > 0 and math.log10(high / low) < 2

    def minor_label(value: float, _pos: int) -> str:
        leading_digit = round(value / 10 ** math.floor(math.log10(value)))
        return f"{value:.3g}" if few_decades and leading_digit in (2, 5) else ""

    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _pos: f"{value:.3g}"))
    ax.yaxis.set_minor_formatter(ticker.FuncFormatter(minor_label))


def spans_decades(values: Iterable[float], decades: float = 1.5) -> bool:
    """True when the positive finite values span more than `decades` powers of ten: then a
    log axis shows all of them, a linear one hides the small ones."""
    positive = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    if len(positive) < 2:
        return False
    return math.log10(max(positive) / min(positive)) > decades


def no_data(ax: Axes, message: str = "no data") -> None:
    """Mark an empty panel instead of leaving a blank box the reader has to puzzle over."""
    ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", color=MUTED)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def sequential_colors(n: int) -> list[Any]:
    """n colours along the sequential map; the pale yellow end is cut off (invisible in print)."""
    cmap = matplotlib.colormaps[SEQUENTIAL_CMAP]
    if n <= 1:
        return [cmap(0.0)]
    return [cmap(0.85 * i / (n - 1)) for i in range(n)]
