"""CIFAR-10 and the CNN: data path, architecture, normalisation physics, measurements, CLI.

The datasets are synthetic but written in the exact on-disk formats (tests/synthetic_data.py),
so torchvision's real readers run. torchvision's CIFAR10 verifies MD5 checksums on load; tests
make it expect the synthetic files' own checksums (monkeypatch, inside the test only).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn

from bnexp.errors import UserError
from bnexp.run import cifar, network
from bnexp.run.augment import random_crop_flip
from bnexp.run.cnn import block_channels, build_cnn, stage_sizes
from bnexp.run.config import Config, validate
from bnexp.run.data import load_data
from bnexp.run.layers import (
    Block,
    ChannelLayerNorm,
    NoisyBatchNorm2d,
    hidden_blocks,
    norm_layer_named,
)
from bnexp.run.models import build_model
from bnexp.run.probes import capture
from bnexp.run.renorm import BatchRenorm2d
from bnexp.run.stats import LAYER_STATS, moments, percentiles, saturation_fraction
from bnexp.run.train import train
from bnexp.rundir import LAYERS_COLUMNS

from synthetic_data import (
    CIFAR_FOLDER,
    cifar10_archive,
    patch_cifar10_checksums,
    write_cifar10,
    write_mnist,
)

CIFAR_SHAPE, MNIST_SHAPE = (3, 32, 32), (1, 28, 28)
NORMS, ACTS = (
    ("batch", "noisy", "group", "layer", "none", "renorm"),
    ("sigmoid", "relu", "tanh", "identity"),
)


def make_config(*overrides: str) -> Config:
    """The real composed config for `bnexp run model=cnn OVERRIDES...`, validated."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="bnexp.configs", version_base="1.3"):
        cfg = compose(config_name="config", overrides=["model=cnn", "plots=false", *overrides])
    config = OmegaConf.to_object(cfg)
    validate(config)
    return config


def load_cifar(root: Path):
    return load_data("cifar10", root, "torchvision", download=False, binarize_pixels=False)


class Sink:
    """Collects what train() logs, as the runner's CSV writer would receive it."""

    def __init__(self):
        self.metrics, self.layers = [], []

    def __call__(self, metrics_row, layer_rows):
        self.metrics.append(metrics_row)
        self.layers.extend(layer_rows)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.layers, columns=list(LAYERS_COLUMNS), dtype=float)


# --------------------------------------------------------------------------------------------
# Data: CIFAR-10 through torchvision's reader


def test_cifar10_loads_through_torchvision_as_uint8_nchw(tmp_path, monkeypatch):
    written = write_cifar10(tmp_path, per_batch=20, test=30)
    patch_cifar10_checksums(monkeypatch, tmp_path)
    data = load_cifar(tmp_path)
    assert data.source == "torchvision" and data.name == "cifar10"
    assert data.x_train.shape == (100, 3, 32, 32) and data.x_test.shape == (30, 3, 32, 32)
    assert data.x_train.dtype == torch.uint8 and data.x_train.is_contiguous()
    # The exact pixels and labels, in N×C×H×W order (torchvision hands out N×H×W×C).
    assert torch.equal(data.x_train, torch.from_numpy(written.x_train))
    assert torch.equal(data.x_test, torch.from_numpy(written.x_test))
    assert torch.equal(data.y_train, torch.from_numpy(written.y_train))
    assert data.input_shape == CIFAR_SHAPE and data.mean.shape == (3,) and data.std.shape == (3,)
    batch = data.to_float(data.x_train)
    assert batch.dtype == torch.float32
    assert torch.allclose(batch.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(batch.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-3)


def test_cifar10_archive_in_root_is_verified_and_extracted_offline(tmp_path, monkeypatch):
    written = cifar10_archive(tmp_path, monkeypatch, per_batch=10, test=10)
    assert not (tmp_path / CIFAR_FOLDER).exists()
    data = load_cifar(tmp_path)
    assert (tmp_path / CIFAR_FOLDER / "test_batch").is_file()
    assert torch.equal(data.x_test, torch.from_numpy(written.x_test))


def test_cifar10_corrupted_archive_is_a_user_error(tmp_path, monkeypatch):
    cifar10_archive(tmp_path, per_batch=10, test=10)  # the published archive checksum stays
    with pytest.raises(UserError, match="corrupted") as error:
        load_cifar(tmp_path)
    assert "cifar-10-python.tar.gz" in str(error.value)


def test_cifar10_wrong_checksums_say_corrupted_and_where(tmp_path, monkeypatch):
    write_cifar10(tmp_path, per_batch=10, test=10)
    folder = tmp_path / CIFAR_FOLDER
    # Synthetic files against the published checksums: every file is "corrupted".
    with pytest.raises(UserError, match="corrupted") as error:
        load_cifar(tmp_path)
    assert str(folder) in str(error.value) and cifar.URL in str(error.value)

    # One damaged file among good ones: the message names it, and only it.
    patch_cifar10_checksums(monkeypatch, tmp_path)
    with open(folder / "test_batch", "ab") as f:
        f.write(b"\0")
    with pytest.raises(UserError, match="corrupted") as error:
        load_cifar(tmp_path)
    message = str(error.value)
    assert "test_batch does not match" in message and "data_batch_1" not in message

    patch_cifar10_checksums(monkeypatch, tmp_path)
    (folder / "batches.meta").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="corrupted") as error:
        load_cifar(tmp_path)
    assert "batches.meta" in str(error.value)


