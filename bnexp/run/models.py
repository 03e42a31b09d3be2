"""The networks. Pure PyTorch: no I/O, no Hydra; everything they need comes as arguments.

Every hidden block exposes the same three parts, which the measurements rely on:
`block.weight_layer` (Linear or Conv2d), `block.norm` and `block.act` (the activation module,
whose input is the "pre" measurement site and whose output is the "act" site).
"""

from __future__ import annotations

from torch import Tensor, nn

from bnexp.run.layers import make_activation, make_norm, seed_noise


class Block(nn.Module):
    """weight layer -> norm -> act (placement "pre") or weight layer -> act -> norm ("post")."""

    def __init__(self, weight_layer: nn.Module, norm: nn.Module, act: nn.Module, placement: str):
        super().__init__()
        self.weight_layer = weight_layer
        self.norm = norm
        self.act = act
        self.placement = placement

    def forward(self, x: Tensor) -> Tensor:
        x = self.weight_layer(x)
        if self.placement == "pre":
            return self.act(self.norm(x))
        return self.norm(self.act(x))


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
    norm: str,
    placement: str = "pre",
    affine: bool = True,
    norm_momentum: float = 0.1,
    norm_eps: float = 1e-5,
    norm_groups: int | None = None,
    norm_noise_shift: float = 0.5,
    norm_noise_scale: float = 1.25,
    norm_noise_shift_jitter: float = 0.1,
    norm_noise_scale_jitter: float = 0.1,
) -> MLP:
    blocks = []
    for i in range(depth):
        # A norm right after the Linear subtracts the mean, which makes the bias redundant:
        # drop it, as the BN paper does.
        bias = norm in ("none", "noise_only") or placement == "post"
        linear = nn.Linear(in_features if i == 0 else width, width, bias=bias)
        norm_layer = make_norm(
            norm,
            width,
            spatial=False,
            affine=affine,
            momentum=norm_momentum,
            eps=norm_eps,
            groups=norm_groups,
            noise_shift=norm_noise_shift,
            noise_scale=norm_noise_scale,
            noise_shift_jitter=norm_noise_shift_jitter,
            noise_scale_jitter=norm_noise_scale_jitter,
        )
        blocks.append(Block(linear, norm_layer, make_activation(act), placement))
    return MLP(in_features, num_classes, blocks, width)


def initialize(model: nn.Module, scheme: str, std: float = 0.01) -> None:
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
        else:
            raise ValueError(f"unknown init scheme {scheme!r}")
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def hidden_blocks(model: nn.Module) -> list[Block]:
    """The measured blocks, in order: hidden layer 1 ... depth."""
    return [m for m in model.modules() if isinstance(m, Block)]


def build_model(cfg, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The network a `bnexp.run.config.Config` describes, initialised as it asks."""
    common = dict(
        depth=cfg.depth, width=cfg.width, act=cfg.act.value, norm=cfg.norm.name.value,
        placement=cfg.placement.value, affine=cfg.affine, norm_momentum=cfg.norm.momentum,
        norm_eps=cfg.norm.eps, norm_groups=cfg.norm.groups,
        norm_noise_shift=cfg.norm.noise_shift, norm_noise_scale=cfg.norm.noise_scale,
        norm_noise_shift_jitter=cfg.norm.noise_shift_jitter,
        norm_noise_scale_jitter=cfg.norm.noise_scale_jitter,
    )  # fmt: skip
    if cfg.model.name.value == "cnn":
        from bnexp.run.cnn import build_cnn

        model = build_cnn(input_shape, num_classes, **common)
    else:
        in_features = 1
        for size in input_shape:
            in_features *= size
        model = build_mlp(in_features, num_classes, **common)
    initialize(model, cfg.init.value, cfg.init_std)
    seed_noise(model, cfg.seed)  # noisy norms draw from their own generators (bnexp/run/layers.py)
    return model
