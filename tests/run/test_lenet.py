"""model=lenet: the slides' Keras CNN. Its parameter count against Keras's (counted here from the
layer shapes, as Keras's model.summary() does), its shapes, and its fit to the instrumentation."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from torch import nn

from bnexp.errors import UserError
from bnexp.run.config import validate
from bnexp.run.layers import hidden_blocks
from bnexp.run.models import build_model
from bnexp.run.probes import capture
from bnexp.run.train import train

from conftest import make_config

MNIST = (1, 28, 28)


def lenet(norm: str = "batch", **keys):
    cfg = make_config(**{"model.name": "lenet", "norm.name": norm}, width=10, act="relu", **keys)
    validate(cfg)
    torch.manual_seed(0)
    return build_model(cfg, MNIST, 10)


def keras_counts() -> tuple[int, int]:
    """(total, trainable) as Keras's summary counts the slides' network with BN: every Conv2D
    and Dense with its bias; each BN layer of n units 4n, of which gamma and beta (2n) train."""
    conv1 = 5 * 5 * 1 * 10 + 10
    conv2 = 5 * 5 * 10 * 20 + 20
    dense = (20 * 4 * 4) * 100 + 100  # 28 -conv5-> 24 -pool-> 12 -conv5-> 8 -pool-> 4
    head = 100 * 10 + 10
    bn_units = 10 + 20 + 100
    return conv1 + conv2 + dense + head + 4 * bn_units, conv1 + conv2 + dense + head + 2 * bn_units


def test_keras_counts_the_published_38910_and_38650():
    assert keras_counts() == (38_910, 38_650)  # the slides' model.summary(), issue 12


def test_with_bn_the_count_is_keras_less_the_130_biases_bn_makes_dead():
    model = lenet("batch")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    running = sum(
        b.numel()
        for name, b in model.named_buffers()
        if name.endswith(("running_mean", "running_var"))
    )
    dead_biases = 10 + 20 + 100  # the conv/dense biases right before each BN, which bnexp drops
    total, keras_trainable = keras_counts()
    assert running == 2 * (10 + 20 + 100)
    assert trainable + dead_biases == keras_trainable == 38_650
    assert trainable + running + dead_biases == total == 38_910
    weight_layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert [m.bias is None for m in weight_layers] == [True, True, True, False]  # head keeps it


def test_without_bn_every_bias_is_kept_and_the_count_is_kerass_without_bn():
    model = lenet("none")
    trainable = sum(p.numel() for p in model.parameters())
    total, _ = keras_counts()
    assert trainable == total - 4 * (10 + 20 + 100) == 38_390
    assert all(m.bias is not None for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


def test_three_hidden_blocks_with_the_slides_shapes_and_valid_padding():
    model = lenet("batch")
    blocks = hidden_blocks(model)
    assert len(blocks) == 3
    with capture(blocks) as seen:
        logits = model(torch.randn(4, *MNIST))
    assert [tuple(p.shape) for p in seen.pre] == [(4, 10, 24, 24), (4, 20, 8, 8), (4, 100)]
    assert logits.shape == (4, 10)
    assert isinstance(blocks[0].norm, nn.BatchNorm2d) and isinstance(blocks[2].norm, nn.BatchNorm1d)
    assert all(isinstance(b.act, nn.ReLU) for b in blocks)


def test_dropout_goes_after_each_of_the_three_nonlinearities():
    model = lenet("batch", dropout=0.25)
    assert [b.dropout.p for b in hidden_blocks(model)] == [0.25, 0.25, 0.25]


def test_cifar_sized_images_flatten_to_500_features():
    cfg = make_config(**{"model.name": "lenet"}, width=10, act="relu")
    model = build_model(cfg, (3, 32, 32), 10)  # 32 -> 28 -> 14 -> 10 -> 5: 20 x 5 x 5
    assert model.dense.weight_layer.in_features == 500
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("key,value", [("depth", 4), ("width", 32)])
def test_the_fixed_architecture_rejects_another_depth_or_width(key, value):
    cfg = make_config(**{"model.name": "lenet"}, **{"width": 10, key: value})
    with pytest.raises(UserError, match=rf"{key}={value} is not allowed with model=lenet"):
        validate(cfg)


def test_model_lenet_composes_the_slides_network():
    with initialize_config_module(config_module="bnexp.configs", version_base="1.3"):
        cfg = compose(config_name="config", overrides=["model=lenet"])
    cfg = OmegaConf.to_object(cfg)
    validate(cfg)
    assert (cfg.model.name.value, cfg.depth, cfg.width, cfg.act.value) == ("lenet", 3, 10, "relu")


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_a_run_writes_three_layer_rows_per_log_step(bundled_data, norm):
    cfg = make_config(**{"model.name": "lenet", "norm.name": norm}, width=10, act="relu",
                      steps=4, log_every=2, eval_every=2, batch_size=8, probe_size=16)  # fmt: skip
    metrics, layers = [], []
    outcome = train(cfg, bundled_data, lambda m, rows: (metrics.append(m), layers.extend(rows)))
    assert outcome.status == "completed"
    assert [m[0] for m in metrics] == [0, 2, 4]
    assert [(r[0], r[1]) for r in layers] == [(s, k) for s in (0, 2, 4) for k in (1, 2, 3)]
