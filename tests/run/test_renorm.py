"""Batch renormalization (Ioffe 2017, Algorithm 1) against torch's BN and the paper's formulas."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bnexp.run.probes import frozen_running_stats
from bnexp.run.renorm import (
    PAPER_MOMENTUM,
    PAPER_TRAINING_STEPS,
    BatchRenorm1d,
    BatchRenorm2d,
    RenormSchedule,
)

RELAXED = RenormSchedule(warmup_steps=0, r_max_reached_at=0, d_max_reached_at=0)  # r_max 3, d_max 5
F64 = torch.float64


def _generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _pair(renorm_cls, bn_cls, channels, dtype, affine, gen):
    renorm = renorm_cls(channels, affine=affine).to(dtype)
    bn = bn_cls(channels, affine=affine).to(dtype)
    if affine:
        with torch.no_grad():
            renorm.weight.uniform_(0.5, 2.0, generator=gen)
            renorm.bias.normal_(generator=gen)
            bn.weight.copy_(renorm.weight)
            bn.bias.copy_(renorm.bias)
    return renorm, bn


def _by_hand(x, running_mean, running_var, weight, bias, eps, r_max, d_max):
    """Algorithm 1's training forward written out in float64, per channel (dimension 1)."""
    dims = [0, *range(2, x.dim())]
    view = (1, -1) + (1,) * (x.dim() - 2)
    mu_b = x.mean(dim=dims)
    sigma_b = torch.sqrt(((x - mu_b.view(view)) ** 2).mean(dim=dims) + eps)
    sigma = torch.sqrt(running_var + eps)
    r = (sigma_b / sigma).clamp(1 / r_max, r_max)
    d = ((mu_b - running_mean) / sigma).clamp(-d_max, d_max)
    x_hat = (x - mu_b.view(view)) / sigma_b.view(view) * r.view(view) + d.view(view)
    return weight.view(view) * x_hat + bias.view(view), r, d


# ---------------------------------------------------------------- warm-up: exactly batch norm


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize(
    "classes, shape",
    [((BatchRenorm1d, nn.BatchNorm1d), (8, 5)), ((BatchRenorm2d, nn.BatchNorm2d), (4, 3, 5, 5))],
)
def test_warmup_is_batchnorm_bit_for_bit(classes, shape, affine, dtype):
    gen = _generator()
    renorm, bn = _pair(*classes, shape[1], dtype, affine, gen)
    for _ in range(3):  # r_max = 1, d_max = 0 for the first 5000 steps
        x = (3 * torch.randn(*shape, generator=gen) + 1).to(dtype)
        x_renorm, x_bn = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        y_renorm, y_bn = renorm(x_renorm), bn(x_bn)
        upstream = torch.randn(*shape, generator=gen).to(dtype)
        y_renorm.backward(upstream)
        y_bn.backward(upstream)
        assert torch.equal(y_renorm, y_bn)
        assert torch.equal(x_renorm.grad, x_bn.grad)
        if affine:
            assert torch.equal(renorm.weight.grad, bn.weight.grad)
            assert torch.equal(renorm.bias.grad, bn.bias.grad)
    assert renorm.step.item() == 3


# ---------------------------------------------------------------- relaxed: Algorithm 1


def _relaxed_layer(cls, channels, gen, running_mean, running_var):
    layer = cls(channels, schedule=RELAXED).double()
    with torch.no_grad():
        layer.weight.uniform_(0.5, 2.0, generator=gen)
        layer.bias.normal_(generator=gen)
        layer.running_mean.copy_(running_mean)
        layer.running_var.copy_(running_var)
    return layer


@pytest.mark.parametrize("cls, shape", [(BatchRenorm1d, (16, 6)), (BatchRenorm2d, (4, 6, 3, 3))])
def test_forward_is_algorithm_1_with_clipping(cls, shape):
    gen = _generator(1)
    x = 2 * torch.randn(*shape, generator=gen, dtype=F64)
    # Channels 0-1: sigma far below sigma_B (r clipped to 3) and far above (r clipped to 1/3);
    # channel 2: mean far off (d clipped to 5); channels 3-5: nothing clipped.
    running_var = torch.tensor([0.01, 400.0, 4.0, 3.0, 5.0, 4.5], dtype=F64)
    running_mean = torch.tensor([0.0, 0.0, -50.0, 0.3, -0.2, 0.1], dtype=F64)
    layer = _relaxed_layer(cls, shape[1], gen, running_mean, running_var)
    expected, r, d = _by_hand(
        x,
        running_mean,
        running_var,
        layer.weight.detach(),
        layer.bias.detach(),
        layer.eps,
        3.0,
        5.0,
    )
    assert r[0].item() == 3.0 and r[1].item() == pytest.approx(1 / 3) and d[2].item() == 5.0
    assert ((r[3:] > 1 / 3) & (r[3:] < 3)).all() and (d[3:].abs() < 5).all()
    measured_r, measured_d, _, _ = layer.correction(x)
    assert (measured_r - r).abs().max().item() < 1e-14 and (
        measured_d - d
    ).abs().max().item() < 1e-14
    out = layer(x)
    assert (out - expected).abs().max().item() < 1e-12


