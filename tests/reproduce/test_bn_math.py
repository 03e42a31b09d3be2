"""BN's hand-derived backward pass and the running-statistics checks, against torch's layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bnexp.reproduce.bn_math import (
    BATCH_SIZES,
    BNCache,
    bn_backward_closed_form,
    bn_backward_compact,
    bn_backward_identity,
    bn_forward,
    relative_error,
    running_average_checks,
)

IDENTITY_TOLERANCE = 1e-10  # issue 12, section 7: relative error in float64


@pytest.mark.parametrize("backward", [bn_backward_closed_form, bn_backward_compact])
def test_hand_derived_backward_equals_autograd_on_torch_batchnorm(backward):
    check = bn_backward_identity(backward)
    assert {case.batch_size for case in check.cases} == set(BATCH_SIZES)
    assert {case.affine for case in check.cases} == {True, False}
    assert min(BATCH_SIZES) == 2 and max(BATCH_SIZES) == 256
    assert check.max_relative_error <= IDENTITY_TOLERANCE, check


def _wrong_sign_backward(dout, cache: BNCache):
    """The texts' step-by-step formula with one sign flipped in d_sigma2 (+1/2 for -1/2)."""
    dims = [0]
    m = cache.count
    centred = cache.x - cache.mean
    d_xhat = dout * cache.gamma if cache.gamma is not None else dout
    var_eps = cache.var + cache.eps
    d_sigma2 = +0.5 * (d_xhat * centred).sum(dim=dims, keepdim=True) * var_eps**-1.5
    d_mu = -d_xhat.sum(dim=dims, keepdim=True) / torch.sqrt(var_eps)
    dx = d_xhat / torch.sqrt(var_eps) + d_sigma2 * 2.0 * centred / m + d_mu / m
    _, dgamma, dbeta = bn_backward_closed_form(dout, cache)
    return dx, dgamma, dbeta


def _forgotten_gamma_backward(dout, cache: BNCache):
    """The compact form with gamma left out of dx (a common slip)."""
    no_gamma = BNCache(**{**cache.__dict__, "gamma": None})
    dx, _, _ = bn_backward_compact(dout, no_gamma)
    _, dgamma, dbeta = bn_backward_compact(dout, cache)
    return dx, dgamma, dbeta


@pytest.mark.parametrize("wrong", [_wrong_sign_backward, _forgotten_gamma_backward])
def test_identity_check_catches_a_wrong_formula(wrong):
    check = bn_backward_identity(wrong, affine=(True,))
    assert check.max_relative_error > 1e-2


def test_closed_form_on_feature_maps_equals_batchnorm2d():
    generator = torch.Generator().manual_seed(3)
    x = 2 + 3 * torch.randn(3, 4, 5, 6, generator=generator, dtype=torch.float64)
    dout = torch.randn(3, 4, 5, 6, generator=generator, dtype=torch.float64)
    layer = nn.BatchNorm2d(4).double()
    with torch.no_grad():
        layer.weight.uniform_(0.5, 2.0, generator=generator)
        layer.bias.normal_(generator=generator)
    x_leaf = x.clone().requires_grad_(True)
    layer(x_leaf).backward(dout)
    out, cache = bn_forward(x, layer.weight.detach(), layer.bias.detach(), layer.eps)
    assert cache.count == 3 * 5 * 6
    assert relative_error(out, layer(x).detach()) < 1e-13
    for backward in (bn_backward_closed_form, bn_backward_compact):
        dx, dgamma, dbeta = backward(dout, cache)
        assert relative_error(dx, x_leaf.grad) < IDENTITY_TOLERANCE
        assert relative_error(dgamma, layer.weight.grad) < IDENTITY_TOLERANCE
        assert relative_error(dbeta, layer.bias.grad) < IDENTITY_TOLERANCE


def test_relative_error_is_normwise():
    reference = torch.tensor([10.0, 0.0, -5.0])
    measured = reference + torch.tensor([0.0, 1e-3, 0.0])
    assert relative_error(measured, reference) == pytest.approx(1e-4)
    assert relative_error(torch.zeros(2), torch.zeros(2)) == 0.0


def test_worked_example_gives_the_published_running_mean():
    example = running_average_checks().worked_example
    assert example.published == (3.7125, 5.7375)
    # Independent: 0.9 x the batch mean computed from the drawn x, channel by channel.
    x = torch.tensor(example.x).reshape(2, 2, 2, 2)
    by_hand = [0.9 * x[:, c].mean().item() for c in range(2)]
    assert example.by_hand == pytest.approx(by_hand, abs=1e-12)
    # torch's layer runs in float32: equal to the published values to float32 rounding.
    assert example.running_mean == pytest.approx(example.published, abs=1e-6)
    assert example.max_error_vs_published < 1e-6
    by_hand_var = [0.1 + 0.9 * x[:, c].double().var().item() for c in range(2)]
    assert example.running_var == pytest.approx(by_hand_var, rel=1e-6)


def test_worked_example_leaves_the_global_generator_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    running_average_checks()
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("momentum", [0.01, 0.1, 0.9])  # 0.5: both conventions agree
def test_update_rule_is_pytorch_convention(momentum):
    rule = running_average_checks(momentum=momentum).update_rule
    assert rule.steps == 20 and rule.momentum == momentum
    assert rule.max_mean_error < 1e-12 and rule.max_var_error < 1e-12
    # The same batches under Keras's convention end far away: the check can fail.
    assert rule.max_mean_error_opposite_convention > 0.05


@pytest.mark.parametrize("batch", [2, 4, 10])
def test_running_var_is_unbiased_but_normalisation_is_biased(batch):
    bessel = running_average_checks(batch=batch).bessel
    assert bessel.expected_ratio == pytest.approx(batch / (batch - 1))
    assert bessel.running_var_over_biased_var == pytest.approx(bessel.expected_ratio, rel=1e-12)
    assert bessel.running_var_error_vs_unbiased < 1e-12
    assert bessel.output_error_vs_biased < 1e-12
    # Normalising by the unbiased variance would be off by about 1 - sqrt((m - 1) / m).
    assert bessel.output_error_vs_unbiased > 0.5 * (1 - ((batch - 1) / batch) ** 0.5)
