"""The loss landscape along the gradient (Santurkar et al.'s smoothness measures). Pure: no I/O.

Source: S. Santurkar, D. Tsipras, A. Ilyas, A. Madry, "How Does Batch Normalization Help
Optimization?", NeurIPS 2018, arXiv:1805.11604v3.

Sec. 3.2: "for each given step in the training process, we compute the gradient of the loss at
that step and measure how the loss changes as we move in that direction - see Figure 4(a)."
... "we make analogous measurements for the l2 distance between the loss gradient at a given
point of the training and the gradients corresponding to different points along the original
gradient direction" (Figure 4(b), "gradient predictiveness") ... "we plot in Figure 4(c) the
'effective' beta-smoothness ... ('Effective' refers here to measuring the change of gradients
as we move in the direction of the gradients.)" Figure 4's caption: "The 'effective'
beta-smoothness (c) refers to the maximum difference (in l2-norm) in gradient over distance
moved in that direction." Footnote 3: "f is beta-smooth if its gradients are beta-Lipschitz,
i.e., if ||∇f(x1) - ∇f(x2)|| <= beta ||x1 - x2||".

App. A.2.2: "we essentially take steps of different lengths in the direction of the gradient and
measure the loss values obtained at each step. Note that this is not a training procedure, but
an evaluation of the local loss landscape at every step of the training process. For VGG we
consider steps of length ranging from [1/2, 4] × step size, whereas for DLN we choose
[1/100, 30] × step size. Here step size denotes the hyperparameter setting with which the
network is being trained." (With their VGG learning rate 0.1 that is η in [0.05, 0.4], the
"η = 0.4" cap of Figure 4's caption.)

What bnexp computes, at weights W and batch (x, y):
- g = ∇L(W) for ALL trainable parameters (weights, biases, norm gamma/beta, the head): the full
  gradient, as Santurkar does; parameters that do not require a gradient stay where they are;
- for each step size η = m·lr, m in `step_multipliers` (default: 8 values log-spaced over
  [1/2, 4], endpoints included, ratio 8^(1/7) ≈ 1.35 between neighbours; the paper's Figure 11
  draws this axis on a log scale), the point W − η·g, DOWN the gradient (the direction a
  gradient step takes; a small η lowers the loss), its loss L(W − ηg) and gradient ∇L(W − ηg);
- loss_range = max − min of L(W − ηg) over the sampled η ("variation of loss", Figure 4(a)'s
  shaded region; L(W) itself, η = 0, is reported apart as `loss_start` and not in the range);
- gradient_predictiveness = max over η of ||∇L(W − ηg) − g||_2 (Figure 4(b));
- beta_smoothness = max over η of ||∇L(W − ηg) − g||_2 / ||η·g||_2 (Figure 4(c), "effective").
A non-finite loss or gradient along the way (a diverging step) makes the maxima NaN or inf: a
result, not an error.

Every pass runs in the model's current mode through bnexp.run.sandbox: the model, its buffers, the
optimizer (never used) and the RNG are exactly as they were after the call. Cost: 1 + len(
step_multipliers) forward and backward passes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnexp.run.sandbox import leaves, sandbox, trainable_parameters

LossFn = Callable[[Tensor, Tensor], Tensor]
STEP_RANGE = (0.5, 4.0)  # Santurkar App. A.2.2, VGG: [1/2, 4] × the training learning rate
STEP_POINTS = 8
DEFAULT_STEP_MULTIPLIERS: tuple[float, ...] = tuple(
    float(m) for m in np.geomspace(STEP_RANGE[0], STEP_RANGE[1], STEP_POINTS)
)


@dataclass(frozen=True)
class LossLandscape:
    step_sizes: tuple[float, ...]  # η = multiplier × lr, absolute (weight units per gradient unit)
    losses: tuple[float, ...]  # L(W − η g), one per η
    grad_diff_norms: tuple[float, ...]  # ||∇L(W − η g) − g||_2, one per η
    loss_start: float  # L(W)
    grad_norm: float  # ||g||_2 over all trainable parameters

    @property
    def loss_min(self) -> float:
        return float(torch.tensor(self.losses, dtype=torch.float64).min())

    @property
    def loss_max(self) -> float:
        return float(torch.tensor(self.losses, dtype=torch.float64).max())

    @property
    def loss_range(self) -> float:
        """max − min of the loss over the sampled η: Santurkar's "variation of loss"."""
        return self.loss_max - self.loss_min

    @property
    def gradient_predictiveness(self) -> float:
        """max over η of ||∇L(W − η g) − g||_2."""
        return float(torch.tensor(self.grad_diff_norms, dtype=torch.float64).max())

    @property
    def beta_smoothness(self) -> float:
        """max over η of ||∇L(W − η g) − g||_2 / ||η g||_2 (NaN if g = 0)."""
        diffs = torch.tensor(self.grad_diff_norms, dtype=torch.float64)
        distances = torch.tensor(self.step_sizes, dtype=torch.float64) * self.grad_norm
        return float((diffs / distances).max())


