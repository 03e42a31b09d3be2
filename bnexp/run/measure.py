"""The opt-in optimisation measurements of one log step, as CSV cells. Pure: no I/O.

`measure.ics` runs bnexp.run.ics (Santurkar et al. 2018, Definition 2.1) and `measure.landscape`
bnexp.run.landscape (their Sec. 3.2) on the step's training batch, with the run's own loss
(`loss`: cross-entropy or MSE), optimizer and learning rate. train.py calls `optimisation_cells` at a
measured log step (not the final one: no update follows it) before the step's forward pass and
outside the probes' hooks, as both modules require; the run then trains bit-identically to one
with the measurements off.

Cells (rundir.LAYER_MEASURE_COLUMNS, rundir.METRIC_MEASURE_COLUMNS), None where not measured:
- per hidden layer: ics_diff_norm = ||G_i - G'_i||_2, ics_cosine = cos(G_i, G'_i). Layer 1 has
  no preceding layer, so G'_1 = G_1 by definition (0 and 1 exactly): its cells stay empty,
  since nothing was measured there;
- per step: landscape_loss_range (loss units), landscape_grad_pred (||∇L(W - ηg) - g||_2
  maximised over η, gradient units) and landscape_beta (that difference over ||ηg||,
  maximised over η).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from bnexp.run.config import Config
from bnexp.run.ics import internal_covariate_shift
from bnexp.run.landscape import loss_landscape
from bnexp.run.losses import loss_spec


def step_multipliers(cfg: Config) -> tuple[float, ...]:
    """measure.landscape_points multipliers of the learning rate, log-spaced over
    measure.landscape_range, both ends included."""
    low, high = cfg.measure.landscape_range
    return tuple(float(m) for m in np.geomspace(low, high, cfg.measure.landscape_points))


def optimisation_cells(
    cfg: Config,
    model: nn.Module,
    blocks: Sequence[nn.Module],
    x: Tensor,
    y: Tensor,
    optimizer: torch.optim.Optimizer,
) -> tuple[list[list[float | None]], list[float | None]]:
    """(one [ics_diff_norm, ics_cosine] per hidden layer, [landscape_loss_range,
    landscape_grad_pred, landscape_beta]); None for what is off."""
    layer_cells: list[list[float | None]] = [[None, None] for _ in blocks]
    metric_cells: list[float | None] = [None, None, None]
    loss_fn = loss_spec(cfg.loss.value).fn  # the run's own loss
    if cfg.measure.ics:
        ics = internal_covariate_shift(
            model, blocks, x, y, optimizer, loss_fn, moved=cfg.measure.ics_moved.value
        )
        for layer in range(1, len(blocks)):  # layer 1: G' = G by definition, not measured
            layer_cells[layer] = [ics.diff_norm[layer], ics.cosine[layer]]
    if cfg.measure.landscape:
        lr = optimizer.param_groups[0]["lr"]
        landscape = loss_landscape(model, x, y, lr, loss_fn, step_multipliers(cfg))
        metric_cells = [
            landscape.loss_range,
            landscape.gradient_predictiveness,
            landscape.beta_smoothness,
        ]
    return layer_cells, metric_cells