def test_unclipped_training_output_equals_inference_output():
    """When neither r nor d is clipped, y = gamma (x - mu) / sigma + beta: training computes
    the inference function (the point of batch renorm). Checked, not assumed."""
    gen = _generator(2)
    x = 1 + 2 * torch.randn(32, 4, generator=gen, dtype=F64)
    layer = _relaxed_layer(
        BatchRenorm1d,
        4,
        gen,
        torch.tensor([0.5, 1.0, 1.5, 0.8], dtype=F64),
        torch.full((4,), 3.0, dtype=F64),
    )
    r, d, _, _ = layer.correction(x)
    assert ((r > 1 / 3) & (r < 3)).all() and (d.abs() < 5).all()
    train_out = layer(x)
    layer.eval()
    # The moving averages moved during the training forward: compare with the state before it.
    layer.running_mean.copy_(torch.tensor([0.5, 1.0, 1.5, 0.8], dtype=F64))
    layer.running_var.fill_(3.0)
    assert (train_out - layer(x)).abs().max().item() < 1e-12


def _paper_backward(x, upstream, weight, r, d, eps):
    """The gradients of Sec. 3 (below Algorithm 1), r and d constants, (N, C) input."""
    m = x.shape[0]
    mu_b = x.mean(dim=0)
    sigma_b = torch.sqrt(((x - mu_b) ** 2).mean(dim=0) + eps)
    x_hat = (x - mu_b) / sigma_b * r + d
    d_xhat = upstream * weight
    d_sigma_b = (d_xhat * (x - mu_b) * (-r / sigma_b**2)).sum(dim=0)
    d_mu_b = (d_xhat * (-r / sigma_b)).sum(dim=0)
    dx = d_xhat * r / sigma_b + d_sigma_b * (x - mu_b) / (m * sigma_b) + d_mu_b / m
    return dx, (upstream * x_hat).sum(dim=0), upstream.sum(dim=0)


def test_no_gradient_flows_through_r_and_d():
    gen = _generator(3)
    x = 1 + 2 * torch.randn(12, 4, generator=gen, dtype=F64)
    upstream = torch.randn(12, 4, generator=gen, dtype=F64)
    running_mean = torch.tensor([0.5, 1.5, 1.0, 0.0], dtype=F64)
    running_var = torch.tensor([2.0, 6.0, 4.0, 3.0], dtype=F64)
    layer = _relaxed_layer(BatchRenorm1d, 4, gen, running_mean, running_var)
    r, d, _, _ = layer.correction(x)
    assert ((r > 1 / 3) & (r < 3)).all() and (d.abs() < 5).all()  # unclipped: r, d depend on x
    x_leaf = x.clone().requires_grad_(True)
    layer(x_leaf).backward(upstream)
    dx, dgamma, dbeta = _paper_backward(x, upstream, layer.weight.detach(), r, d, layer.eps)
    assert (x_leaf.grad - dx).abs().max().item() < 1e-10 * dx.abs().max().item()
    assert (layer.weight.grad - dgamma).abs().max().item() < 1e-10 * dgamma.abs().max().item()
    assert (layer.bias.grad - dbeta).abs().max().item() < 1e-10 * dbeta.abs().max().item()

    # Had r and d kept their gradient, dx would differ: the comparison above can fail.
    x_through = x.clone().requires_grad_(True)
    mu_b, var_b = x_through.mean(dim=0), x_through.var(dim=0, correction=0)
    sigma_b, sigma = torch.sqrt(var_b + layer.eps), torch.sqrt(running_var + layer.eps)
    r_live, d_live = sigma_b / sigma, (mu_b - running_mean) / sigma
    y = (
        layer.weight.detach() * ((x_through - mu_b) / sigma_b * r_live + d_live)
        + layer.bias.detach()
    )
    y.backward(upstream)
    assert (x_through.grad - dx).abs().max().item() > 1e-3 * dx.abs().max().item()