def _distance(a: dict[str, Tensor | None], b: dict[str, Tensor | None]) -> float:
    """||a − b||_2 over all parameters together; a missing gradient counts as 0. The float32
    difference is exactly rounded; the sum of squares is accumulated in float64."""
    parts = []
    for name, ga in a.items():
        gb = b[name]
        if ga is not None and gb is not None:
            parts.append((ga - gb).flatten())
        elif ga is not None or gb is not None:
            parts.append((ga if gb is None else gb).flatten())
    if not parts:
        return 0.0
    return float(torch.linalg.vector_norm(torch.cat(parts), dtype=torch.float64))


@torch.no_grad()
def _moved(p: Tensor, g: Tensor | None, eta: float) -> Tensor:
    """p − η·g with exactly p's strides: `p - eta * g` may pick other strides for an ambiguous
    shape (a conv kernel with one input channel is both NCHW- and NHWC-contiguous), and a
    kernel that looks NCHW made the default CNN's passes 1.5x slower here."""
    if g is None:
        return p.detach()
    return p.detach().clone().sub_(g, alpha=eta)


def loss_landscape(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    lr: float,
    loss_fn: LossFn = F.cross_entropy,
    step_multipliers: Sequence[float] = DEFAULT_STEP_MULTIPLIERS,
) -> LossLandscape:
    """Loss and gradient along −g from the current weights; see the module docstring."""
    if lr <= 0 or not step_multipliers or min(step_multipliers) <= 0:
        raise ValueError(
            f"loss_landscape needs lr > 0 and positive step multipliers, got lr={lr}, "
            f"step_multipliers={tuple(step_multipliers)}"
        )
    params = trainable_parameters(model)
    step_sizes = tuple(float(m) * lr for m in step_multipliers)

    def loss_and_grads(
        forward, values: dict[str, Tensor]
    ) -> tuple[float, dict[str, Tensor | None]]:
        loss = loss_fn(forward(values, x), y)
        grads = torch.autograd.grad(loss, list(values.values()), allow_unused=True)
        return float(loss.detach()), dict(zip(values, grads, strict=True))

    with sandbox(model) as forward:
        loss_start, g = loss_and_grads(forward, leaves(params))
        grad_norm = _distance(g, dict.fromkeys(g))
        losses, diffs = [], []
        for eta in step_sizes:
            moved = {name: _moved(p, g[name], eta) for name, p in params.items()}
            loss, g_moved = loss_and_grads(forward, leaves(moved))
            losses.append(loss)
            diffs.append(_distance(g_moved, g))
    return LossLandscape(
        step_sizes=step_sizes,
        losses=tuple(losses),
        grad_diff_norms=tuple(diffs),
        loss_start=loss_start,
        grad_norm=grad_norm,
    )
