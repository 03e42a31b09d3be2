"""The `regularization` finding's in-process measurement: how well a trained network does on
its own training images against held-out ones (the generalization gap).

metrics.csv's train_acc is read in train mode on the batches as training saw them (dropout
active, BN with batch statistics), which is no measure of overfitting: a dropout network would
look worse on its training set only because units are dropped. Here both sets are classified
by the same trained network in eval mode (running statistics, no unit dropped).
"""

from __future__ import annotations

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnexp.run.config import Config
from bnexp.run.data import InMemoryData, load_data
from bnexp.run.train import train

GAP_COLUMNS = [
    "seed", "norm", "dropout", "train_acc", "test_acc", "train_loss", "test_loss",
    "acc_gap_points", "loss_gap",
]  # fmt: skip


@torch.no_grad()
def loss_and_accuracy(
    model: nn.Module, inputs: Tensor, labels: Tensor, chunk: int = 2000
) -> tuple[float, float]:
    """Mean cross-entropy (nats) and accuracy (fraction) of `model` in eval mode on all of
    `inputs`; the model's mode is restored."""
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(labels), chunk):
        logits = model(inputs[start : start + chunk])
        y = labels[start : start + chunk]
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += int((logits.argmax(1) == y).sum().item())
    model.train(was_training)
    return loss_sum / len(labels), correct / len(labels)


def gap_row(cfg: Config, model: nn.Module, data: InMemoryData) -> dict:
    """One trained network's row of the `generalization` table."""
    train_loss, train_acc = loss_and_accuracy(model, data.train_inputs, data.y_train)
    test_loss, test_acc = loss_and_accuracy(model, data.test_inputs, data.y_test)
    return {
        "seed": cfg.seed,
        "norm": cfg.norm.name.value,
        "dropout": cfg.dropout,
        "train_acc": train_acc,
        "test_acc": test_acc,
        "train_loss": train_loss,
        "test_loss": test_loss,
        "acc_gap_points": 100 * (train_acc - test_acc),  # percentage points
        "loss_gap": test_loss - train_loss,  # nats
    }


def train_test_gap(configs: list[Config]):
    """Trains every config (a norm, a dropout, a seed) and classifies all its training images
    and all its test images in eval mode. A run that diverges is left out, with a note."""
    from bnexp.reproduce.procedure_base import ProcedureResult

    cache: dict[tuple, InMemoryData] = {}
    rows, notes = [], []
    data = None
    for cfg in configs:
        key = (
            cfg.data.name.value, cfg.data.root, cfg.data.source.value, cfg.data.download,
            cfg.data.binarize,
        )  # fmt: skip
        if key not in cache:
            cache[key] = load_data(*key)
        data = cache[key]
        outcome = train(cfg, data, on_log=lambda _metrics, _layers: None)
        if outcome.status != "completed":
            notes.append(
                f"norm={cfg.norm.name.value} dropout={cfg.dropout} seed={cfg.seed}: training "
                f"{outcome.status} at step {outcome.diverged_at_step}; left out"
            )
            continue
        rows.append(gap_row(cfg, outcome.model, data))
    return ProcedureResult.of_data(
        {"generalization": pd.DataFrame(rows, columns=GAP_COLUMNS)}, data, notes
    )
