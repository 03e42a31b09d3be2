"""Internal covariate shift as Santurkar et al. define it through gradients. Pure: no I/O.

Source: S. Santurkar, D. Tsipras, A. Ilyas, A. Madry, "How Does Batch Normalization Help
Optimization?", NeurIPS 2018, arXiv:1805.11604v3, Sec. 2.2, Definition 2.1 (Figure 3 shows it
measured with and without BatchNorm):

    "Definition 2.1. Let L be the loss, W_1^(t), ..., W_k^(t) be the parameters of each of the k
    layers and (x^(t), y^(t)) be the batch of input-label pairs used to train the network at
    time t. We define internal covariate shift (ICS) of activation i at time t to be the
    difference ||G_t,i - G'_t,i||_2, where
        G_t,i  = ∇_{W_i^(t)} L(W_1^(t), ..., W_k^(t); x^(t), y^(t))
        G'_t,i = ∇_{W_i^(t)} L(W_1^(t+1), ..., W_{i-1}^(t+1), W_i^(t), W_{i+1}^(t), ...,
                               W_k^(t); x^(t), y^(t)).
    Here, G_t,i corresponds to the gradient of the layer parameters that would be applied during
    a simultaneous update of all layers (as is typical). On the other hand, G'_t,i is the same
    gradient after all the previous layers have been updated with their new values."

Figure 3's caption: "For a layer we measure the cosine angle (ideally 1) and l2-difference of
the gradients (ideally 0) before and after updates to the preceding layers".

How bnexp reads it:
- layer i is hidden block i (bnexp.run.models.Block); G is the gradient with respect to that block's
  weight matrix (or conv kernel), `block.weight_layer.weight`;
- "updated with their new values" = the step the training run itself is about to take: the
  same optimizer, learning rate, weight decay and state (momentum buffers, Adam moments),
  driven by the full gradient of the same batch. It is taken by a deep copy of the optimizer
  on copies of the parameters; the run's optimizer and model are never stepped;
- `moved="block"` (default): "the parameters of layer j" are all of block j's parameters (its
  weight, bias if any, and its norm's gamma/beta); `moved="weight"`: the weight matrix alone.
  Parameters outside the hidden blocks (the classifier head) come after every hidden layer and
  never move;
- every pass runs in the model's current mode (train mode: batch statistics) through
  bnexp.run.sandbox, so the model, its buffers (BN running statistics), the optimizer and the RNG
  are exactly as they were after the call: a run with this measurement on trains
  bit-identically to one with it off. Call it just before the logged step's forward pass (or
  between its backward pass and optimizer.step()), outside any hook context;
- layer 1 has no preceding layer, so G'_1 = G_1 by definition: its row is 0 and 1 exactly, not
  a measurement.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnexp.run.sandbox import leaves, sandbox, trainable_parameters

LossFn = Callable[[Tensor, Tensor], Tensor]
MOVED_CHOICES = ("block", "weight")


@dataclass(frozen=True)
class InternalCovariateShift:
    """Per hidden layer 1 … k (index 0 is layer 1)."""

    diff_norm: tuple[float, ...]  # ||G_i - G'_i||_2: Santurkar's ICS (loss units per weight unit)
    cosine: tuple[float, ...]  # cos(G_i, G'_i); NaN where either gradient is zero
    grad_norm: tuple[float, ...]  # ||G_i||_2
    grad_norm_after: tuple[float, ...]  # ||G'_i||_2


def _norm(t: Tensor) -> float:
    return float(t.double().norm())


def _cosine(a: Tensor, b: Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    denominator = a.norm() * b.norm()
    return float(a @ b / denominator) if denominator > 0 else float("nan")


def _updated_parameters(
    optimizer: torch.optim.Optimizer, grads: dict[int, Tensor | None]
) -> dict[int, Tensor]:
    """The values the optimizer's next step would give each of its parameters (by id of the
    real parameter), driven by `grads`; the real optimizer and parameters are not touched."""
    shadow = copy.deepcopy(optimizer)  # clones the parameters and the state, keeps the mapping
    real = [p for group in optimizer.param_groups for p in group["params"]]
    copies = [p for group in shadow.param_groups for p in group["params"]]
    for p, p_copy in zip(real, copies, strict=True):
        grad = grads.get(id(p))
        # A clone: optimizers may work on the gradient in place; G must stay as computed.
        p_copy.grad = None if grad is None else grad.detach().clone()
    shadow.step()
    return {id(p): p_copy.detach() for p, p_copy in zip(real, copies, strict=True)}


def internal_covariate_shift(
    model: nn.Module,
    blocks: Sequence[nn.Module],
    x: Tensor,
    y: Tensor,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn = F.cross_entropy,
    moved: str = "block",
) -> InternalCovariateShift:
    """Santurkar's Definition 2.1 at the current step, for every hidden block in `blocks`
    (in forward order; each has `.weight_layer`), on the batch (x, y). See the module docstring.

    Cost: one forward and backward pass for G, one optimizer step on copies, then one forward
    and (partial) backward pass per layer 2 … k."""
    if moved not in MOVED_CHOICES:
        raise ValueError(f"moved={moved!r} is not known: choose one of {', '.join(MOVED_CHOICES)}")
    params = trainable_parameters(model)
    name_of = {id(p): name for name, p in params.items()}
    weight_names = [name_of[id(block.weight_layer.weight)] for block in blocks]
    if moved == "block":
        moved_names = [
            [name_of[id(p)] for p in block.parameters() if id(p) in name_of] for block in blocks
        ]
    else:
        moved_names = [[name] for name in weight_names]

    with sandbox(model) as forward:
        # G: the gradient of every parameter at step t, as the training step computes it.
        start = leaves(params)
        loss = loss_fn(forward(start, x), y)
        grad_list = torch.autograd.grad(loss, list(start.values()), allow_unused=True)
        grads = dict(zip(params, grad_list, strict=True))
        after_step = _updated_parameters(
            optimizer, {id(params[name]): g for name, g in grads.items()}
        )

        def zero_if_none(name: str) -> Tensor:
            g = grads[name]
            return torch.zeros_like(params[name]) if g is None else g

        g_before = [zero_if_none(name) for name in weight_names]
        g_after = [g_before[0]]  # layer 1: no preceding layer, G' = G by definition
        current = leaves(params, requires_grad=False)
        for i in range(1, len(blocks)):
            for name in moved_names[i - 1]:  # layer i-1 takes its update (1 … i-2 already have)
                moved_value = after_step.get(id(params[name]))
                if moved_value is not None:  # a parameter outside the optimizer never moves
                    current[name] = moved_value
            weight = weight_names[i]
            current[weight] = params[weight].detach().requires_grad_(True)
            loss = loss_fn(forward(current, x), y)
            (g,) = torch.autograd.grad(loss, [current[weight]], allow_unused=True)
            g_after.append(torch.zeros_like(params[weight]) if g is None else g)
            current[weight] = params[weight].detach()

    pairs = list(zip(g_before, g_after, strict=True))
    # Layer 1 (G' = G by definition): 0 and 1 exactly (NaN if G is zero, as for any layer).
    diff_norm = [0.0] + [_norm(a.double() - b.double()) for a, b in pairs[1:]]
    cosine = [1.0 if _norm(g_before[0]) > 0 else float("nan")]
    cosine += [_cosine(a, b) for a, b in pairs[1:]]
    return InternalCovariateShift(
        diff_norm=tuple(diff_norm),
        cosine=tuple(cosine),
        grad_norm=tuple(_norm(g) for g in g_before),
        grad_norm_after=tuple(_norm(g) for g in g_after),
    )
