"""The training loop on tiny but real runs (bundled MNIST): physics, divergence, determinism."""

from __future__ import annotations

import math

import torch

from bnexp.models import build_model, hidden_blocks
from bnexp.probes import capture, probe_pre_activations
from bnexp.records import LAYERS_COLUMNS, METRICS_COLUMNS
from bnexp.stats import LAYER_STATS
from bnexp.train import train

from conftest import make_config


def collect(cfg, data):
    metrics, layers = [], []
    outcome = train(cfg, data, lambda m, rows: (metrics.append(m), layers.extend(rows)))
    return outcome, metrics, layers


def column(rows, name, layer=None, step=None):
    i = LAYERS_COLUMNS.index(name)
    return [r[i] for r in rows if (layer is None or r[1] == layer) and (step is None or r[0] == step)]


def test_bn_before_sigmoid_standardises_every_unit_at_step_0(bundled_data):
    """With norm=batch placement=pre affine=true, the input of every sigmoid has per-unit batch
    mean 0 and std 1 at initialisation (gamma=1, beta=0)."""
    cfg = make_config(depth=4, width=50)
    torch.manual_seed(0)
    model = build_model(cfg, bundled_data.input_shape, 10)
    x = bundled_data.train_inputs[:60]
    with capture(hidden_blocks(model)) as seen:
        model(x)
    for pre in seen.pre:
        assert pre.shape == (60, 50)
        assert torch.allclose(pre.mean(0), torch.zeros(50), atol=1e-5)
        assert torch.allclose(pre.std(0, unbiased=False), torch.ones(50), atol=1e-2)


def test_probe_pass_leaves_running_statistics_untouched(bundled_data):
    cfg = make_config(depth=2, width=8)
    model = build_model(cfg, bundled_data.input_shape, 10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pre = probe_pre_activations(model, hidden_blocks(model), bundled_data.test_inputs[:64])
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key
    # ... while the probe batch was normalised with its own statistics (train mode),
    for layer in pre:
        assert torch.allclose(layer.mean(0), torch.zeros(8), atol=1e-5)
    # and the norms track their running statistics again afterwards.
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert norms and all(m.track_running_stats for m in norms)


def test_gradients_vanish_in_a_deep_sigmoid_net_without_bn_and_not_with_it(bundled_data):
    """10-layer sigmoid MLP: without BN the first layer's mean |dL/dW| is orders of magnitude
    below the last hidden layer's; with BN it is within a small factor."""
    ratios = {}
    for norm in ("none", "batch"):
        cfg = make_config(depth=10, width=100, steps=5, log_every=5, **{"norm.name": norm})
        _, _, layers = collect(cfg, bundled_data)
        first = column(layers, "grad_w_mean_abs", layer=1, step=0)[0]
        last = column(layers, "grad_w_mean_abs", layer=10, step=0)[0]
        ratios[norm] = last / first
    assert ratios["none"] > 1e3, ratios
    assert ratios["batch"] < 10, ratios


def test_rows_follow_the_csv_contract(bundled_data):
    cfg = make_config(depth=3, width=16, steps=20, log_every=5, eval_every=10, probe_size=32)
    outcome, metrics, layers = collect(cfg, bundled_data)
    assert outcome.status == "completed" and outcome.steps_done == 20
    assert [m[0] for m in metrics] == [0, 5, 10, 15, 20]
    assert all(len(m) == len(METRICS_COLUMNS) for m in metrics)
    assert [m[3] is not None for m in metrics] == [True, False, True, False, True]  # test_loss
    assert len(layers) == 5 * 3 and all(len(r) == len(LAYERS_COLUMNS) for r in layers)
    for row in layers:
        for name, value in zip(LAYER_STATS, row[2:]):
            if name == "update_ratio" and row[0] == 20:
                assert math.isnan(value)  # no update follows the final measurement
            else:
                assert math.isfinite(value), (name, row[0], row[1])


def test_training_learns(bundled_data):
    cfg = make_config(depth=2, width=64, steps=300, log_every=100, eval_every=300, probe_size=32)
    outcome, metrics, _ = collect(cfg, bundled_data)
    assert metrics[-1][4] > 0.7, metrics[-1]  # test accuracy after 300 steps of BN-MLP


def test_same_seed_same_numbers_and_other_seed_other_numbers(bundled_data):
    cfg = make_config(depth=2, width=16, steps=15, log_every=5, probe_size=32)

    def without_timing(metrics):
        return [m[:-1] for m in metrics]

    _, m1, l1 = collect(cfg, bundled_data)
    _, m2, l2 = collect(cfg, bundled_data)
    _, m3, _ = collect(make_config(depth=2, width=16, steps=15, log_every=5, probe_size=32, seed=1), bundled_data)
    assert without_timing(m1) == without_timing(m2)
    assert str(l1) == str(l2)  # str: NaN != NaN but prints the same
    assert without_timing(m1) != without_timing(m3)


def test_divergence_is_a_result(bundled_data):
    cfg = make_config(depth=3, width=32, steps=200, log_every=10, act="identity", **{"norm.name": "none", "optim.lr": 1e4})
    outcome, metrics, layers = collect(cfg, bundled_data)
    assert outcome.status == "diverged"
    assert outcome.diverged_at_step is not None and outcome.diverged_at_step < 200
    assert metrics[-1][0] == outcome.diverged_at_step
    assert not math.isfinite(metrics[-1][1])
    assert layers  # what was logged before is kept
