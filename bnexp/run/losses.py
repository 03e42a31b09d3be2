"""The training losses (`loss=`), by name, and what kind of targets each one needs. Pure.

Both reduce by the mean, over the batch and (for `mse`) over the output units too, as PyTorch's
defaults do: the learning rate of a run is for that mean. A summed loss over N samples and d
outputs is the same objective times N·d, so plain SGD at lr η on the sum takes exactly the steps
of SGD at lr η·N·d on the mean (how finding `ics-linear` matches Santurkar et al.'s rates).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

CLASSIFICATION, REGRESSION = "classification", "regression"


@dataclass(frozen=True)
class LossSpec:
    fn: Callable[[Tensor, Tensor], Tensor]  # (outputs, targets) -> mean loss
    task: str  # the targets it needs: CLASSIFICATION (int64 labels) or REGRESSION (float32)
    elements: Callable[[Tensor], int]  # how many terms the mean averages, for a batch's targets


LOSSES: dict[str, LossSpec] = {
    # Softmax cross-entropy of the logits against class labels (nats per sample).
    "cross_entropy": LossSpec(F.cross_entropy, CLASSIFICATION, lambda y: len(y)),
    # (output - target)^2 averaged over samples and output units (target units squared).
    "mse": LossSpec(F.mse_loss, REGRESSION, lambda y: y.numel()),
}


def loss_spec(name: str) -> LossSpec:
    if name not in LOSSES:
        raise ValueError(f"loss={name!r} is not known: one of {', '.join(LOSSES)}")
    return LOSSES[name]


def uses_accuracy(name: str) -> bool:
    """Whether accuracy means anything for this loss's targets (class labels)."""
    return loss_spec(name).task == CLASSIFICATION
