"""Forward/backward hooks that capture what the statistics need, attached only on log steps.

The hooks live inside a context manager, so a training step that is not logged runs the bare
model with no hook at all (fastai's `Hooks` and mup's coord check work the same way).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from bnexp.run.layers import Block, has_running_stats


@dataclass
class Captured:
    """What one forward (and backward) pass showed at each hidden layer's activation."""

    pre: list[Tensor | None] = field(default_factory=list)  # input of the activation
    act: list[Tensor | None] = field(default_factory=list)  # output of the activation
    grad_act: list[Tensor | None] = field(default_factory=list)  # dL/d(output), after backward


@contextmanager
def capture(blocks: list[Block], *, grads: bool = True, outputs: bool = True) -> Iterator[Captured]:
    captured = Captured(
        pre=[None] * len(blocks), act=[None] * len(blocks), grad_act=[None] * len(blocks)
    )

    def forward_hook(index: int):
        def hook(_module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            captured.pre[index] = inputs[0].detach()
            if outputs:
                captured.act[index] = output.detach()
            if grads and output.requires_grad:
                output.register_hook(lambda grad: captured.grad_act.__setitem__(index, grad))

        return hook

    handles = [block.act.register_forward_hook(forward_hook(i)) for i, block in enumerate(blocks)]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def frozen_running_stats(model: nn.Module) -> Iterator[None]:
    """Forward passes in train mode that leave every norm's running statistics as they were.

    Every module with running statistics (`running_mean`/`running_var` buffers and
    `track_running_stats` on: torch's BatchNorm, batch renorm, any norm built like them) gets
    `track_running_stats` off for the duration. In train mode that makes BatchNorm normalise
    with the batch's own statistics and neither update the running buffers nor count the batch
    (torch's _BatchNorm.forward); a norm of its own must honour the flag the same way
    (bnexp/run/renorm.py does). No buffer is copied, which saved ~0.1 ms a log step over
    save/restore.
    """
    tracking = [module for module in model.modules() if has_running_stats(module)]
    for module in tracking:
        module.track_running_stats = False
    try:
        yield
    finally:
        for module in tracking:
            module.track_running_stats = True


def probe_pre_activations(model: nn.Module, blocks: list[Block], probe_x: Tensor) -> list[Tensor]:
    """Each hidden layer's activation input on the fixed probe batch, the net in train mode."""
    with (
        torch.no_grad(),
        frozen_running_stats(model),
        capture(blocks, grads=False, outputs=False) as seen,
    ):
        model(probe_x)
    return seen.pre