def test_moving_averages_follow_algorithm_1():
    gen = _generator(4)
    mu, var = torch.tensor([0.2, -1.0, 3.0], dtype=F64), torch.tensor([0.5, 2.0, 9.0], dtype=F64)
    layer = _relaxed_layer(BatchRenorm1d, 3, gen, mu, var)
    layer.momentum = 0.25
    x = 1 + 3 * torch.randn(10, 3, generator=gen, dtype=F64)
    layer(x)
    eps, alpha = layer.eps, 0.25
    mu_b = x.mean(dim=0)
    sigma_b = torch.sqrt(x.var(dim=0, correction=0) + eps)
    sigma = torch.sqrt(var + eps)
    assert torch.allclose(layer.running_mean, mu + alpha * (mu_b - mu), rtol=0, atol=1e-14)
    sigma_new = sigma + alpha * (sigma_b - sigma)
    assert torch.allclose(torch.sqrt(layer.running_var + eps), sigma_new, rtol=1e-14, atol=0)
    # Not torch's rule (a moving average of the unbiased variance): the test can tell them apart.
    torch_rule = (1 - alpha) * var + alpha * x.var(dim=0, correction=1)
    assert (layer.running_var - torch_rule).abs().max().item() > 1e-2
    assert layer.num_batches_tracked.item() == 1


def test_paper_momentum_is_the_default():
    assert PAPER_MOMENTUM == 0.01
    assert BatchRenorm1d(3).momentum == 0.01 and BatchRenorm2d(3).momentum == 0.01


@pytest.mark.parametrize("momentum", [None, 0.0, -0.1, 1.5])
def test_momentum_outside_0_1_is_refused(momentum):
    with pytest.raises(ValueError, match="momentum"):
        BatchRenorm1d(3, momentum=momentum)


# ---------------------------------------------------------------- inference


@pytest.mark.parametrize("cls, shape", [(BatchRenorm1d, (6, 4)), (BatchRenorm2d, (3, 4, 2, 2))])
def test_inference_uses_the_moving_averages(cls, shape):
    gen = _generator(5)
    running_mean = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=F64)
    running_var = torch.tensor([1.5, 0.25, 4.0, 1.0], dtype=F64)
    layer = _relaxed_layer(cls, 4, gen, running_mean, running_var).eval()
    x = torch.randn(*shape, generator=gen, dtype=F64)
    view = (1, -1) + (1,) * (x.dim() - 2)
    expected = layer.weight.detach().view(view) * (x - running_mean.view(view)) / torch.sqrt(
        running_var.view(view) + layer.eps
    ) + layer.bias.detach().view(view)
    out = layer(x)
    assert (out - expected).abs().max().item() < 1e-14
    assert torch.equal(layer(x[:1]), out[:1])  # a sample's output does not depend on the batch
    assert torch.equal(layer.running_mean, running_mean) and torch.equal(
        layer.running_var, running_var
    )
    assert layer.step.item() == 0


# ---------------------------------------------------------------- the step counter


def test_step_advances_only_in_training_forwards_with_autograd():
    layer = BatchRenorm1d(3)
    x = torch.randn(4, 3)
    layer(x)
    layer(x)
    assert layer.step.item() == 2
    with torch.no_grad():
        layer(x)  # train mode, no autograd: e.g. bnexp's probe batch
    assert layer.step.item() == 2
    layer.eval()
    layer(x)
    assert layer.step.item() == 2


def test_probe_pass_changes_nothing():
    """bnexp's probe: no_grad + frozen_running_stats in train mode. It must see the network
    as training computes it, and leave its state (moving averages, schedule) untouched."""
    model = nn.Sequential(nn.Linear(5, 4), BatchRenorm1d(4, schedule=RELAXED), nn.ReLU())
    norm = model[1]
    for _ in range(3):
        model(torch.randn(8, 5))
    before = {name: value.clone() for name, value in norm.state_dict().items()}
    probe = torch.randn(8, 5)
    r, d, _, _ = norm.correction(model[0](probe))
    with torch.no_grad(), frozen_running_stats(model):
        probe_out = model(probe)
    for name, value in norm.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert norm.track_running_stats
    # ... and it used the same r and d as a training forward at this step would.
    with torch.no_grad():
        pre = model[0](probe)
        expected, r_hand, d_hand = _by_hand(
            pre.double(), norm.running_mean.double(), norm.running_var.double(),
            norm.weight.double(), norm.bias.double(), norm.eps, 3.0, 5.0,
        )  # fmt: skip
    assert torch.allclose(r.double(), r_hand, atol=1e-5) and torch.allclose(
        d.double(), d_hand, atol=1e-5
    )
    assert (probe_out - torch.relu(expected).float()).abs().max().item() < 1e-4