def test_cifar10_missing_files_name_the_expected_directory(tmp_path, monkeypatch):
    folder = tmp_path / CIFAR_FOLDER
    with pytest.raises(UserError) as error:
        load_cifar(tmp_path)
    message = str(error.value)
    assert str(folder) in message and "data.download=false" in message and cifar.URL in message

    # download=true but offline: fails at once (no download attempt, no hang).
    monkeypatch.setattr(network, "network_reachable", lambda *a, **k: False)
    start = time.perf_counter()
    with pytest.raises(UserError, match="not reachable") as error:
        load_data("cifar10", tmp_path, "auto", download=True, binarize_pixels=False)
    assert time.perf_counter() - start < 5 and str(folder) in str(error.value)

    # Some files present, one missing: named.
    write_cifar10(tmp_path, per_batch=5, test=5)
    (folder / "data_batch_3").unlink()
    with pytest.raises(UserError, match="data_batch_3 missing"):
        load_cifar(tmp_path)

    with pytest.raises(UserError, match="only MNIST has a bundled"):
        load_data("cifar10", tmp_path, "bundled", download=True, binarize_pixels=False)


def test_cifar10_failed_download_is_a_user_error(tmp_path, monkeypatch):
    import urllib.error

    import torchvision.datasets.cifar as tv_cifar

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("simulated: connection reset")

    monkeypatch.setattr(network, "network_reachable", lambda *a, **k: True)
    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", no_network)  # never the network
    with pytest.raises(UserError, match="downloading CIFAR-10 .* failed .*connection reset"):
        load_data("cifar10", tmp_path, "torchvision", download=True, binarize_pixels=False)


# --------------------------------------------------------------------------------------------
# Training through the real data path


def expected_empty(cfg: Config, frame: pd.DataFrame) -> dict[str, pd.Series]:
    """Which layers.csv cells must be NaN (empty) for this config; everything else is finite."""
    final = frame["step"] == cfg.steps
    nothing, everything = final & False, final | True
    has_affine = cfg.norm.name.value != "none" and cfg.affine
    has_running = cfg.norm.name.value == "batch"
    empty = {column: nothing for column in LAYER_STATS}
    empty["update_ratio"] = final  # no update follows the last measurement
    for column in ("gamma_mean", "gamma_std", "beta_mean", "beta_std"):
        empty[column] = nothing if has_affine else everything
    for column in ("running_mean_mean", "running_var_mean"):
        empty[column] = nothing if has_running else everything
    if cfg.act.value == "identity":
        empty["act_sat_frac"] = everything
    return empty


def check_layer_rows(cfg: Config, frame: pd.DataFrame) -> None:
    logged = sorted(set(range(0, cfg.steps + 1, cfg.log_every)) | {cfg.steps})
    assert sorted(frame["step"].unique()) == logged
    assert len(frame) == len(logged) * cfg.depth
    assert list(frame.groupby("step")["layer"].apply(list).iloc[0]) == list(range(1, cfg.depth + 1))
    for column, empty in expected_empty(cfg, frame).items():
        values = frame[column]
        assert values[empty].isna().all(), f"{column} should be empty where it has no meaning"
        assert values[~empty].map(math.isfinite).all(), f"{column} has non-finite values:\n{values}"
    # What the columns mean constrains their values.
    assert (frame["pre_min"] <= frame["pre_p15"]).all() and (
        frame["pre_p15"] <= frame["pre_p50"]
    ).all()
    assert (frame["pre_p50"] <= frame["pre_p85"]).all() and (
        frame["pre_p85"] <= frame["pre_max"]
    ).all()
    assert (frame["unit_p15"] <= frame["unit_p85"]).all()
    assert (
        (frame["act_sat_frac"] >= 0) & (frame["act_sat_frac"] <= 1)
    ).all() or cfg.act.value == "identity"
    assert (frame["grad_w_norm"] > 0).all() and (frame["grad_act_mean_abs"] > 0).all()


