"""init=orthogonal with init_gain: every weight matrix is gain times a matrix with orthonormal
rows (or columns, if it has fewer), biases zero; checked with W Wᵀ (or Wᵀ W) against gain² I."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bnexp.errors import UserError
from bnexp.run.config import config_hash, validate
from bnexp.run.models import build_model

from conftest import make_config


@pytest.mark.parametrize("gain", [0.5, 1.0, 1.5])
def test_every_layer_has_all_singular_values_equal_to_the_gain(gain):
    cfg = make_config(
        depth=3,
        width=20,
        act="identity",
        init="orthogonal",
        init_gain=gain,
        **{"norm.name": "none"},
    )
    torch.manual_seed(0)
    model = build_model(cfg, (1, 28, 28), 10)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    # 784 -> 20, 20 -> 20, 20 -> 20, readout 20 -> 10
    assert [tuple(m.weight.shape) for m in linears] == [(20, 784), (20, 20), (20, 20), (10, 20)]
    for layer in linears:
        w = layer.weight.detach().double()
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        assert torch.allclose(
            gram, gain**2 * torch.eye(gram.shape[0], dtype=torch.float64), atol=1e-5
        )
        singular = torch.linalg.svdvals(w)
        assert singular.min().item() == pytest.approx(gain, rel=1e-5)
        assert singular.max().item() == pytest.approx(gain, rel=1e-5)
        assert torch.all(layer.bias == 0)


def test_a_square_linear_stack_of_gain_g_scales_every_norm_by_g():
    """The algebra the linear-depth finding rests on: ||W h|| = g ||h|| for square W."""
    cfg = make_config(
        depth=4, width=16, act="identity", init="orthogonal", init_gain=1.5, **{"norm.name": "none"}
    )
    torch.manual_seed(1)
    model = build_model(cfg, (1, 28, 28), 10)
    square = [m for m in model.modules() if isinstance(m, nn.Linear)][1:-1]
    h = torch.randn(5, 16, dtype=torch.float64)
    for layer in square:
        out = h @ layer.weight.detach().double().T
        assert torch.allclose(out.norm(dim=1), 1.5 * h.norm(dim=1), rtol=1e-5)
        h = out


@pytest.mark.parametrize("gain", [0.0, -1.0])
def test_a_gain_that_is_not_positive_is_a_user_error(gain):
    cfg = make_config(init="orthogonal", init_gain=gain)
    with pytest.raises(UserError, match=f"init_gain={gain} is not allowed: it must be > 0"):
        validate(cfg)


def test_init_gain_changes_the_hash_of_orthogonal_runs_only():
    base = config_hash(make_config(init="gaussian"))
    assert config_hash(make_config(init="gaussian", init_gain=2.0)) == base
    assert config_hash(make_config(init="orthogonal", init_gain=2.0)) != config_hash(
        make_config(init="orthogonal", init_gain=1.0)
    )
