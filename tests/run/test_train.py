"""The training loop on tiny but real runs (bundled MNIST): physics, divergence, determinism."""

from __future__ import annotations

import math

import pytest
import torch

from bnexp.run.data import probe_indices
from bnexp.run.layers import hidden_blocks
from bnexp.run.models import build_model
from bnexp.run.probes import capture, probe_pre_activations
from bnexp.run.records import LAYERS_COLUMNS, METRICS_COLUMNS
from bnexp.run.stats import LAYER_STATS
from bnexp.run.train import evaluate, train

from conftest import make_config


def collect(cfg, data):
    metrics, layers = [], []
    outcome = train(cfg, data, lambda m, rows: (metrics.append(m), layers.extend(rows)))
    return outcome, metrics, layers


def column(rows, name, layer=None, step=None):
    i = LAYERS_COLUMNS.index(name)
    return [
        r[i] for r in rows if (layer is None or r[1] == layer) and (step is None or r[0] == step)
    ]


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
    _, m3, _ = collect(
        make_config(depth=2, width=16, steps=15, log_every=5, probe_size=32, seed=1), bundled_data
    )
    assert without_timing(m1) == without_timing(m2)
    assert str(l1) == str(l2)  # str: NaN != NaN but prints the same
    assert without_timing(m1) != without_timing(m3)


def test_divergence_is_a_result(bundled_data):
    cfg = make_config(
        depth=3,
        width=32,
        steps=200,
        log_every=10,
        act="identity",
        **{"norm.name": "none", "optim.lr": 1e4},
    )
    outcome, metrics, layers = collect(cfg, bundled_data)
    assert outcome.status == "diverged"
    assert outcome.diverged_at_step is not None and outcome.diverged_at_step < 200
    assert metrics[-1][0] == outcome.diverged_at_step
    assert not math.isfinite(metrics[-1][1])
    assert layers  # what was logged before is kept


def test_row_0_holds_the_initial_running_statistics_and_the_model_saw_exactly_steps_batches(
    bundled_data,
):
    """Row t is the network after t updates: at row 0 BN's running statistics are the initial
    buffers (mean 0, variance 1), although batch 0's forward pass has run; the final row's
    forward pass (no update follows) does not count a batch."""
    cfg = make_config(depth=3, width=16, steps=12, log_every=4, probe_size=32)
    outcome, _, layers = collect(cfg, bundled_data)
    assert column(layers, "running_mean_mean", step=0) == [0.0, 0.0, 0.0]
    assert column(layers, "running_var_mean", step=0) == [1.0, 1.0, 1.0]
    assert all(v != 0.0 for v in column(layers, "running_mean_mean", step=4))  # batches 0-3
    norms = [m for m in outcome.model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(norms) == 3 and all(int(m.num_batches_tracked) == 12 for m in norms)
    # The final row's running statistics are the returned model's.
    for layer, norm in enumerate(norms, start=1):
        (mean,) = column(layers, "running_mean_mean", layer=layer, step=12)
        assert mean == pytest.approx(norm.running_mean.mean().item(), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("norm", ["batch", "noisy", "none"])
def test_row_t_equals_the_final_row_of_a_run_trained_for_exactly_t_steps(bundled_data, norm):
    """Every column of row 5 of a 15-step run (test metrics, running statistics, gradients,
    probe) equals the final row of the same run stopped after 5 steps, and evaluating that
    run's returned model gives row 5's test metrics: rows are one state, not one batch ahead."""
    common = dict(
        depth=2, width=16, log_every=5, eval_every=5, probe_size=32, **{"norm.name": norm}
    )
    _, long_metrics, long_layers = collect(make_config(steps=15, **common), bundled_data)
    short, short_metrics, short_layers = collect(make_config(steps=5, **common), bundled_data)
    ratio = LAYERS_COLUMNS.index("update_ratio")
    row5 = [r for r in long_layers if r[0] == 5]
    final = [r for r in short_layers if r[0] == 5]
    assert all(math.isfinite(r[ratio]) for r in row5) and all(math.isnan(r[ratio]) for r in final)
    drop = lambda rows: [r[:ratio] + r[ratio + 1 :] for r in rows]  # noqa: E731
    assert str(drop(row5)) == str(drop(final))  # str: NaN (no norm) prints equal
    (long5,) = [m for m in long_metrics if m[0] == 5]
    assert long5[:-1] == short_metrics[-1][:-1]  # all but elapsed_s
    test_loss, test_acc = evaluate(short.model, bundled_data)
    assert (test_loss, test_acc) == (long5[3], long5[4])


def test_probe_columns_come_from_the_recorded_probe_images(bundled_data):
    """Row 0's unit percentiles, recomputed by hand: the untrained network (same seed) on the
    test images at probe_indices, in train mode, the tracked unit's input."""
    cfg = make_config(depth=2, width=16, steps=2, log_every=2, probe_size=40, track_unit=3)
    _, _, layers = collect(cfg, bundled_data)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, bundled_data.input_shape, 10).train()
    probe = bundled_data.test_inputs[probe_indices(bundled_data.y_test, 40)]
    with torch.no_grad(), capture(hidden_blocks(model), grads=False) as seen:
        model(probe)
    for layer, pre in enumerate(seen.pre, start=1):
        expected = torch.quantile(pre[:, 3], torch.tensor([0.15, 0.5, 0.85])).tolist()
        got = [column(layers, f"unit_p{q}", layer=layer, step=0)[0] for q in (15, 50, 85)]
        assert got == pytest.approx(expected, rel=1e-5, abs=1e-6)
