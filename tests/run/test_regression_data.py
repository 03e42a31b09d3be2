"""data=gaussian_regression and loss=mse: the synthetic data set, the MSE loss against hand
computations, the rules that refuse a loss that does not fit the targets (exit 2), and a tiny
deep linear network (Santurkar et al.'s DLN shape) run through the CLI with its ICS columns."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from bnexp.errors import UserError
from bnexp.run.config import config_hash, validate
from bnexp.run.losses import loss_spec
from bnexp.run.synthetic import gaussian_regression
from bnexp.run.train import evaluate
from bnexp.rundir import SYNTHETIC_SOURCE

from conftest import make_config, read_csv, run_cli

REGRESSION = {"data.name": "gaussian_regression", "loss": "mse"}


def test_the_data_set_is_a_fixed_gaussian_teacher_drawn_from_its_seed():
    data = gaussian_regression(input_dim=4, output_dim=3, train_size=50, test_size=20, seed=7)
    assert data.train_inputs.shape == (50, 4) and data.y_train.shape == (50, 3)
    assert data.test_inputs.shape == (20, 4) and data.y_test.shape == (20, 3)
    assert data.input_shape == (4,) and data.num_outputs == 3 and data.source == SYNTHETIC_SOURCE
    assert all(t.dtype == torch.float32 for t in (data.train_inputs, data.y_train, data.teacher))
    # Noise 0: the targets are exactly A x (float64 product rounded once to float32).
    x, a = data.train_inputs.double(), data.teacher.double()
    np.testing.assert_allclose(data.y_train.double(), x @ a.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(data.y_test.double(), data.test_inputs.double() @ a.T, atol=1e-5)
    again = gaussian_regression(input_dim=4, output_dim=3, train_size=50, test_size=20, seed=7)
    assert torch.equal(again.train_inputs, data.train_inputs) and torch.equal(
        again.y_test, data.y_test
    )
    other = gaussian_regression(input_dim=4, output_dim=3, train_size=50, test_size=20, seed=8)
    assert not torch.equal(other.teacher, data.teacher)
    # The teacher is drawn first: more samples never change it.
    bigger = gaussian_regression(input_dim=4, output_dim=3, train_size=80, test_size=20, seed=7)
    assert torch.equal(bigger.teacher, data.teacher)
    # Inputs are standard normal: 4,000 draws' mean within 4 standard errors of 0, std near 1.
    big = gaussian_regression(input_dim=4, output_dim=4, train_size=1000, test_size=1, seed=0)
    assert abs(float(big.train_inputs.mean())) < 4 / np.sqrt(4000)
    assert abs(float(big.train_inputs.std()) - 1) < 0.05


def test_noise_has_the_declared_standard_deviation():
    data = gaussian_regression(4, 2, 5000, 10, noise_std=0.5, seed=1)
    residual = data.y_train.double() - data.train_inputs.double() @ data.teacher.double().T
    assert abs(float(residual.std()) - 0.5) < 0.02


def test_mse_and_the_test_loss_against_hand_computations():
    outputs = torch.tensor([[1.0, 2.0], [0.0, -1.0], [3.0, 0.5]])
    targets = torch.tensor([[0.0, 2.0], [1.0, 1.0], [3.0, -0.5]])
    by_hand = (1 + 0 + 1 + 4 + 0 + 1) / 6  # mean over 3 samples x 2 outputs
    summed = loss_spec("mse").fn(outputs, targets, reduction="sum")  # what evaluate() sums
    assert float(summed) == pytest.approx(by_hand * 6)
    assert float(loss_spec("mse").fn(outputs, targets)) == pytest.approx(by_hand)
    data = gaussian_regression(3, 2, 10, 7, seed=3)
    model = nn.Linear(3, 2)
    loss, accuracy = evaluate(model, data, chunk=3, loss="mse")  # chunks of 3, 3 and 1
    with torch.no_grad():
        expected = ((model(data.test_inputs) - data.y_test).double() ** 2).mean()
    assert loss == pytest.approx(float(expected), rel=1e-6) and accuracy is None


def test_a_loss_that_does_not_fit_the_targets_is_refused():
    with pytest.raises(
        UserError, match=r"loss=mse is not allowed with data=mnist.*loss=cross_entropy"
    ):
        validate(make_config(loss="mse"))
    with pytest.raises(
        UserError, match=r"loss=cross_entropy is not allowed.*Valid choices.*loss=mse"
    ):
        validate(make_config(**{"data.name": "gaussian_regression"}))
    with pytest.raises(UserError, match=r"model=cnn is not allowed with data=gaussian_regression"):
        validate(make_config(**REGRESSION, **{"model.name": "cnn"}))
    with pytest.raises(UserError, match=r"data.batch_classes=2 is not allowed"):
        validate(make_config(**REGRESSION, **{"data.batch_classes": 2}))
    with pytest.raises(UserError, match=r"data.train_size=0 is not allowed"):
        validate(make_config(**REGRESSION, **{"data.train_size": 0}))
    validate(make_config(**REGRESSION, batch_size=1000))  # the full batch of 1,000 is fine


def test_the_new_keys_leave_the_hash_of_classification_runs_alone():
    plain = make_config()
    assert config_hash(plain) == config_hash(make_config(**{"data.input_dim": 99}))
    regression = make_config(**REGRESSION)
    assert config_hash(regression) != config_hash(make_config(**REGRESSION, **{"data.seed": 1}))


@pytest.mark.parametrize(
    "overrides, must_mention",
    [
        (["loss=mse"], ["loss=mse", "data=mnist", "loss=cross_entropy"]),
        (
            ["data=gaussian_regression"],
            ["loss=cross_entropy", "data=gaussian_regression", "loss=mse"],
        ),
        (["loss=huber"], ["loss=huber", "cross_entropy, mse"]),
    ],
)
def test_cli_refuses_a_loss_that_does_not_fit_with_exit_2(tmp_path, overrides, must_mention):
    result = run_cli(
        ["run", "data.source=bundled", "steps=2", *overrides, f"hydra.run.dir={tmp_path / 'r'}"],
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "bnexp: error:" in result.stderr
    for text in must_mention:
        assert text in result.stderr, (text, result.stderr)


def test_a_tiny_deep_linear_network_runs_full_batch_with_ics_columns(tmp_path):
    run_dir = tmp_path / "dln"
    result = run_cli(
        ["run", "data=gaussian_regression", "loss=mse", "data.train_size=64", "data.test_size=32",
         "batch_size=64", "act=identity", "depth=4", "width=10", "init=xavier", "optim.lr=0.01",
         "steps=6", "log_every=2", "measure.ics=true", "probe_size=16", "plots=false",
         f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["status"] == "completed" and meta["data_source"] == SYNTHETIC_SOURCE
    assert (meta["train_size"], meta["test_size"]) == (64, 32) and meta[
        "probe_class_counts"
    ] is None
    metrics, layers = read_csv(run_dir / "metrics.csv"), read_csv(run_dir / "layers.csv")
    assert [int(r["step"]) for r in metrics] == [0, 2, 4, 6]
    assert all(r["train_acc"] == "" and r["test_acc"] == "" for r in metrics)  # no classes
    assert all(float(r["train_loss"]) > 0 for r in metrics)
    assert metrics[-1]["test_loss"] != "" and float(metrics[-1]["test_loss"]) > 0
    measured = [r for r in layers if int(r["step"]) < 6 and int(r["layer"]) >= 2]
    assert len(measured) == 3 * 3  # steps 0, 2, 4 x layers 2..4 (layer 1: G' = G, empty)
    for row in measured:
        assert float(row["ics_diff_norm"]) >= 0 and -1 <= float(row["ics_cosine"]) <= 1
    assert all(r["ics_diff_norm"] == "" for r in layers if r["layer"] == "1" or r["step"] == "6")
