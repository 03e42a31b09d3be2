"""Figures of the findings `ics`, `ics-linear` and `smoothness` (Santurkar et al. 2018, Figures 3
and 4), drawn from the measure.ics / measure.landscape columns. Pure: returns matplotlib Figures.

Registered in bnexp.reproduce.finding_figures.FIGURES; takes its FigureContext (duck-typed
here, so that this module does not import that one).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from bnexp.analysis import style
from bnexp.analysis.draw import decorate, draw_mean_band
from bnexp.reproduce.claims import select

BN_COLOR, PLAIN_COLOR, NOISY_COLOR = style.COLORS[0], style.COLORS[1], style.COLORS[2]
VARIANTS = (
    ({"norm": "none"}, PLAIN_COLOR, "Without BN", "--"),
    ({"norm": "batch"}, BN_COLOR, "With BN", "-"),
    ({"norm": "noisy"}, NOISY_COLOR, "With noisy BN", "-."),
)


def _curves(ctx: Any, where: dict, column: str, per_layer: bool) -> pd.DataFrame:
    """One column per seed, one row per measured step: `column` (per-layer columns: the median
    over hidden layers 2 … depth, as the claims summarise them)."""
    runs = select(ctx.tables.runs, where)
    runs = runs[runs["status"].isin(["completed", "diverged"])]
    frame = ctx.tables.layers if per_layer else ctx.tables.metrics
    if runs.empty or column not in frame.columns:
        return pd.DataFrame()
    curves = {}
    for _, run in runs.iterrows():
        rows = frame[(frame["run_id"] == run["run_id"])]
        if per_layer:
            rows = rows[rows["layer"] >= 2]
        series = rows.groupby("step")[column].median().dropna()
        if not series.empty:
            curves[run["seed"]] = series
    return pd.DataFrame(curves).sort_index() if curves else pd.DataFrame()


def _panel(ax, ctx, variants, column: str, per_layer: bool, log: bool) -> None:
    drawn = False
    for where, color, label, ls in variants:
        curves = _curves(ctx, where, column, per_layer)
        if not curves.empty:
            draw_mean_band(ax, curves, color, label=label, linestyle=ls)
            drawn = True
    if not drawn:
        ax.text(0.5, 0.5, "no runs", transform=ax.transAxes, ha="center", va="center")
    elif log:
        ax.set_yscale("log")
    ax.set_xlabel("training steps")


def _handles(variants) -> list[Line2D]:
    return [Line2D([], [], color=c, linestyle=ls, label=label) for _, c, label, ls in variants]


@style.styled
def ics(ctx: Any) -> Figure:
    """Santurkar et al.'s Figure 3 on an MLP: (a) ||G - G'||_2 and (b) cos(G, G') over training,
    with BN, without BN and with noisy BN."""
    fig = Figure(figsize=(style.WIDTH_IN, 2.8), layout="constrained")
    ax_diff, ax_cos = fig.subplots(1, 2)
    _panel(ax_diff, ctx, VARIANTS, "ics_diff_norm", per_layer=True, log=True)
    ax_diff.set_title("(a) l2-difference ||G - G'|| (ideally 0)")
    ax_diff.set_ylabel("||G - G'||_2")
    _panel(ax_cos, ctx, VARIANTS, "ics_cosine", per_layer=True, log=False)
    ax_cos.set_title("(b) cosine of G and G' (ideally 1)")
    ax_cos.set_ylabel("cos(G, G')")
    caption = [
        "Definition 2.1: G = dL/dW_i at step t, G' = the same on the same batch after layers "
        "1..i-1 took the step's update. Per run the median over hidden layers 2..depth (layer "
        "1: G' = G); line = seed mean, band = min-max over seeds. Published (Santurkar et al. "
        "2018, Fig. 3, VGG on CIFAR-10 and a deep linear network): curves only, BN 'similar, or "
        "even worse'; no number printed.",
        *ctx.caption,
    ]
    return decorate(
        fig,
        "Internal covariate shift through gradients, with and without BN (cf. Santurkar et al. 2018, Fig. 3)",
        caption,
        handles=_handles(VARIANTS),
    )


# Finding ics-linear's learning rates: ours (of the mean loss) and the paper's (of the summed
# loss over 1,000 samples x 10 outputs), bnexp/reproduce/findings/ics-linear.yaml.
LINEAR_RATES = ((0.01, "1e-6"), (0.001, "1e-7"))


@style.styled
def ics_linear(ctx: Any) -> Figure:
    """Santurkar et al.'s Figure 3, deep linear network panel: per learning rate (rows), (a)
    ||G - G'||_2, (b) cos(G, G') and (c) the training loss over training, with and without BN."""
    fig = Figure(figsize=(style.WIDTH_IN, 4.6), layout="constrained")
    axes = fig.subplots(len(LINEAR_RATES), 3, sharex=True)
    for row, (lr, paper_lr) in zip(axes, LINEAR_RATES, strict=True):
        variants = [({**where, "optim.lr": lr}, *rest) for where, *rest in VARIANTS[:2]]
        ax_diff, ax_cos, ax_loss = row
        _panel(ax_diff, ctx, variants, "ics_diff_norm", per_layer=True, log=True)
        ax_diff.set_ylabel("||G - G'||_2")
        _panel(ax_cos, ctx, variants, "ics_cosine", per_layer=True, log=False)
        ax_cos.set_ylabel("cos(G, G')")
        ax_cos.axhline(0.0, color="0.6", linewidth=0.8, linestyle=":")
        _panel(ax_loss, ctx, variants, "train_loss", per_layer=False, log=True)
        ax_loss.set_ylabel("training loss (MSE)")
        where = f"lr {lr:g} (paper {paper_lr})"
        ax_diff.set_title(f"(a) ||G - G'||, {where}")
        ax_cos.set_title(f"(b) cos(G, G'), {where}")
        ax_loss.set_title(f"(c) training loss, {where}")
    caption = [
        "Deep linear network: 24 hidden Linear(10, 10) blocks (with or without BN) + a Linear(10, "
        "10) output layer, Glorot init, full-batch SGD on 1,000 samples x ~ N(0, I), y = A x. "
        "Our lr is of the mean loss; the paper's of the sum over 1,000 x 10 terms (x 1e-4). G, G' "
        "as Definition 2.1, per run the median over hidden layers 2..24; line = seed mean, band = "
        "min-max over seeds. Published (Santurkar et al. 2018, Fig. 3, DLN): curves only; with BN "
        "'almost uncorrelated' gradients; no number printed.",
        *ctx.caption,
    ]
    return decorate(
        fig,
        "Internal covariate shift in a deep linear network, with and without BN (cf. Santurkar et al. 2018, Fig. 3)",
        caption,
        handles=_handles(VARIANTS[:2]),
    )


@style.styled
def smoothness(ctx: Any) -> Figure:
    """Santurkar et al.'s Figure 4 on an MLP: (a) loss range, (b) gradient predictiveness and
    (c) effective beta-smoothness along the gradient, over training, with and without BN."""
    variants = VARIANTS[:2]
    fig = Figure(figsize=(style.WIDTH_IN, 2.6), layout="constrained")
    axes = fig.subplots(1, 3)
    panels = (
        ("landscape_loss_range", "(a) loss range", "max - min loss"),
        ("landscape_grad_pred", "(b) gradient predictiveness", "max ||grad(W - eta g) - g||"),
        ("landscape_beta", "(c) effective beta-smoothness", "max ||Delta grad|| / ||eta g||"),
    )
    for ax, (column, title, ylabel) in zip(axes, panels, strict=True):
        _panel(ax, ctx, variants, column, per_layer=False, log=True)
        ax.set_title(title)
        ax.set_ylabel(ylabel)
    early = np.nan
    for claim in getattr(ctx.finding, "claims", []):
        early = (claim.get("args") or {}).get("early_steps", early)
    if np.isfinite(early):
        for ax in axes:
            ax.axvline(early, color="0.6", linewidth=0.8, linestyle=":")
    caption = [
        "At each measured step: g = the full gradient on the training batch; loss and gradient "
        "at W - eta*g for 8 step sizes eta log-spaced over [0.5, 4] x lr (App. A.2.2). Line = "
        "seed mean, band = min-max over seeds; dotted: the end of the early-training window "
        "the claims read. Published (Santurkar et al. 2018, Fig. 4, VGG on CIFAR-10): curves "
        "only, all three smaller with BN; no number printed.",
        *ctx.caption,
    ]
    return decorate(
        fig,
        "The loss landscape along the gradient, with and without BN (cf. Santurkar et al. 2018, Fig. 4)",
        caption,
        handles=_handles(variants),
    )
