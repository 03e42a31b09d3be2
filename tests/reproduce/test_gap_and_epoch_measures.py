"""The measures of the `regularization` and `lenet` findings, on small hand-made tables whose
answers are worked out by hand; and the eval-mode train/test evaluation behind `regularization`."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from torch import nn

from bnexp.reproduce.claims import (
    Missing,
    Tables,
    epoch_accuracy_change,
    epoch_accuracy_difference,
    epochs_to_reach,
    paired_table_difference,
)
from bnexp.reproduce.generalization import gap_row, loss_and_accuracy

T_975_DF2 = 4.302652729911275  # 97.5% quantile of Student's t with 2 degrees of freedom


def gap_tables() -> Tables:
    rows = [
        {"seed": s, "norm": "batch", "dropout": 0.0, "acc_gap_points": g}
        for s, g in zip((0, 1, 2), (3.0, 4.0, 8.0), strict=True)
    ] + [{"seed": s, "norm": "none", "dropout": 0.4, "acc_gap_points": 5.0} for s in (0, 1, 2)]
    tables = Tables.empty()
    tables.extra = {"generalization": pd.DataFrame(rows)}
    return tables


def test_paired_table_difference_is_the_seed_paired_mean_with_its_t_interval():
    m = paired_table_difference(
        gap_tables(),
        a={"norm": "batch", "dropout": 0.0},
        b={"norm": "none", "dropout": 0.4},
        column="acc_gap_points",
        table="generalization",
    )
    # differences -2, -1, +3: mean 0, sample sd sqrt(14 / 2) = sqrt(7), se sqrt(7 / 3)
    half = T_975_DF2 * math.sqrt(7 / 3)
    assert m.value == pytest.approx(0.0, abs=1e-12)
    assert m.interval == pytest.approx((-half, half))
    assert list(m.detail["difference"]) == [-2.0, -1.0, 3.0]


def test_paired_table_difference_without_rows_is_missing():
    with pytest.raises(Missing, match="no 'generalization' rows with norm=batch dropout=0.4"):
        paired_table_difference(
            gap_tables(), {"norm": "batch", "dropout": 0.4}, {"norm": "none", "dropout": 0.4},
            column="acc_gap_points", table="generalization",
        )  # fmt: skip


EPOCH = 100  # updates per epoch in these tables


def epoch_tables(curves: dict[tuple[str, int], list[float]]) -> Tables:
    """One run per (norm, seed) with test accuracies after epochs 1, 2, ... (and at step 0 and
    half-way through epoch 1, which the measures must ignore)."""
    runs, metrics = [], []
    for (norm, seed), accs in curves.items():
        run_id = f"{norm}-{seed}"
        runs.append({"run_id": run_id, "status": "completed", "seed": seed, "norm": norm})
        metrics += [{"run_id": run_id, "step": 0, "test_acc": 0.1}]
        metrics += [{"run_id": run_id, "step": EPOCH // 2, "test_acc": 0.99}]
        metrics += [
            {"run_id": run_id, "step": EPOCH * (e + 1), "test_acc": acc}
            for e, acc in enumerate(accs)
        ]
    return Tables(pd.DataFrame(runs), pd.DataFrame(metrics), pd.DataFrame({"run_id": []}))


CURVES = {
    ("batch", 0): [0.90, 0.95, 0.96],
    ("batch", 1): [0.92, 0.96, 0.98],
    ("none", 0): [0.50, 0.80, 0.905, 0.93],
    ("none", 1): [0.60, 0.82, 0.925, 0.94],
}


def test_epochs_to_reach_counts_whole_epochs_of_the_seed_mean_curve():
    m = epochs_to_reach(epoch_tables(CURVES), {"norm": "batch"}, {"norm": "none"}, EPOCH)
    # BN after epoch 1: (90 + 92) / 2 = 91%; plain: 55, 81, 91.5, 93.5 -> epoch 3
    assert m.value == 3
    assert "91.00%" in m.text and "after epoch 3" in m.text
    assert list(m.detail["accuracy_pct"]) == pytest.approx([55.0, 81.0, 91.5, 93.5])


def test_epochs_to_reach_not_reached_gives_the_lower_bound_epochs_run_plus_one():
    slow = {**CURVES, ("none", 0): [0.5, 0.6, 0.7, 0.8], ("none", 1): [0.5, 0.6, 0.7, 0.9]}
    m = epochs_to_reach(epoch_tables(slow), {"norm": "batch"}, {"norm": "none"}, EPOCH)
    assert m.value == 5  # 4 epochs run, never 91%: at least 5
    assert "does not reach it in 4 epochs" in m.text


def test_epoch_accuracy_change_is_paired_by_seed():
    m = epoch_accuracy_change(epoch_tables(CURVES), {"norm": "batch"}, EPOCH, 1, 3)
    # seed 0: 96 - 90 = 6; seed 1: 98 - 92 = 6 -> mean 6, zero spread
    assert m.value == pytest.approx(6.0)
    assert m.interval == pytest.approx((6.0, 6.0))
    assert "91.00, 95.50, 97.00%" in m.text


def test_epoch_accuracy_difference_after_epoch_1():
    m = epoch_accuracy_difference(
        epoch_tables(CURVES), {"norm": "batch"}, {"norm": "none"}, EPOCH, 1
    )
    # seed 0: 90 - 50 = 40; seed 1: 92 - 60 = 32 -> mean 36, sd sqrt(32), t(1) = 12.706
    assert m.value == pytest.approx(36.0)
    half = 12.706204736174707 * math.sqrt(32) / math.sqrt(2)
    assert m.interval == pytest.approx((36 - half, 36 + half))


def test_a_missing_epoch_is_missing():
    with pytest.raises(Missing, match="no evaluation after epoch 5"):
        epoch_accuracy_change(epoch_tables(CURVES), {"norm": "batch"}, EPOCH, 1, 5)


def test_train_and_test_are_classified_in_eval_mode_by_hand():
    """A linear classifier with known weights: loss and accuracy computed by hand; a Dropout
    layer with p = 0.9 in front must not act (eval mode), and the mode is restored."""
    linear = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.9), linear).train()
    x_train = torch.tensor([[[[2.0, 0.0]]], [[[0.0, 1.0]]], [[[1.0, 3.0]]]])  # N x 1 x 1 x 2
    y_train = torch.tensor([0, 1, 0])  # the third is misclassified (logits 1, 3)
    x_test = torch.tensor([[[[0.0, 0.0]]]])
    y_test = torch.tensor([1])  # logits 0, 0: argmax 0, wrong; loss ln 2
    loss, acc = loss_and_accuracy(model, x_train, y_train)
    by_hand = [
        -math.log(math.exp(2) / (math.exp(2) + 1)),
        -math.log(math.exp(1) / (1 + math.exp(1))),
        -math.log(math.exp(1) / (math.exp(1) + math.exp(3))),
    ]
    assert loss == pytest.approx(sum(by_hand) / 3, rel=1e-6)
    assert acc == pytest.approx(2 / 3)
    assert model.training
    data = SimpleNamespace(train_inputs=x_train, y_train=y_train, test_inputs=x_test, y_test=y_test)
    cfg = SimpleNamespace(
        seed=4, norm=SimpleNamespace(name=SimpleNamespace(value="none")), dropout=0.9
    )
    row = gap_row(cfg, model, data)
    assert row["acc_gap_points"] == pytest.approx(100 * (2 / 3 - 0))
    assert row["loss_gap"] == pytest.approx(math.log(2) - sum(by_hand) / 3, rel=1e-6)
    assert (row["seed"], row["norm"], row["dropout"]) == (4, "none", 0.9)