@pytest.mark.parametrize(
    "overrides",
    [
        ("norm=batch", "act=sigmoid"),
        ("norm=group", "norm.groups=4", "act=relu", "placement=post"),
        ("norm=layer", "act=tanh", "affine=false"),
        ("norm=none", "act=identity", "init=kaiming", "optim.lr=0.01"),
    ],
    ids=lambda o: ",".join(o),
)
def test_cnn_trains_on_synthetic_cifar10_with_every_column_meaningful(
    tmp_path, monkeypatch, overrides
):
    write_cifar10(tmp_path, per_batch=20, test=30)
    patch_cifar10_checksums(monkeypatch, tmp_path)
    data = load_cifar(tmp_path)
    cfg = make_config(
        "data=cifar10", f"data.root={tmp_path}", "data.augment=true", "depth=4", "width=8",
        "batch_size=16", "steps=6", "log_every=2", "probe_size=16", "track_unit=7", *overrides,
    )  # fmt: skip
    sink = Sink()
    outcome = train(cfg, data, sink, augment=random_crop_flip)
    assert outcome.status == "completed" and outcome.steps_done == 6
    check_layer_rows(cfg, sink.frame())
    final_metrics = sink.metrics[-1]
    assert final_metrics[0] == 6 and 0 <= final_metrics[4] <= 1  # test accuracy measured


def test_cnn_trains_on_synthetic_mnist_idx_with_batch_of_two(tmp_path):
    written = write_mnist(tmp_path, train=64, test=32)
    data = load_data("mnist", tmp_path, "torchvision", download=False, binarize_pixels=False)
    assert data.source == "torchvision" and data.input_shape == MNIST_SHAPE
    assert torch.equal(data.x_train, torch.from_numpy(written.x_train))
    cfg = make_config(
        "data=mnist",
        "norm=group",
        "batch_size=2",
        "depth=3",
        "width=8",
        "steps=6",
        "log_every=3",
        "probe_size=8",
    )
    sink = Sink()
    assert train(cfg, data, sink).status == "completed"
    check_layer_rows(cfg, sink.frame())


def test_cnn_learns_synthetic_cifar10(tmp_path, monkeypatch):
    """The class-coloured synthetic images are easy: a few dozen steps must lower the loss."""
    write_cifar10(tmp_path, per_batch=40, test=40)
    patch_cifar10_checksums(monkeypatch, tmp_path)
    data = load_cifar(tmp_path)
    cfg = make_config(
        "depth=2",
        "width=8",
        "act=relu",
        "batch_size=20",
        "steps=60",
        "log_every=20",
        "probe_size=8",
    )
    sink = Sink()
    train(cfg, data, sink)
    train_losses = [row[1] for row in sink.metrics]
    assert train_losses[-1] < 0.8 * train_losses[0], train_losses
    assert sink.metrics[-1][4] > 0.2, sink.metrics  # test accuracy; chance is 0.1


# --------------------------------------------------------------------------------------------
# Architecture


def test_stage_sizes_and_channels():
    for depth in range(1, 13):
        sizes = stage_sizes(depth)
        assert sum(sizes) == depth and len(sizes) == min(depth, 3)
        assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    assert stage_sizes(10) == [4, 3, 3]
    assert block_channels(4, 16) == [16, 16, 32, 64]
    assert block_channels(2, 32) == [32, 64]


@pytest.mark.parametrize("shape", [MNIST_SHAPE, CIFAR_SHAPE], ids=["mnist", "cifar"])
def test_every_norm_placement_affine_act_builds_and_runs(shape):
    x = torch.randn(2, *shape)
    for norm in NORMS:
        groups = {"groups": 2} if norm == "group" else {}
        for placement in ("pre", "post"):
            for affine in (True, False):
                for act in ACTS:
                    for depth in (1, 2, 4, 10):
                        model = build_cnn(
                            shape, 10, depth=depth, width=4, act=act, placement=placement,
                            norm_layer=norm_layer_named(norm, spatial=True, affine=affine, **groups),
                        )  # fmt: skip
                        where = f"{norm=} {placement=} {affine=} {act=} {depth=}"
                        check_blocks(model, shape[0], depth, 4, norm, placement, affine, where)
                        out = model(x)
                        assert out.shape == (2, 10) and torch.isfinite(out).all(), where


