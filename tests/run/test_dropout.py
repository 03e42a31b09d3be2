"""`dropout`: nn.Dropout on each hidden block's output (after the nonlinearity), for the MLP and
the CNN; the act_* columns are measured before it; dropout=0 leaves old runs' hashes alone."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from bnexp.errors import UserError
from bnexp.run.config import config_hash, to_container, validate
from bnexp.run.layers import hidden_blocks
from bnexp.run.models import build_model
from bnexp.run.probes import capture
from bnexp.run.records import LAYERS_COLUMNS, METRICS_COLUMNS
from bnexp.run.train import train

from conftest import make_config


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_every_hidden_block_gets_dropout_and_none_at_zero(model):
    shape = (1, 28, 28)
    with_dropout = build_model(
        make_config(**{"model.name": model}, depth=3, width=8, dropout=0.4), shape, 10
    )
    layers = [m for m in with_dropout.modules() if isinstance(m, nn.Dropout)]
    assert len(layers) == 3 and all(m.p == 0.4 for m in layers)
    assert [b.dropout for b in hidden_blocks(with_dropout)] == layers
    without = build_model(make_config(**{"model.name": model}, depth=3, width=8), shape, 10)
    assert not any(isinstance(m, nn.Dropout) for m in without.modules())


def test_dropout_zeroes_about_p_of_the_units_after_the_activation_and_rescales_the_rest():
    """Sigmoid outputs are never 0, so every zero in a block's output is a dropped unit; the
    kept ones are the activation's output divided by 1 - p (inverted dropout)."""
    p = 0.4
    cfg = make_config(depth=2, width=200, act="sigmoid", dropout=p)
    torch.manual_seed(0)
    model = build_model(cfg, (1, 28, 28), 10).train()
    block = hidden_blocks(model)[0]
    outputs = []
    block.register_forward_hook(lambda _m, _i, out: outputs.append(out.detach()))
    x = torch.randn(500, 1, 28, 28)
    with capture(hidden_blocks(model)) as seen:
        model(x)
    act, out = seen.act[0], outputs[0]
    assert torch.all(act > 0)  # the act site: before dropout
    dropped = out == 0
    assert dropped.float().mean().item() == pytest.approx(p, abs=0.01)  # 100,000 units
    assert torch.allclose(out[~dropped], act[~dropped] / (1 - p), rtol=1e-6)
    model.eval()  # inference keeps every unit, unscaled
    outputs.clear()
    with capture(hidden_blocks(model)) as seen:
        model(x)
    assert torch.equal(outputs[0], seen.act[0])


def test_act_columns_describe_the_activation_before_dropout(bundled_data):
    """act_mean at step 0 equals the mean of the sigmoid's output recomputed by hand (no zeros
    from dropout, which would pull a sigmoid's mean towards 0)."""
    cfg = make_config(depth=2, width=32, act="sigmoid", dropout=0.5, steps=1, log_every=1,
                      probe_size=32, **{"norm.name": "none"})  # fmt: skip
    layers = []
    train(cfg, bundled_data, lambda _m, rows: layers.extend(rows))
    act_mean = LAYERS_COLUMNS.index("act_mean")
    act_min = LAYERS_COLUMNS.index("act_min")
    # Hand computation of layer 1 at step 0: sigmoid(W1 x) on batch 0, before any update.
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, bundled_data.input_shape, 10)
    from bnexp.run.data import batch_indices

    x, _ = bundled_data.train_batch(next(batch_indices(len(bundled_data.y_train), 60, cfg.seed)))
    first = model.blocks[0]
    expected = torch.sigmoid(first.weight_layer(x.flatten(1)))
    row = next(r for r in layers if r[0] == 0 and r[1] == 1)
    assert row[act_mean] == pytest.approx(expected.mean().item(), rel=1e-5)
    assert row[act_min] > 0


def without_timing(row: list) -> list:
    return [v for name, v in zip(METRICS_COLUMNS, row, strict=False) if name != "elapsed_s"]


def test_same_seed_same_numbers_with_dropout(bundled_data):
    cfg = make_config(depth=2, width=16, steps=15, log_every=5, probe_size=32, dropout=0.3)
    runs = [[], []]
    for metrics in runs:
        train(cfg, bundled_data, lambda m, _rows, into=metrics: into.append(without_timing(m)))
    assert runs[0] == runs[1]
    plain = []
    train(make_config(depth=2, width=16, steps=15, log_every=5, probe_size=32), bundled_data,
          lambda m, _rows: plain.append(without_timing(m)))  # fmt: skip
    assert plain != runs[0]  # dropout changes what is learnt


@pytest.mark.parametrize("value", [1.0, -0.1, 1.5])
def test_a_dropout_outside_0_1_is_a_user_error(value):
    with pytest.raises(
        UserError, match=rf"dropout={value} is not allowed: it must lie in \[0, 1\)"
    ):
        validate(make_config(dropout=value))


def test_dropout_0_keeps_the_hash_of_runs_made_before_the_key_existed():
    cfg = make_config(depth=4, act="relu")
    before_the_key = to_container(cfg)
    del before_the_key["dropout"]
    assert config_hash(OmegaConf.create(before_the_key)) == config_hash(cfg)
    assert config_hash(make_config(depth=4, act="relu", dropout=0.4)) != config_hash(cfg)
    assert config_hash(make_config(depth=4, act="relu", dropout=0.2)) != config_hash(
        make_config(depth=4, act="relu", dropout=0.4)
    )