def test_step_is_saved_and_restored_with_the_state_dict():
    layer = BatchRenorm1d(3, schedule=RenormSchedule(scale=1e-3))  # warm-up 5 steps, r_max 3 at 40
    for _ in range(25):
        layer(torch.randn(4, 3))
    assert "step" in layer.state_dict()
    resumed = BatchRenorm1d(3, schedule=RenormSchedule(scale=1e-3))
    resumed.load_state_dict(layer.state_dict())
    assert resumed.step.item() == 25
    # step 25: r_max = 1 + 2 (25 - 5) / (40 - 5), d_max reached 5 at step 25.
    limits = [v.item() for v in resumed.schedule.limits(resumed.step)]
    assert limits == pytest.approx([1 + 2 * 20 / 35, 5.0])
    resumed(torch.randn(4, 3))
    assert resumed.step.item() == 26


def test_layer_clips_with_the_limits_of_its_current_step():
    layer = BatchRenorm1d(2, schedule=RenormSchedule()).double()
    with torch.no_grad():
        layer.running_var.fill_(1e-4)  # sigma far below sigma_B: r is clipped to r_max
        layer.running_mean.fill_(-100.0)  # mean far off: d is clipped to d_max
    x = 3 * torch.randn(16, 2, generator=_generator(6), dtype=F64)
    for step, (r_max, d_max) in {
        0: (1, 0),
        15_000: (11 / 7, 2.5),
        22_500: (2, 4.375),
        50_000: (3, 5),
    }.items():
        layer.step.fill_(step)
        r, d, _, _ = layer.correction(x)
        assert r.tolist() == pytest.approx([r_max] * 2, rel=1e-12)
        assert d.tolist() == pytest.approx([d_max] * 2, abs=1e-12)


# ---------------------------------------------------------------- the schedule


def test_schedule_is_the_papers_with_linear_ramps():
    schedule = RenormSchedule()
    r = {step: schedule.r_max(step) for step in (0, 4_999, 5_000, 22_500, 40_000, 130_000)}
    d = {step: schedule.d_max(step) for step in (0, 4_999, 5_000, 15_000, 25_000, 130_000)}
    assert r == pytest.approx({0: 1, 4_999: 1, 5_000: 1, 22_500: 2, 40_000: 3, 130_000: 3})
    assert d == pytest.approx({0: 0, 4_999: 0, 5_000: 0, 15_000: 2.5, 25_000: 5, 130_000: 5})
    assert schedule.r_max(5_001) > 1 and schedule.d_max(5_001) > 0  # relaxing starts at 5000


def test_schedule_scaled_to_a_run():
    schedule = RenormSchedule.for_run(13_000)  # a tenth of the paper's 130k steps
    assert PAPER_TRAINING_STEPS == 130_000 and schedule.scale == pytest.approx(0.1)
    assert schedule.r_max(499) == 1 and schedule.d_max(500) == 0
    assert schedule.r_max(2_250) == pytest.approx(2) and schedule.r_max(4_000) == pytest.approx(3)
    assert schedule.d_max(1_500) == pytest.approx(2.5) and schedule.d_max(2_500) == pytest.approx(5)
    assert schedule.warmup_time_constants(0.01) == pytest.approx(5.0)
    assert RenormSchedule().warmup_time_constants(0.01) == pytest.approx(50.0)  # the paper's


@pytest.mark.parametrize(
    "fields",
    [{"scale": 0}, {"r_max_final": 0.5}, {"d_max_final": -1}, {"warmup_steps": 30_000}],
)
def test_schedule_refuses_impossible_values(fields):
    with pytest.raises(ValueError, match="renorm schedule .*not allowed"):
        RenormSchedule(**fields)


def test_for_run_refuses_an_empty_run():
    with pytest.raises(ValueError, match="total_steps=0"):
        RenormSchedule.for_run(0)


# ---------------------------------------------------------------- micro-batches


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_batch_of_two_stays_finite_and_bounded(dtype):
    """With 2 examples |x - mu_B| / sigma_B <= 1, so |x_hat| <= r_max + d_max; also when the two
    examples are equal (sigma_B = sqrt(eps)) and when the moving sigma is tiny or huge."""
    gen = _generator(7)
    layer = BatchRenorm1d(4, schedule=RELAXED, affine=False).to(dtype)
    for step in range(200):
        x = (torch.randn(2, 4, generator=gen) * 10 ** (step % 7 - 3) + step).to(dtype)
        if step % 10 == 0:
            x[1] = x[0]  # zero batch variance
        x.requires_grad_(True)
        out = layer(x)
        out.backward(torch.randn(2, 4, generator=gen).to(dtype))
        assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
        assert out.abs().max().item() <= 3 + 5 + 1e-5
        assert torch.isfinite(layer.running_mean).all() and (layer.running_var >= 0).all()
    assert layer.step.item() == 200
