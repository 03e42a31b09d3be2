"""Batched data augmentation on tensors: no per-sample Python loop, no PIL.

`random_crop_flip` is the standard CIFAR-10 augmentation (random 32×32 crop of the image padded
by 4 pixels on each side, then a horizontal flip with probability 1/2), done for a whole batch
with one pad and one gather. On a batch of 128 CIFAR images it costs about 0.3 ms on one core
here (a per-sample loop: about 3 ms; the CNN's own step: about 90 ms).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

PAD = 4  # pixels of padding on each side before the crop


def random_crop_flip(x: Tensor, generator: torch.Generator, pad: int = PAD) -> Tensor:
    """A random H×W crop of each zero-padded image, horizontally flipped with probability 1/2.

    x: float N×C×H×W, already standardised per channel, so the zero padding is the dataset's
    mean colour, on any device. Deterministic given `generator`, a CPU generator (which draws,
    in this order, the N crop offsets and the N flips): the same crops on every device, whose
    3N integers are then copied to x's device. Returns a new contiguous N×C×H×W tensor.
    """
    n, c, h, w = x.shape
    device = x.device
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)  # top, left in [0, 2·pad]
    flip = torch.randint(0, 2, (n,), generator=generator).bool()
    # non_blocking: staged at once from pageable memory, without waiting for the GPU's queue.
    offsets, flip = offsets.to(device, non_blocking=True), flip.to(device, non_blocking=True)
    padded = F.pad(x, (pad, pad, pad, pad))
    padded_w = w + 2 * pad
    # For every sample, the flat position (in its padded H'×W' plane) of each output pixel; a
    # flip only reverses the column order. One gather then reads every channel of the batch.
    rows = offsets[:, :1] + torch.arange(h, device=device)  # N×H
    columns = torch.arange(w, device=device)
    columns = offsets[:, 1:] + torch.where(flip[:, None], w - 1 - columns, columns)  # N×W
    index = (
        (rows[:, :, None] * padded_w + columns[:, None, :]).view(n, 1, h * w).expand(n, c, h * w)
    )
    return padded.reshape(n, c, -1).gather(2, index).view(n, c, h, w)
