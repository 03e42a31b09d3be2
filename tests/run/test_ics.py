"""bnexp.run.ics against independent computations: G' built by hand on a copy of the network."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnexp.run.cnn import build_cnn
from bnexp.run.ics import internal_covariate_shift
from bnexp.run.layers import Block, hidden_blocks, norm_layer_named
from bnexp.run.models import build_mlp
from bnexp.run.renorm import BatchRenorm1d, RenormSchedule


def mlp(norm: str, depth: int = 3, act: str = "sigmoid", seed: int = 0) -> nn.Module:
    """norm="renorm": batch renorm with its schedule already relaxed (r and d active) and
    running statistics away from the batch's, so that r and d are not 1 and 0."""
    torch.manual_seed(seed)
    model = build_mlp(
        6, 4, depth=depth, width=8, act=act,
        norm_layer=norm_layer_named("batch" if norm == "renorm" else norm, spatial=False),
    )  # fmt: skip
    if norm == "renorm":
        for block in hidden_blocks(model):
            block.norm = BatchRenorm1d(8, momentum=0.1, schedule=RenormSchedule(scale=1e-4))
            block.norm.running_mean.uniform_(-1, 1)
            block.norm.running_var.uniform_(0.5, 2)
    return model


def cnn(norm: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_cnn(
        (2, 8, 8), 3, depth=3, width=4, act="relu", norm_layer=norm_layer_named(norm, spatial=True)
    )


def batch(shape: tuple[int, ...], classes: int, n: int = 16, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=generator)
    return x, torch.randint(0, classes, (n,), generator=generator)


def train_steps(model, optimizer, x, y, steps: int) -> None:
    """A few real steps, so that momentum buffers / Adam moments are not empty."""
    for s in range(steps):
        xs = x.roll(s, 0)  # a different batch order each step
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(xs), y.roll(s, 0)).backward()
        optimizer.step()


def block_parameter_names(model: nn.Module, moved: str) -> list[list[str]]:
    prefix = {module: name for name, module in model.named_modules()}
    names = []
    for block in hidden_blocks(model):
        if moved == "weight":
            names.append([f"{prefix[block]}.weight_layer.weight"])
        else:
            names.append([f"{prefix[block]}.{n}" for n, _ in block.named_parameters()])
    return names


def hand_ics_sgd(model, x, y, *, lr, momentum, weight_decay, optimizer, moved):
    """G and G' of every hidden layer, written out from Definition 2.1 with torch's SGD update
    rule (d = g + wd·w; buf = momentum·buf + d, or d itself on the first step; w -= lr·buf) on
    deep copies of the network: no bnexp code beyond the model. Each copy starts from the
    network's buffers (running statistics, renorm's step) and noise-step counters, so every
    pass sees the same running statistics and draws the same noise."""
    params = dict(model.named_parameters())
    reference = copy.deepcopy(model)
    F.cross_entropy(reference(x), y).backward()
    grads = {n: p.grad.clone() for n, p in reference.named_parameters()}
    new_values = {}
    for name, p in params.items():
        d = grads[name] + weight_decay * p.detach()
        if momentum:
            buf = optimizer.state.get(p, {}).get("momentum_buffer")
            d = d.clone() if buf is None else momentum * buf + d
        new_values[name] = p.detach() - lr * d
    blocks = block_parameter_names(model, moved)
    weights = block_parameter_names(model, "weight")
    g_before = [grads[w[0]] for w in weights]
    g_after = [g_before[0]]
    for i in range(1, len(blocks)):
        shifted = copy.deepcopy(model)
        with torch.no_grad():
            for j in range(i):
                for name in blocks[j]:
                    shifted.get_parameter(name).copy_(new_values[name])
        F.cross_entropy(shifted(x), y).backward()
        g_after.append(shifted.get_parameter(weights[i][0]).grad.clone())
    return g_before, g_after


def assert_matches(result, g_before, g_after) -> None:
    for i, (a, b) in enumerate(zip(g_before, g_after, strict=True)):
        a, b = a.double(), b.double()
        expected_diff = float((a - b).norm())
        expected_cos = float((a.flatten() @ b.flatten()) / (a.norm() * b.norm()))
        assert result.diff_norm[i] == pytest.approx(expected_diff, rel=1e-4, abs=1e-9), i
        assert result.cosine[i] == pytest.approx(expected_cos, rel=1e-6, abs=1e-7), i
        assert result.grad_norm[i] == pytest.approx(float(a.norm()), rel=1e-6), i
        assert result.grad_norm_after[i] == pytest.approx(float(b.norm()), rel=1e-6), i


@pytest.mark.parametrize("norm", ["batch", "none", "noisy", "renorm"])
@pytest.mark.parametrize("moved", ["block", "weight"])
def test_mlp_matches_hand_computation_with_momentum_and_weight_decay(norm, moved):
    model = mlp(norm)
    lr, momentum, weight_decay = 0.5, 0.9, 1e-2
    optimizer = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
    )
    x, y = batch((6,), 4)
    train_steps(model, optimizer, x, y, 2)
    result = internal_covariate_shift(model, hidden_blocks(model), x, y, optimizer, moved=moved)
    g_before, g_after = hand_ics_sgd(
        model, x, y, lr=lr, momentum=momentum, weight_decay=weight_decay,
        optimizer=optimizer, moved=moved,
    )  # fmt: skip
    assert_matches(result, g_before, g_after)
    # Not vacuous: the deeper layers' gradients really moved (relative to their size).
    assert min(d / g for d, g in zip(result.diff_norm[1:], result.grad_norm[1:])) > 1e-3
    assert result.diff_norm[0] == 0.0 and result.cosine[0] == 1.0  # layer 1, by definition


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_cnn_matches_hand_computation(norm):
    model = cnn(norm)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9)
    x, y = batch((2, 8, 8), 3)
    train_steps(model, optimizer, x, y, 1)
    result = internal_covariate_shift(model, hidden_blocks(model), x, y, optimizer)
    g_before, g_after = hand_ics_sgd(
        model, x, y, lr=0.3, momentum=0.9, weight_decay=0.0, optimizer=optimizer, moved="block"
    )
    assert_matches(result, g_before, g_after)
    assert min(d / g for d, g in zip(result.diff_norm[1:], result.grad_norm[1:])) > 1e-3


