"""The MLP, and `build_model`: the network a config describes (MLP or CNN). Pure PyTorch: no
I/O, no Hydra; everything they need comes as arguments.

Every hidden block is a `bnexp.run.layers.Block` (weight layer, norm, activation), which the
measurements rely on.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from bnexp.run.cnn import build_cnn
from bnexp.run.layers import Block, get_norm_layer, make_activation, seed_noise, weight_layer_bias
from bnexp.run.lenet import build_lenet


class MLP(nn.Module):
    def __init__(self, in_features: int, num_classes: int, blocks: list[Block], width: int):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def build_mlp(
    in_features: int,
    num_classes: int,
    *,
    depth: int,
    width: int,
    act: str,
    norm_layer: Callable[[int], nn.Module],
    placement: str = "pre",
    dropout: float = 0.0,
) -> MLP:
    """`depth` hidden blocks of `width` units: Linear, norm_layer(width), activation `act`
    (then dropout with probability `dropout`, if > 0).
    norm_layer: a factory such as bnexp.run.layers.get_norm_layer(cfg, spatial=False)."""
    bias = weight_layer_bias(norm_layer, placement)
    blocks = []
    for i in range(depth):
        linear = nn.Linear(in_features if i == 0 else width, width, bias=bias)
        blocks.append(Block(linear, norm_layer(width), make_activation(act), placement, dropout))
    return MLP(in_features, num_classes, blocks, width)


def initialize(model: nn.Module, scheme: str, std: float = 0.01, gain: float = 1.0) -> None:
    """Re-initialise every Linear/Conv weight; biases become zero (except for `default`)."""
    if scheme == "default":
        return
    for module in model.modules():
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            continue
        if scheme == "gaussian":
            nn.init.normal_(module.weight, 0.0, std)
        elif scheme == "xavier":
            nn.init.xavier_normal_(module.weight)
        elif scheme == "kaiming":
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        elif scheme == "orthogonal":  # rows (or columns, if fewer) orthonormal, times gain
            nn.init.orthogonal_(module.weight, gain=gain)
        else:
            raise ValueError(f"unknown init scheme {scheme!r}")
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def build_model(cfg, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The network a `bnexp.run.config.Config` describes, initialised as it asks."""
    if cfg.model.name.value == "lenet":  # fixed architecture: depth and width are not read
        model = build_lenet(
            input_shape, num_classes, act=cfg.act.value,
            conv_norm_layer=get_norm_layer(cfg, spatial=True),
            dense_norm_layer=get_norm_layer(cfg, spatial=False),
            placement=cfg.placement.value, dropout=cfg.dropout,
        )  # fmt: skip
        initialize(model, cfg.init.value, cfg.init_std, cfg.init_gain)
        seed_noise(model, cfg.seed)
        return model
    spatial = cfg.model.name.value == "cnn"
    common = dict(
        depth=cfg.depth, width=cfg.width, act=cfg.act.value,
        norm_layer=get_norm_layer(cfg, spatial=spatial), placement=cfg.placement.value,
        dropout=cfg.dropout,
    )  # fmt: skip
    if spatial:
        model = build_cnn(input_shape, num_classes, **common)
    else:
        in_features = 1
        for size in input_shape:
            in_features *= size
        model = build_mlp(in_features, num_classes, **common)
    initialize(model, cfg.init.value, cfg.init_std, cfg.init_gain)
    seed_noise(model, cfg.seed)  # noisy norms draw from their own generators (bnexp/run/layers.py)
    return model
