"""A run with the ICS and landscape measurements on trains bit-identically to one without them.

Each network trains a few steps with momentum SGD (or Adam), a train-mode no-grad probe pass
every step (as bnexp's loop makes), and the measurements either just before the step's forward
pass or between its backward pass and optimizer.step(). Everything a later step could depend
on is compared exactly: parameters, buffers (BN running statistics, renorm's step), optimizer
state, losses, probe outputs, the global RNG and the noise layers' step counters.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bnexp.run.cnn import build_cnn
from bnexp.run.ics import internal_covariate_shift
from bnexp.run.landscape import loss_landscape
from bnexp.run.layers import hidden_blocks, norm_layer_named
from bnexp.run.models import build_mlp
from bnexp.run.renorm import BatchRenorm1d, RenormSchedule

STEPS = 4


def network(kind: str) -> tuple[nn.Module, tuple[int, ...]]:
    torch.manual_seed(0)
    arch, norm = kind.split("-")
    if arch == "cnn":
        return build_cnn(
            (2, 8, 8),
            4,
            depth=3,
            width=4,
            act="relu",
            norm_layer=norm_layer_named(norm, spatial=True),
        ), (2, 8, 8)
    base = "batch" if norm in ("renorm", "dropout") else norm
    model = build_mlp(
        6, 4, depth=3, width=8, act="sigmoid", norm_layer=norm_layer_named(base, spatial=False)
    )
    if norm == "renorm":  # schedule relaxed after half a step: r and d act from step 1
        for block in hidden_blocks(model):
            block.norm = BatchRenorm1d(8, momentum=0.1, schedule=RenormSchedule(scale=1e-4))
    if norm == "dropout":  # a layer that draws from torch's global generator
        model.head = nn.Sequential(nn.Dropout(0.5), model.head)
    return model, (6,)


def train(kind: str, optimizer_name: str, when: str | None):
    """when: None (no measurement), "before" (the forward pass) or "between" (backward and
    step)."""
    model, shape = network(kind)
    if optimizer_name == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=1e-3)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9, weight_decay=1e-3)
    generator = torch.Generator().manual_seed(1)
    probe = torch.randn(5, *shape, generator=generator)
    torch.manual_seed(2)
    losses, probes, results = [], [], []

    def measure(x, y):
        ics = internal_covariate_shift(model, hidden_blocks(model), x, y, optimizer)
        landscape = loss_landscape(model, x, y, lr=0.2)
        results.append((ics, landscape))

    for _ in range(STEPS):
        x = torch.randn(12, *shape, generator=generator)
        y = torch.randint(0, 4, (12,), generator=generator)
        if when == "before":
            measure(x, y)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if when == "between":
            measure(x, y)
        optimizer.step()
        losses.append(loss.item())
        with torch.no_grad():
            probes.append(model(probe))
    counters = [vars(m).get("noise_steps") for m in model.modules()]
    return model, optimizer, losses, probes, torch.get_rng_state(), counters, results


def assert_identical(a, b) -> None:
    model_a, opt_a, losses_a, probes_a, rng_a, counters_a, _ = a
    model_b, opt_b, losses_b, probes_b, rng_b, counters_b, _ = b
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key
    optim_a, optim_b = opt_a.state_dict(), opt_b.state_dict()
    assert optim_a["param_groups"] == optim_b["param_groups"]
    assert optim_a["state"].keys() == optim_b["state"].keys()
    for index, entries in optim_a["state"].items():
        for key, value in entries.items():
            assert torch.equal(
                torch.as_tensor(value), torch.as_tensor(optim_b["state"][index][key])
            )
    assert losses_a == losses_b
    assert all(torch.equal(p, q) for p, q in zip(probes_a, probes_b, strict=True))
    assert torch.equal(rng_a, rng_b)
    assert counters_a == counters_b


@pytest.mark.parametrize(
    "kind, optimizer_name",
    [
        ("mlp-batch", "momentum"),
        ("mlp-none", "momentum"),
        ("mlp-noisy", "momentum"),
        ("mlp-renorm", "momentum"),
        ("mlp-dropout", "adam"),
        ("cnn-batch", "momentum"),
        ("cnn-noisy", "adam"),
    ],
)
@pytest.mark.parametrize("when", ["before", "between"])
def test_training_is_bit_identical_with_the_measurements_on(kind, optimizer_name, when):
    without = train(kind, optimizer_name, None)
    with_measurements = train(kind, optimizer_name, when)
    assert_identical(without, with_measurements)
    # Not vacuous: the measurements ran and saw gradients change.
    results = with_measurements[-1]
    assert len(results) == STEPS
    assert all(max(ics.diff_norm) > 0 and landscape.loss_range > 0 for ics, landscape in results)


def test_a_call_leaves_buffers_counters_and_rng_as_they_were():
    model, _ = network("mlp-noisy")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2, momentum=0.9)
    x, y = torch.randn(12, 6), torch.randint(0, 4, (12,))
    F.cross_entropy(model(x), y).backward()  # one training pass: counters at 1, stats moved
    optimizer.step()
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    versions = {name: p._version for name, p in model.named_parameters()}
    counters = [vars(m).get("noise_steps") for m in model.modules()]
    rng = torch.get_rng_state()
    state = copy.deepcopy(optimizer.state_dict())
    internal_covariate_shift(model, hidden_blocks(model), x, y, optimizer)
    loss_landscape(model, x, y, lr=0.2)
    assert all(torch.equal(b, buffers[name]) for name, b in model.named_buffers())
    assert buffers["blocks.0.norm.num_batches_tracked"].item() == 1
    # The parameters were never written to (so not even an autograd graph would notice).
    assert {name: p._version for name, p in model.named_parameters()} == versions
    assert [vars(m).get("noise_steps") for m in model.modules()] == counters
    assert torch.equal(torch.get_rng_state(), rng)
    after = optimizer.state_dict()
    for index, entries in state["state"].items():
        assert torch.equal(entries["momentum_buffer"], after["state"][index]["momentum_buffer"])
    assert model.training
