"""Model construction for every norm × placement × affine × act."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from bnexp.errors import UserError
from bnexp.run.layers import (
    ActivationNoise,
    NoisyBatchNorm1d,
    default_groups,
    hidden_blocks,
    make_norm,
    norm_layer_named,
)
from bnexp.run.models import build_mlp, build_model, initialize
from bnexp.run.renorm import BatchRenorm1d

from conftest import make_config

NORM_TYPES = {
    "batch": nn.BatchNorm1d, "noisy": NoisyBatchNorm1d, "noise_only": ActivationNoise,
    "layer": nn.LayerNorm, "group": nn.GroupNorm, "none": nn.Identity, "renorm": BatchRenorm1d,
}  # fmt: skip
UNNORMALIZED = ("none", "noise_only")  # no norm: the Linear keeps its bias, nothing is learnable
ACT_TYPES = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh, "identity": nn.Identity}


@pytest.mark.parametrize(
    ("norm", "placement", "affine", "act"),
    list(itertools.product(NORM_TYPES, ["pre", "post"], [True, False], ACT_TYPES)),
)
def test_mlp_structure(norm, placement, affine, act):
    model = build_mlp(
        784,
        10,
        depth=3,
        width=20,
        act=act,
        placement=placement,
        norm_layer=norm_layer_named(norm, spatial=False, affine=affine),
    )
    blocks = hidden_blocks(model)
    assert len(blocks) == 3
    for block in blocks:
        assert isinstance(block.norm, NORM_TYPES[norm])
        assert isinstance(block.act, ACT_TYPES[act])
        # The bias is redundant only when a norm directly follows the Linear.
        assert (block.weight_layer.bias is None) == (
            norm not in UNNORMALIZED and placement == "pre"
        )
        has_affine = any(p.requires_grad for p in block.norm.parameters())
        assert has_affine == (affine and norm not in UNNORMALIZED)
    x = torch.randn(8, 1, 28, 28)
    assert model(x).shape == (8, 10)


def test_placement_orders_the_block():
    x = torch.randn(32, 5)
    for placement, expected in [
        ("pre", lambda b, z: b.act(b.norm(z))),
        ("post", lambda b, z: b.norm(b.act(z))),
    ]:
        model = build_mlp(
            5,
            2,
            depth=1,
            width=4,
            act="sigmoid",
            norm_layer=norm_layer_named("batch", spatial=False),
            placement=placement,
        )
        block = hidden_blocks(model)[0]
        z = block.weight_layer(x)
        assert torch.allclose(block(x), expected(block, z))


def test_affine_false_fixes_gamma_one_beta_zero():
    model = build_mlp(
        5,
        2,
        depth=1,
        width=4,
        act="sigmoid",
        norm_layer=norm_layer_named("batch", spatial=False, affine=False),
    )
    norm = hidden_blocks(model)[0].norm
    assert norm.weight is None and norm.bias is None
    z = torch.randn(64, 4)
    out = norm(z)
    assert torch.allclose(out.mean(0), torch.zeros(4), atol=1e-5)
    assert torch.allclose(out.std(0, unbiased=False), torch.ones(4), atol=1e-3)


def test_group_norm_groups_must_divide_channels():
    assert default_groups(100) == 25 and default_groups(64) == 32 and default_groups(7) == 7
    with pytest.raises(UserError, match="norm.groups=3"):
        make_norm("group", 100, spatial=False, affine=True, groups=3)


def test_gaussian_init_has_the_requested_std():
    torch.manual_seed(0)
    model = build_mlp(
        784,
        10,
        depth=2,
        width=200,
        act="sigmoid",
        norm_layer=norm_layer_named("none", spatial=False),
    )
    initialize(model, "gaussian", std=0.01)
    weight = hidden_blocks(model)[0].weight_layer.weight
    assert weight.std().item() == pytest.approx(0.01, rel=0.02)
    assert torch.all(hidden_blocks(model)[0].weight_layer.bias == 0)


def test_build_model_from_config_is_seed_deterministic():
    cfg = make_config(depth=2, width=8, init="xavier")
    torch.manual_seed(3)
    a = build_model(cfg, (1, 28, 28), 10)
    torch.manual_seed(3)
    b = build_model(cfg, (1, 28, 28), 10)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


# The noisy norms (norm=noisy, norm=noise_only) are tested in tests/test_noisy.py.