def check_blocks(model, in_channels, depth, width, norm, placement, affine, where):
    blocks = hidden_blocks(model)
    assert len(blocks) == depth and all(isinstance(b, Block) for b in blocks), where
    channels = block_channels(depth, width)
    expected_norm = {
        "batch": nn.BatchNorm2d,
        "noisy": NoisyBatchNorm2d,
        "group": nn.GroupNorm,
        "layer": ChannelLayerNorm,
        "none": nn.Identity,
        "renorm": BatchRenorm2d,
    }
    for i, block in enumerate(blocks):
        conv = block.weight_layer
        assert isinstance(conv, nn.Conv2d), where
        assert conv.kernel_size == (3, 3) and conv.padding == (1, 1) and conv.stride == (1, 1), (
            where
        )
        assert conv.in_channels == (in_channels if i == 0 else channels[i - 1]), where
        assert conv.out_channels == channels[i], where
        # The bias is redundant (and dropped) exactly when a norm directly follows the conv.
        assert (conv.bias is None) == (norm != "none" and placement == "pre"), where
        assert type(block.norm) is expected_norm[norm] and block.placement == placement, where
        if norm != "none":
            assert (getattr(block.norm, "weight", None) is not None) == affine, where
    assert model.head.in_features == channels[-1], where


def test_build_model_dispatches_cnn_and_init_reaches_convolutions():
    cfg = make_config("depth=3", "width=8", "init=gaussian", "init_std=0.02", "norm=none")
    model = build_model(cfg, CIFAR_SHAPE, 10)
    convs = [b.weight_layer for b in hidden_blocks(model)]
    assert [c.out_channels for c in convs] == [8, 16, 32]
    for conv in convs:
        assert abs(conv.weight.std().item() - 0.02) < 0.004 and torch.all(conv.bias == 0)


def test_default_cnn_width_comes_from_the_model_group():
    assert make_config().width == 32 and make_config().probe_size == 64
    assert make_config("width=16").width == 16
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="bnexp.configs", version_base="1.3"):
        mlp = compose(config_name="config", overrides=[])
    assert mlp.model.name.value == "mlp" and mlp.width == 100


def test_groups_must_divide_the_channels():
    with pytest.raises(UserError, match="norm.groups=3"):
        build_cnn(
            CIFAR_SHAPE,
            10,
            depth=3,
            width=8,
            act="relu",
            norm_layer=norm_layer_named("group", spatial=True, groups=3),
        )
    with pytest.raises(UserError, match="norm.groups=3 is not allowed with width=32"):
        make_config("norm=group", "norm.groups=3")
    # A divisor of width divides every block's channels (width, 2·width, 4·width).
    cfg = make_config("norm=group", "norm.groups=8", "width=16", "depth=5")
    model = build_model(cfg, CIFAR_SHAPE, 10)
    assert [b.norm.num_groups for b in hidden_blocks(model)] == [8] * 5
    # Default groups: min(32, channels).
    model = build_cnn(
        CIFAR_SHAPE,
        10,
        depth=3,
        width=16,
        act="relu",
        norm_layer=norm_layer_named("group", spatial=True),
    )
    assert [b.norm.num_groups for b in hidden_blocks(model)] == [16, 32, 32]


def test_tracked_channel_must_exist_in_every_block():
    make_config("width=8", "track_unit=7")
    with pytest.raises(UserError, match="track_unit=8"):
        make_config("width=8", "track_unit=8")


# --------------------------------------------------------------------------------------------
# Normalisation physics at step 0


