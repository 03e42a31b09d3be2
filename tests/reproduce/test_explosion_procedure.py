"""The `explosion` procedure's step-0 rows against an independent autograd computation, and
its trainability rows, on a tiny network (bundled MNIST, no download)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bnexp.reproduce.explosion import TRAINABILITY, explosion
from bnexp.reproduce.overrides import compose_config
from bnexp.run.data import batch_indices, load_data
from bnexp.run.models import build_model

TINY = ["data.source=bundled", "width=16", "steps=3", "log_every=1", "eval_every=1"]


def tiny(**keys) -> list:
    return [*TINY, *(f"{k}={v}" for k, v in keys.items())]


def independent_grad_norms(cfg) -> list[float]:
    """||dL/dW_l|| of each hidden Linear on the first training batch, by plain autograd on a
    network built and seeded as bnexp.run.train builds it."""
    data = load_data("mnist", cfg.data.root, "bundled", False, False)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, data.input_shape, data.num_classes).train()
    index = next(batch_indices(len(data.y_train), cfg.batch_size, cfg.seed))
    x, y = data.train_batch(index)
    F.cross_entropy(model(x), y).backward()
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][: cfg.depth]
    return [float(m.weight.grad.double().norm()) for m in linears]


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_step0_grad_w_norm_matches_autograd(norm):
    cfg = compose_config("explosion", tiny(depth=4, batch_size=8, norm=norm, act="relu"))
    result = explosion([cfg])
    rows = result.tables["step0_layers"].sort_values("layer")
    assert list(rows["layer"]) == [1, 2, 3, 4]
    assert set(rows["batch_size"]) == {8} and set(rows["norm"]) == {norm}
    expected = independent_grad_norms(cfg)
    assert rows["grad_w_norm"].tolist() == pytest.approx(expected, rel=1e-4)
    # batch 8 is not the trainability batch: nothing was trained.
    assert result.tables["trainability"].empty


def test_trainability_rows_only_for_the_declared_configs():
    configs = [
        compose_config("explosion", tiny(depth=2, batch_size=TRAINABILITY["batch_size"], act=act))
        for act in ("relu", "identity")
    ]
    result = explosion(configs)
    trained = result.tables["trainability"]
    assert list(trained["act"]) == ["relu"]
    row = trained.iloc[0]
    assert row["steps"] == 3 and row["status"] == "completed"
    assert 0.0 <= row["final_test_acc"] <= 1.0
    assert len(result.tables["step0_layers"]) == 2 * 2  # both configs, two hidden layers each
