"""Model construction for every norm × placement × affine × act."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from bnexp.config import UserError
from bnexp.layers import NoisyBatchNorm1d, NoisyBatchNorm2d, default_groups, make_norm
from bnexp.models import build_mlp, build_model, hidden_blocks, initialize

from conftest import make_config

NORM_TYPES = {
    "batch": nn.BatchNorm1d, "noisy": NoisyBatchNorm1d, "layer": nn.LayerNorm,
    "group": nn.GroupNorm, "none": nn.Identity,
}  # fmt: skip
ACT_TYPES = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh, "identity": nn.Identity}


@pytest.mark.parametrize(
    ("norm", "placement", "affine", "act"),
    list(itertools.product(NORM_TYPES, ["pre", "post"], [True, False], ACT_TYPES)),
)
def test_mlp_structure(norm, placement, affine, act):
    model = build_mlp(784, 10, depth=3, width=20, act=act, norm=norm, placement=placement, affine=affine)
    blocks = hidden_blocks(model)
    assert len(blocks) == 3
    for block in blocks:
        assert isinstance(block.norm, NORM_TYPES[norm])
        assert isinstance(block.act, ACT_TYPES[act])
        # The bias is redundant only when a norm directly follows the Linear.
        assert (block.weight_layer.bias is None) == (norm != "none" and placement == "pre")
        has_affine = any(p.requires_grad for p in block.norm.parameters())
        assert has_affine == (affine and norm != "none")
    x = torch.randn(8, 1, 28, 28)
    assert model(x).shape == (8, 10)


def test_placement_orders_the_block():
    x = torch.randn(32, 5)
    for placement, expected in [("pre", lambda b, z: b.act(b.norm(z))), ("post", lambda b, z: b.norm(b.act(z)))]:
        model = build_mlp(5, 2, depth=1, width=4, act="sigmoid", norm="batch", placement=placement)
        block = hidden_blocks(model)[0]
        z = block.weight_layer(x)
        assert torch.allclose(block(x), expected(block, z))


def test_affine_false_fixes_gamma_one_beta_zero():
    model = build_mlp(5, 2, depth=1, width=4, act="sigmoid", norm="batch", affine=False)
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
    model = build_mlp(784, 10, depth=2, width=200, act="sigmoid", norm="none")
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


def test_noisy_norm_moves_each_unit_at_random_every_training_step():
    torch.manual_seed(0)
    norm = make_norm("noisy", 50, spatial=False, affine=True, noise_shift=1.0, noise_scale=3.0)
    x = torch.randn(400, 50) * 4 + 7
    clean = nn.functional.batch_norm(x, None, None, training=True)  # BN's output, gamma=1 beta=0
    first, second = norm(x), norm(x)  # two training steps (autograd on)
    for out in (first, second):
        # Per unit an affine map of BN's output: s * BN(x) + m with s in [1, 3], m in [-1, 1].
        scale = out.std(0, unbiased=False) / clean.std(0, unbiased=False)
        shift = out.mean(0)
        assert ((scale > 1 - 1e-4) & (scale < 3 + 1e-4)).all() and (shift.abs() <= 1 + 1e-5).all()
        assert scale.std() > 0.2 and shift.std() > 0.2  # different noise for different units
    assert not torch.allclose(first, second)  # redrawn each step
    with torch.no_grad():  # a probe pass without autograd sees the current step's noise
        assert torch.equal(norm(x), second)
    norm.eval()  # inference: the noise's expectation, s = (1 + 3) / 2, m = 0
    expected = nn.functional.batch_norm(x, norm.running_mean, norm.running_var, training=False) * 2.0
    assert torch.allclose(norm(x), expected, atol=1e-5)


def test_noisy_norm_is_seeded_and_exists_for_feature_maps():
    def outputs(seed):
        torch.manual_seed(seed)
        norm = make_norm("noisy", 4, spatial=True, affine=False, noise_shift=0.5, noise_scale=2.0)
        assert isinstance(norm, NoisyBatchNorm2d)
        return norm(torch.arange(2 * 4 * 3 * 3, dtype=torch.float32).view(2, 4, 3, 3))

    assert torch.equal(outputs(1), outputs(1)) and not torch.equal(outputs(1), outputs(2))
    maps = outputs(1)
    per_channel_shift = maps.mean(dim=(0, 2, 3))  # BN's output has mean 0 per channel
    assert (per_channel_shift.abs() <= 0.5 + 1e-5).all() and per_channel_shift.std() > 0
