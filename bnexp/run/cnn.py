"""A small VGG-style CNN whose hidden blocks are `bnexp.run.layers.Block`s. Pure PyTorch, no I/O.

Architecture for `depth` blocks of 3×3 convolutions (padding 1, stride 1):

    stage 1: blocks at full resolution, `width` channels
    2×2 max-pool
    stage 2: blocks at 1/2 resolution, 2·width channels
    2×2 max-pool
    stage 3: blocks at 1/4 resolution, 4·width channels
    global average pool → Linear(channels of the last block, num_classes)

There are min(depth, 3) stages; the blocks are shared out as evenly as possible, earlier stages
taking the remainder (depth 1 → [1]; 2 → [1, 1]; 3 → [1, 1, 1]; 4 → [2, 1, 1];
10 → [4, 3, 3]). Doubling the channels when the resolution halves keeps every block's cost
about the same (VGG's rule), and two pools suit both 28×28 (MNIST → 14 → 7) and 32×32
(CIFAR-10 → 16 → 8) inputs at any depth 1 … 10 (or more).

Each block is conv → norm → act (placement "pre") or conv → act → norm ("post"); the pool
sits after a stage's last block, outside the blocks, so it never touches a measurement site.
The conv bias is dropped when a norm directly follows the conv (it would be subtracted away).

Channels only ever grow (width, 2·width, 4·width), so a tracked channel `track_unit` < width
and a `norm.groups` that divides `width` are valid for every block.

The weights (and so every feature map) are in channels-last memory format (NHWC strides; the
tensors are still indexed N×C×H×W): on this machine's CPU a training step of the default CNN is
1.1-1.5x faster that way at width 32 for every norm (docs/cnn.md). The input may come in either format;
the first convolution converts it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from bnexp.run.layers import Block, make_activation, weight_layer_bias

MAX_STAGES = 3
CHANNELS_LAST = True  # memory format of the weights and feature maps (measured: faster here)


def stage_sizes(depth: int) -> list[int]:
    """How many blocks each resolution stage holds (earlier stages take the remainder)."""
    stages = min(depth, MAX_STAGES)
    base, extra = divmod(depth, stages)
    return [base + (1 if i < extra else 0) for i in range(stages)]


def block_channels(depth: int, width: int) -> list[int]:
    """Output channels of hidden block 1 … depth: width, doubled at each new stage."""
    return [width * 2**stage for stage, size in enumerate(stage_sizes(depth)) for _ in range(size)]


class CNN(nn.Module):
    def __init__(self, stages: list[list[Block]], num_classes: int, channels: int):
        super().__init__()
        layers: list[nn.Module] = []
        for i, blocks in enumerate(stages):
            if i > 0:
                layers.append(nn.MaxPool2d(2))
            layers.extend(blocks)
        # One Sequential in forward order: model.modules() (and so layers.hidden_blocks)
        # yields the Blocks as hidden layers 1 … depth.
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        return self.head(x.mean(dim=(2, 3)))  # global average pooling over H×W


def build_cnn(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    depth: int,
    width: int,
    act: str,
    norm_layer: Callable[[int], nn.Module],
    placement: str = "pre",
    channels_last: bool | None = None,
    dropout: float = 0.0,
) -> CNN:
    """The CNN for images of `input_shape` = (C, H, W); see the module docstring.
    norm_layer: a factory such as bnexp.run.layers.get_norm_layer(cfg, spatial=True)."""
    if len(input_shape) != 3:
        raise ValueError(f"build_cnn needs images shaped (C, H, W), got {tuple(input_shape)}")
    in_channels = input_shape[0]
    bias = weight_layer_bias(norm_layer, placement)
    stages, channels = [], in_channels
    for stage, size in enumerate(stage_sizes(depth)):
        blocks = []
        for _ in range(size):
            out = width * 2**stage
            conv = nn.Conv2d(channels, out, kernel_size=3, padding=1, bias=bias)
            blocks.append(Block(conv, norm_layer(out), make_activation(act), placement, dropout))
            channels = out
        stages.append(blocks)
    model = CNN(stages, num_classes, channels)
    use_channels_last = CHANNELS_LAST if channels_last is None else channels_last
    if use_channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model