def pre_activations(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    blocks = hidden_blocks(model)
    with torch.no_grad(), capture(blocks, grads=False) as seen:
        logits = model(x)
    return logits, seen.pre


@pytest.mark.parametrize("act", ["sigmoid", "relu"])
def test_batchnorm2d_pre_is_standardised_per_channel_over_batch_and_space(act):
    torch.manual_seed(0)
    model = build_cnn(
        CIFAR_SHAPE,
        10,
        depth=4,
        width=8,
        act=act,
        norm_layer=norm_layer_named("batch", spatial=True),
    ).train()
    _, pre = pre_activations(model, torch.randn(16, *CIFAR_SHAPE) * 3 + 1)
    for layer in pre:
        assert layer.is_contiguous(memory_format=torch.channels_last)
        mean = layer.mean(dim=(0, 2, 3))
        std = layer.var(dim=(0, 2, 3), unbiased=False).sqrt()
        assert torch.allclose(mean, torch.zeros_like(mean), atol=1e-4), mean
        assert torch.allclose(std, torch.ones_like(std), atol=2e-3), std


@pytest.mark.parametrize("groups", [None, 2])
def test_groupnorm_pre_is_standardised_per_group_per_sample(groups):
    torch.manual_seed(0)
    model = build_cnn(
        CIFAR_SHAPE, 10, depth=4, width=8, act="sigmoid",
        norm_layer=norm_layer_named("group", spatial=True, groups=groups),
    )  # fmt: skip
    _, pre = pre_activations(model, torch.randn(6, *CIFAR_SHAPE) * 3 + 1)
    for layer, block in zip(pre, hidden_blocks(model)):
        grouped = layer.reshape(layer.shape[0], block.norm.num_groups, -1)
        mean, std = grouped.mean(dim=2), grouped.var(dim=2, unbiased=False).sqrt()
        assert torch.allclose(mean, torch.zeros_like(mean), atol=1e-4)
        assert torch.allclose(std, torch.ones_like(std), atol=2e-3)


def test_layernorm_pre_is_standardised_per_sample_over_channels_and_space():
    torch.manual_seed(0)
    model = build_cnn(
        CIFAR_SHAPE,
        10,
        depth=3,
        width=8,
        act="tanh",
        norm_layer=norm_layer_named("layer", spatial=True),
    )
    _, pre = pre_activations(model, torch.randn(5, *CIFAR_SHAPE))
    for layer in pre:
        flat = layer.reshape(len(layer), -1)
        assert torch.allclose(flat.mean(1), torch.zeros(5), atol=1e-4)
        assert torch.allclose(flat.var(1, unbiased=False).sqrt(), torch.ones(5), atol=2e-3)


def test_channel_layernorm_is_layernorm_over_c_h_w_with_per_channel_affine():
    torch.manual_seed(0)
    norm = ChannelLayerNorm(6, eps=1e-5, affine=True)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(3, 6, 5, 5) * 4 + 2
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    var = x.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
    expected = (x - mean) / torch.sqrt(var + 1e-5) * norm.weight.view(1, -1, 1, 1) + norm.bias.view(
        1, -1, 1, 1
    )
    assert torch.allclose(norm(x), expected, atol=1e-5)
    assert torch.allclose(
        norm(x.contiguous(memory_format=torch.channels_last)), expected, atol=1e-5
    )


@pytest.mark.parametrize("norm", ["group", "layer", "none"])
def test_batch_independent_norms_give_the_same_per_sample_outputs_at_any_batch_size(norm):
    torch.manual_seed(0)
    model = build_cnn(
        CIFAR_SHAPE,
        10,
        depth=4,
        width=8,
        act="sigmoid",
        norm_layer=norm_layer_named(norm, spatial=True),
    ).train()
    images = torch.randn(64, *CIFAR_SHAPE)
    logits_64, pre_64 = pre_activations(model, images)
    logits_2, pre_2 = pre_activations(model, images[:2])
    assert torch.allclose(logits_2, logits_64[:2], atol=1e-5)
    for small, large in zip(pre_2, pre_64):
        assert torch.allclose(small, large[:2], atol=1e-4)


def test_batchnorm_outputs_depend_on_the_batch():
    torch.manual_seed(0)
    model = build_cnn(
        CIFAR_SHAPE,
        10,
        depth=4,
        width=8,
        act="sigmoid",
        norm_layer=norm_layer_named("batch", spatial=True),
    ).train()
    images = torch.randn(64, *CIFAR_SHAPE)
    logits_64, pre_64 = pre_activations(model, images)
    logits_2, pre_2 = pre_activations(model, images[:2])
    assert (logits_2 - logits_64[:2]).abs().max() > 1e-3
    assert (pre_2[0] - pre_64[0][:2]).abs().max() > 1e-2


# --------------------------------------------------------------------------------------------
# Measurements on channels-last feature maps


def test_statistics_of_channels_last_maps_equal_those_of_contiguous_ones():
    torch.manual_seed(0)
    maps = [torch.randn(4, 8, 16, 16) * 2 + 1, torch.rand(4, 16, 8, 8)]
    last = [m.contiguous(memory_format=torch.channels_last) for m in maps]
    assert torch.allclose(moments(last), moments(maps), atol=1e-5)
    assert torch.allclose(percentiles(last), percentiles(maps), atol=1e-6)  # no subsample: exact
    assert torch.allclose(
        saturation_fraction("sigmoid", last), saturation_fraction("sigmoid", maps)
    )


def test_percentiles_of_large_maps_are_estimated_from_a_subsample():
    torch.manual_seed(0)
    big = torch.randn(64, 32, 32, 32).contiguous(memory_format=torch.channels_last)  # 2M values
    estimate = percentiles([big])[0]
    exact = torch.tensor([-1.0364, 0.0, 1.0364])  # N(0, 1)
    assert torch.allclose(estimate, exact, atol=0.03)


# --------------------------------------------------------------------------------------------
# Augmentation


def reference_crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """The obvious per-sample loop, drawing the same random numbers in the same order."""
    n, _, h, w = x.shape
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator)
    flips = torch.randint(0, 2, (n,), generator=generator).bool()
    padded = F.pad(x, (pad, pad, pad, pad))
    out = []
    for i in range(n):
        top, left = offsets[i].tolist()
        crop = padded[i, :, top : top + h, left : left + w]
        out.append(crop.flip(-1) if flips[i] else crop)
    return torch.stack(out)


