"""bnexp.run.landscape against closed forms on a least-squares problem, and its direction."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnexp.run.cnn import build_cnn
from bnexp.run.landscape import DEFAULT_STEP_MULTIPLIERS, LossLandscape, loss_landscape
from bnexp.run.layers import norm_layer_named
from bnexp.run.models import build_mlp


def least_squares(seed: int = 0):
    """L(w) = mean((Xw − t)^2): gradient g = (2/n) X^T (Xw − t), Hessian H = (2/n) X^T X, so
    along −g: L(w − ηg) = L(w) − η||g||^2 + (η^2/2) g^T H g and ∇L(w − ηg) − g = −η H g."""
    generator = torch.Generator().manual_seed(seed)
    n, d = 40, 5
    x = torch.randn(n, d, generator=generator, dtype=torch.float64)
    t = torch.randn(n, 1, generator=generator, dtype=torch.float64)
    model = nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(1, d, generator=generator, dtype=torch.float64))
    w = model.weight.detach().flatten()
    residual = x @ w - t.flatten()
    g = 2 / n * x.T @ residual
    hessian = 2 / n * x.T @ x
    return model, x, t, w, g, hessian, float(residual.pow(2).mean())


def test_matches_closed_form_on_least_squares():
    model, x, t, _w, g, hessian, loss0 = least_squares()
    lr = 0.05
    result = loss_landscape(model, x, t, lr, loss_fn=F.mse_loss)
    etas = [m * lr for m in DEFAULT_STEP_MULTIPLIERS]
    g_norm = float(g.norm())
    curvature = float(g @ hessian @ g)
    hg_norm = float((hessian @ g).norm())
    expected_losses = [loss0 - eta * g_norm**2 + eta**2 / 2 * curvature for eta in etas]
    assert result.step_sizes == pytest.approx(etas, rel=1e-12)
    assert result.loss_start == pytest.approx(loss0, rel=1e-12)
    assert result.grad_norm == pytest.approx(g_norm, rel=1e-12)
    assert result.losses == pytest.approx(expected_losses, rel=1e-10)
    assert result.grad_diff_norms == pytest.approx([eta * hg_norm for eta in etas], rel=1e-10)
    assert result.loss_range == pytest.approx(max(expected_losses) - min(expected_losses), rel=1e-9)
    assert result.gradient_predictiveness == pytest.approx(max(etas) * hg_norm, rel=1e-10)
    # On a quadratic the effective beta is the same at every η: ||Hg|| / ||g||, at most the
    # largest eigenvalue of H.
    assert result.beta_smoothness == pytest.approx(hg_norm / g_norm, rel=1e-10)
    assert result.beta_smoothness <= float(torch.linalg.eigvalsh(hessian).max()) * (1 + 1e-12)


def hand_landscape(model, x, y, step_sizes):
    """Loss and gradient at W − ηg on deep copies of the network, every parameter moved."""
    reference = copy.deepcopy(model)
    F.cross_entropy(reference(x), y).backward()
    g = {n: p.grad.clone() for n, p in reference.named_parameters()}
    losses, diffs = [], []
    for eta in step_sizes:
        moved = copy.deepcopy(model)
        with torch.no_grad():
            for name, p in moved.named_parameters():
                p.sub_(eta * g[name])
        loss = F.cross_entropy(moved(x), y)
        loss.backward()
        losses.append(float(loss.detach()))
        squared = sum(
            float((p.grad - g[n]).double().pow(2).sum()) for n, p in moved.named_parameters()
        )
        diffs.append(math.sqrt(squared))
    g_norm = math.sqrt(sum(float(v.double().pow(2).sum()) for v in g.values()))
    return losses, diffs, g_norm


@pytest.mark.parametrize("kind", ["mlp-batch", "mlp-none", "cnn-batch", "cnn-none"])
def test_networks_match_hand_computation(kind):
    arch, norm = kind.split("-")
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    if arch == "mlp":
        net = build_mlp(
            6, 4, depth=3, width=8, act="relu", norm_layer=norm_layer_named(norm, spatial=False)
        )
        x = torch.randn(16, 6, generator=generator)
    else:
        net = build_cnn(
            (2, 8, 8),
            4,
            depth=3,
            width=4,
            act="relu",
            norm_layer=norm_layer_named(norm, spatial=True),
        )
        x = torch.randn(16, 2, 8, 8, generator=generator)
    y = torch.randint(0, 4, (16,), generator=generator)
    lr = 0.5
    result = loss_landscape(net, x, y, lr)
    losses, diffs, g_norm = hand_landscape(net, x, y, result.step_sizes)
    assert result.losses == pytest.approx(losses, rel=1e-5)
    assert result.grad_diff_norms == pytest.approx(diffs, rel=1e-4)
    assert result.grad_norm == pytest.approx(g_norm, rel=1e-5)
    ratios = [d / (eta * g_norm) for d, eta in zip(diffs, result.step_sizes, strict=True)]
    assert result.beta_smoothness == pytest.approx(max(ratios), rel=1e-4)
    assert result.loss_range == pytest.approx(max(losses) - min(losses), rel=1e-4, abs=1e-6)
    assert min(diffs) > 1e-3 * g_norm  # not vacuous: the gradient changes along the path


def test_beta_is_the_largest_ratio_not_the_ratio_of_largest():
    """Figure 4(c): the maximum over η of ||Δ∇L|| / ||ηg||."""
    landscape = LossLandscape(
        step_sizes=(1.0, 2.0), losses=(0.0, 0.0), grad_diff_norms=(1.0, 1.5),
        loss_start=0.0, grad_norm=1.0,
    )  # fmt: skip
    assert landscape.beta_smoothness == 1.0  # ratios 1 and 0.75; max/max would give 0.75
    assert landscape.gradient_predictiveness == 1.5


def test_steps_down_the_gradient():
    """For a small step the loss falls (stepping UP the gradient would raise it), on the convex
    least-squares problem and on a BN network."""
    model, x, t, *_ = least_squares()
    result = loss_landscape(model, x, t, 1e-3, loss_fn=F.mse_loss)
    assert all(loss < result.loss_start for loss in result.losses)
    assert list(result.losses) == sorted(result.losses, reverse=True)  # 4·lr still below 1/β

    torch.manual_seed(0)
    net = build_mlp(
        6, 4, depth=3, width=8, act="sigmoid", norm_layer=norm_layer_named("batch", spatial=False)
    )
    generator = torch.Generator().manual_seed(1)
    xb, yb = (
        torch.randn(32, 6, generator=generator),
        torch.randint(0, 4, (32,), generator=generator),
    )
    result = loss_landscape(net, xb, yb, 1e-3)
    assert all(loss < result.loss_start for loss in result.losses)


def test_all_parameters_move():
    """The full gradient: a parameter left out would leave ||g|| short of the whole gradient."""
    torch.manual_seed(0)
    net = build_mlp(
        6, 4, depth=2, width=8, act="tanh", norm_layer=norm_layer_named("batch", spatial=False)
    )
    generator = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 6, generator=generator), torch.randint(0, 4, (16,), generator=generator)
    F.cross_entropy(net(x), y).backward()
    full = math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in net.parameters()))
    net.zero_grad(set_to_none=True)
    assert loss_landscape(net, x, y, 0.1).grad_norm == pytest.approx(full, rel=1e-6)


def test_default_step_sizes_are_eight_log_spaced_over_half_to_four():
    assert len(DEFAULT_STEP_MULTIPLIERS) == 8
    assert DEFAULT_STEP_MULTIPLIERS[0] == pytest.approx(0.5)
    assert DEFAULT_STEP_MULTIPLIERS[-1] == pytest.approx(4.0)
    ratios = np.diff(np.log(DEFAULT_STEP_MULTIPLIERS))
    assert ratios == pytest.approx([math.log(8) / 7] * 7)


def test_a_diverging_step_is_reported_not_raised():
    model, x, t, *_ = least_squares()
    with torch.no_grad():
        model.weight.mul_(1e30)  # the squared residuals overflow nothing in float64 ...
    result = loss_landscape(model, x, t, 1e300, loss_fn=F.mse_loss)  # ... but this step does
    assert not math.isfinite(result.loss_range)
    assert not math.isfinite(result.gradient_predictiveness)


@pytest.mark.parametrize("lr, multipliers", [(0.0, (1.0,)), (0.1, ()), (0.1, (1.0, -1.0))])
def test_bad_step_sizes_are_refused(lr, multipliers):
    model, x, t, *_ = least_squares()
    with pytest.raises(ValueError, match="lr > 0 and positive step multipliers"):
        loss_landscape(model, x, t, lr, loss_fn=F.mse_loss, step_multipliers=multipliers)