def test_first_step_of_momentum_sgd_has_no_buffer_yet():
    """Step 0: torch's SGD starts the momentum buffer at the gradient itself."""
    model = mlp("batch")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    x, y = batch((6,), 4)
    result = internal_covariate_shift(model, hidden_blocks(model), x, y, optimizer)
    g_before, g_after = hand_ics_sgd(
        model, x, y, lr=0.5, momentum=0.9, weight_decay=0.0, optimizer=optimizer, moved="block"
    )
    assert_matches(result, g_before, g_after)
    assert len(optimizer.state) == 0  # the measurement did not start the run's buffers


def test_adam_uses_the_runs_own_next_step():
    """With Adam (stateful, non-linear update) G' must follow the step the run then takes."""
    model = mlp("batch", act="relu")
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    x, y = batch((6,), 4)
    train_steps(model, optimizer, x, y, 3)
    result = internal_covariate_shift(model, hidden_blocks(model), x, y, optimizer)

    # Independent: let a copy of the run take its real step, then graft layers 1 … i-1.
    stepped = copy.deepcopy(model)
    stepped_optimizer = torch.optim.Adam(stepped.parameters(), lr=0.05)
    stepped_optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    F.cross_entropy(stepped(x), y).backward()
    g_before = [b.weight_layer.weight.grad.clone() for b in hidden_blocks(stepped)]
    stepped_optimizer.step()
    names = block_parameter_names(model, "block")
    g_after = [g_before[0]]
    for i in range(1, len(names)):
        shifted = copy.deepcopy(model)
        with torch.no_grad():
            for j in range(i):
                for name in names[j]:
                    shifted.get_parameter(name).copy_(stepped.get_parameter(name))
        F.cross_entropy(shifted(x), y).backward()
        g_after.append(hidden_blocks(shifted)[i].weight_layer.weight.grad.clone())
    assert_matches(result, g_before, g_after)


class TwoLinear(nn.Module):
    """h = W1 x, out = W2 h: two identity-activation blocks and no head."""

    def __init__(self):
        super().__init__()
        first = Block(nn.Linear(2, 2, bias=False), nn.Identity(), nn.Identity(), "pre")
        second = Block(nn.Linear(2, 1, bias=False), nn.Identity(), nn.Identity(), "pre")
        self.blocks = nn.ModuleList([first, second])
        with torch.no_grad():
            first.weight_layer.weight.copy_(torch.eye(2))
            second.weight_layer.weight.copy_(torch.tensor([[1.0, 1.0]]))

    def forward(self, x):
        return self.blocks[1](self.blocks[0](x))


def test_is_the_norm_of_the_difference_not_the_difference_of_norms():
    """A case with ||G|| = ||G'|| but G ≠ G' (a public re-implementation logged ||G|| − ||G'||).

    Loss L = W2 W1 x with x = (1, 0), W1 = I, W2 = (1, 1), plain SGD at lr 1:
    G_2 = (W1 x)^T = (1, 0); G_1 = W2^T x^T, so W1' x = W1 x − ||x||^2 W2^T = (0, −1) and
    G'_2 = (0, −1). Both have norm 1; ||G − G'|| = √2 and cos(G, G') = 0."""
    model = TwoLinear()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    x, y = torch.tensor([[1.0, 0.0]]), torch.zeros(1)
    result = internal_covariate_shift(
        model, list(model.blocks), x, y, optimizer, loss_fn=lambda out, _y: out.sum()
    )
    assert result.grad_norm[1] == pytest.approx(1.0)
    assert result.grad_norm_after[1] == pytest.approx(1.0)
    assert result.diff_norm[1] == pytest.approx(math.sqrt(2))
    assert result.cosine[1] == pytest.approx(0.0, abs=1e-12)
    # The difference of norms would have reported no shift at all.
    assert abs(result.grad_norm[1] - result.grad_norm_after[1]) < 1e-6 < result.diff_norm[1] - 1


def test_noisy_bn_gradient_is_the_training_steps_own():
    """Called just before the training step's forward pass, the measurement sees the same noise
    as that step: its G is the gradient the step then computes (to float rounding)."""
    model = mlp("noisy")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = batch((6,), 4)
    train_steps(model, optimizer, x, y, 1)
    result = internal_covariate_shift(model, hidden_blocks(model), x, y, optimizer)
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    real = [float(b.weight_layer.weight.grad.double().norm()) for b in hidden_blocks(model)]
    assert result.grad_norm == pytest.approx(real, rel=1e-6)
    # Without the shared noise the gradients differ by far more than rounding: the noise
    # moves every unit by O(1) (noise_shift 1, noise_scale 2).
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()  # the next draw
    redrawn = [float(b.weight_layer.weight.grad.double().norm()) for b in hidden_blocks(model)]
    assert redrawn != pytest.approx(real, rel=1e-3)


def test_unknown_moved_is_refused():
    model = mlp("none")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = batch((6,), 4)
    with pytest.raises(ValueError, match="moved='layer' is not known: choose one of block, weight"):
        internal_covariate_shift(model, hidden_blocks(model), x, y, optimizer, moved="layer")