@pytest.mark.parametrize("shape", [MNIST_SHAPE, CIFAR_SHAPE], ids=["mnist", "cifar"])
def test_random_crop_flip_matches_a_per_sample_loop(shape):
    x = torch.randn(50, *shape)
    out = random_crop_flip(x, torch.Generator().manual_seed(3))
    assert out.shape == x.shape and out.is_contiguous()
    assert torch.equal(out, reference_crop_flip(x, torch.Generator().manual_seed(3)))


def test_random_crop_flip_is_deterministic_given_the_generator_and_varied():
    x = torch.randn(400, *CIFAR_SHAPE)
    a = random_crop_flip(x, torch.Generator().manual_seed(0))
    b = random_crop_flip(x, torch.Generator().manual_seed(0))
    c = random_crop_flip(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    unchanged = (a == x).flatten(1).all(1).float().mean().item()  # centred and not flipped
    assert 0.0 < unchanged < 0.05  # 1/81 · 1/2 of the samples, on average
    flipped_centred = (a == x.flip(-1)).flatten(1).all(1).float().mean().item()
    assert 0.0 < flipped_centred < 0.05


# --------------------------------------------------------------------------------------------
# End to end through the real CLI


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [str(Path(sys.executable).parent / "bnexp"), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.slow
def test_cli_trains_a_groupnorm_cnn_on_mnist_idx_with_batch_of_two(tmp_path):
    write_mnist(tmp_path / "data", train=64, test=32)
    run_dir = tmp_path / "run"
    result = run_cli(
        "run", "data=mnist", "model=cnn", "norm=group", "batch_size=2", "steps=6", "log_every=2",
        "width=8", "data.source=torchvision", f"data.root={tmp_path / 'data'}", "threads=1",
        "probe_size=16", f"hydra.run.dir={run_dir}", cwd=tmp_path,  # 32 test images: probe <= 32
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["status"] == "completed" and meta["data_source"] == "torchvision"
    assert meta["config"]["model"]["name"] == "cnn" and meta["config"]["width"] == 8
    layers = pd.read_csv(run_dir / "layers.csv")
    assert list(layers.columns) == list(LAYERS_COLUMNS)
    cfg = make_config(
        "data=mnist", "norm=group", "batch_size=2", "steps=6", "log_every=2", "width=8"
    )
    check_layer_rows(cfg, layers)
    assert list(pd.read_csv(run_dir / "metrics.csv")["step"]) == [0, 2, 4, 6]
    assert any((run_dir / "plots").glob("*.png")), "the run's own figures are missing"


@pytest.mark.slow
def test_cli_explains_how_to_get_cifar10_without_a_traceback(tmp_path):
    result = run_cli(
        "run", "data=cifar10", "model=cnn", f"data.root={tmp_path / 'empty'}", "data.download=false",
        f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2
    assert str(tmp_path / "empty" / CIFAR_FOLDER) in result.stderr and cifar.URL in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
