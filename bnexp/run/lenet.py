"""`model=lenet`: the small Keras CNN of the slides that issue 12 quotes. Pure PyTorch, no I/O.

    Conv2D(10, 5×5) → BN → ReLU → MaxPool 2×2
    Conv2D(20, 5×5) → BN → ReLU → MaxPool 2×2
    Flatten → Dense(100) → BN → ReLU
    Dense(10) (softmax: in the cross-entropy loss)

Valid padding (none), stride 1. On 28×28 MNIST: 24×24×10 → 12×12×10 → 8×8×20 → 4×4×20 = 320
features. The three hidden blocks are `bnexp.run.layers.Block`s (weight layer, norm, act), so
layers.csv gets three rows per log step; the pools sit between blocks, never on a measurement
site. The norm comes from the config like everywhere else (norm=none: no norm, biases kept).

Parameters. Keras reports 38,910 for this network (38,650 trainable): each BN layer of n units
counts 4n, gamma and beta (trainable) and the moving mean and variance (not trainable), and
every Conv2D/Dense keeps its bias. bnexp drops the bias of a weight layer that a centring norm
directly follows (bnexp.run.layers.weight_layer_bias; BN subtracts it again, so it never
learns anything), 10 + 20 + 100 = 130 of them: with BN this module has 38,520 trainable
parameters and 260 running-statistics values, 38,780 in all; Keras's count is that plus the
130 dead biases (tests/run/test_lenet.py checks both).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from bnexp.run.layers import Block, make_activation, weight_layer_bias

CONV_CHANNELS = (10, 20)
KERNEL = 5
DENSE_UNITS = 100
BLOCKS = 3  # hidden blocks: two convolutional, one dense
FIRST_CHANNELS = CONV_CHANNELS[0]  # the config's `width` for model=lenet


def flat_features(input_shape: tuple[int, ...]) -> int:
    """Features after the second pool for images (C, H, W): each conv takes KERNEL - 1 pixels
    off a side, each pool halves (rounding down, as MaxPool2d and Keras do)."""
    _, height, width = input_shape
    for _ in CONV_CHANNELS:
        height, width = (height - KERNEL + 1) // 2, (width - KERNEL + 1) // 2
    if height < 1 or width < 1:
        raise ValueError(f"model=lenet needs images of at least 16×16 pixels, got {input_shape}")
    return CONV_CHANNELS[-1] * height * width


class LeNet(nn.Module):
    def __init__(self, conv_blocks: list[Block], dense_block: Block, num_classes: int):
        super().__init__()
        layers: list[nn.Module] = []
        for block in conv_blocks:
            layers += [block, nn.MaxPool2d(2)]
        # Blocks in forward order, so model.modules() (and layers.hidden_blocks) yields them as
        # hidden layers 1, 2, 3.
        self.features = nn.Sequential(*layers)
        self.dense = dense_block
        self.head = nn.Linear(DENSE_UNITS, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        return self.head(self.dense(x.flatten(1)))


def build_lenet(
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    act: str,
    conv_norm_layer: Callable[[int], nn.Module],
    dense_norm_layer: Callable[[int], nn.Module],
    placement: str = "pre",
    dropout: float = 0.0,
) -> LeNet:
    """The slides' network for images of `input_shape` = (C, H, W). The norm factories make
    the layer after each convolution (feature maps) and after the dense layer (features), e.g.
    bnexp.run.layers.get_norm_layer(cfg, spatial=True) and (cfg, spatial=False)."""
    if len(input_shape) != 3:
        raise ValueError(f"build_lenet needs images shaped (C, H, W), got {tuple(input_shape)}")
    flat = flat_features(input_shape)
    conv_bias = weight_layer_bias(conv_norm_layer, placement)
    blocks, channels = [], input_shape[0]
    for out in CONV_CHANNELS:
        conv = nn.Conv2d(channels, out, kernel_size=KERNEL, padding=0, bias=conv_bias)
        blocks.append(Block(conv, conv_norm_layer(out), make_activation(act), placement, dropout))
        channels = out
    dense = nn.Linear(flat, DENSE_UNITS, bias=weight_layer_bias(dense_norm_layer, placement))
    dense_block = Block(
        dense, dense_norm_layer(DENSE_UNITS), make_activation(act), placement, dropout
    )
    return LeNet(blocks, dense_block, num_classes)
