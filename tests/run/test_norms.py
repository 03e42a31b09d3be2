"""The norm registry: every entry agrees with its YAML, the schema, the hash and the probe; and
batch renorm, added as one entry and one YAML, runs through the real config."""

from __future__ import annotations

import math
from dataclasses import fields

import pytest
import torch
import yaml
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from torch import nn

from bnexp.errors import UserError
from bnexp.run.config import (
    NORM_KEY_RULES,
    SHARED_NORM_KEYS,
    Config,
    NormConfig,
    NormName,
    config_hash,
    validate,
)
from bnexp.run.layers import (
    NORMS,
    get_norm_layer,
    has_running_stats,
    hidden_blocks,
    norm_layer_named,
)
from bnexp.run.models import build_mlp, build_model
from bnexp.run.probes import frozen_running_stats
from bnexp.run.records import LAYERS_COLUMNS
from bnexp.run.renorm import BatchRenorm1d, BatchRenorm2d
from bnexp.run.train import train

from conftest import REPO, make_config

NORM_YAML = REPO / "configs" / "norm"


def compose_config(*overrides: str) -> Config:
    with initialize_config_module(config_module="bnexp.configs", version_base="1.3"):
        return OmegaConf.to_object(compose("config", overrides=list(overrides)))


# --------------------------------------------------------------------------------------------
# The registry agrees with the configs, the schema and the hash
# --------------------------------------------------------------------------------------------


def test_every_norm_has_one_yaml_that_sets_exactly_the_keys_it_reads():
    files = {path.stem for path in NORM_YAML.glob("*.yaml")}
    assert files == set(NORMS) == {member.value for member in NormName}
    for name, spec in NORMS.items():
        keys = yaml.safe_load((NORM_YAML / f"{name}.yaml").read_text()) or {}
        assert keys.pop("name") == name
        assert set(keys) == set(spec.keys), name  # so the hash covers every key the YAML sets


def test_every_norm_key_is_in_the_schema_with_a_value_rule():
    schema = {f.name for f in fields(NormConfig)} - {"name"}
    assert set(NORM_KEY_RULES) == schema
    for name, spec in NORMS.items():
        assert set(spec.keys) <= schema, name


def test_hash_covers_the_chosen_norms_keys_and_no_other_norms():
    other = {"noise_shift": 0.3, "renorm_r_max": 2.0, "momentum": 0.2, "groups": 4}
    for name, spec in NORMS.items():
        base = make_config(**{"norm.name": name, "width": 8})
        for key, value in other.items():
            moved = make_config(**{"norm.name": name, "width": 8, f"norm.{key}": value})
            differs = config_hash(base) != config_hash(moved)
            assert differs == (key in spec.keys or key in SHARED_NORM_KEYS), (name, key)


def test_hashes_of_runs_made_before_the_registry_are_unchanged():
    """Values computed with the code before the norm registry (commit d5dd81a, config.py
    special-casing the noise keys): finished runs must still be recognised and skipped."""
    before = {
        (): "e857fa0964849fe8",
        (("norm.name", "none"),): "2a8496f247c989c6",
        (("norm.name", "noisy"),): "eeeaa7bad4920c5c",
        (("norm.name", "group"), ("norm.groups", 5)): "367e20931d9401f0",
        (("norm.name", "noise_only"), ("norm.noise_shift", 0.3)): "a1335c056905b894",
        (("norm.name", "layer"), ("model.name", "cnn")): "1a2fe744a9c9a6c2",
    }
    for overrides, digest in before.items():
        assert config_hash(make_config(**dict(overrides))) == digest, overrides


@pytest.mark.parametrize("spatial", [False, True])
def test_factories_follow_the_registry(spatial):
    for name, spec in NORMS.items():
        cfg = make_config(**{"norm.name": name, "width": 8, "affine": False})
        norm_layer = get_norm_layer(cfg, spatial=spatial)
        assert norm_layer.centres == spec.centres
        layer = norm_layer(8)
        assert isinstance(layer, nn.Module)
        x = torch.randn(4, 8, 3, 3) if spatial else torch.randn(4, 8)
        assert layer(x).shape == x.shape, name
        assert not any(p.requires_grad for p in layer.parameters()), name  # affine=false
    model = build_mlp(
        6, 2, depth=2, width=8, act="relu", norm_layer=lambda channels: nn.Identity()
    )  # a plain callable is a factory too; without `centres` the Linear keeps its bias
    assert all(b.weight_layer.bias is not None for b in hidden_blocks(model))


@pytest.mark.parametrize("name", [n for n, spec in NORMS.items() if spec.batch_statistics])
def test_norms_with_batch_statistics_refuse_batches_of_one(name):
    with pytest.raises(UserError, match=f"batch_size=1 is not allowed with norm={name}"):
        validate(make_config(**{"norm.name": name, "batch_size": 1, "norm.momentum": 0.1}))


def test_unknown_norm_names_list_the_registry():
    with pytest.raises(UserError) as error:
        norm_layer_named("batchh", spatial=False)
    assert all(name in str(error.value) for name in NORMS)


# --------------------------------------------------------------------------------------------
# The probe freezes every norm with running statistics, whatever its class
# --------------------------------------------------------------------------------------------


class RunningMeanCentring(nn.Module):
    """Not a torch _BatchNorm: centres with the batch mean, keeps a running mean and variance."""

    def __init__(self, channels: int):
        super().__init__()
        self.track_running_stats = True
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.track_running_stats:
            with torch.no_grad():
                self.running_mean.lerp_(x.mean(0), 0.5)
                self.running_var.lerp_(x.var(0), 0.5)
        return x - x.mean(0)


def test_probe_freezes_any_module_with_running_buffers():
    model = nn.Sequential(
        nn.Linear(3, 4), RunningMeanCentring(4), nn.BatchNorm1d(4), BatchRenorm1d(4),
        nn.BatchNorm1d(4, track_running_stats=False), nn.LayerNorm(4),
    )  # fmt: skip
    assert [has_running_stats(m) for m in model] == [False, True, True, True, False, False]
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad(), frozen_running_stats(model):
        model(torch.randn(16, 3) + 5)
    for key, value in model.state_dict().items():
        assert torch.equal(value, buffers[key]), key
    assert [getattr(m, "track_running_stats", None) for m in model] == [
        None, True, True, True, False, None,
    ]  # fmt: skip
    model(torch.randn(16, 3) + 5)  # outside the context the running statistics move again
    assert not torch.equal(model[1].running_mean, buffers["1.running_mean"])


# --------------------------------------------------------------------------------------------
# norm=renorm: one NORMS entry and configs/norm/renorm.yaml
# --------------------------------------------------------------------------------------------


def test_renorm_composes_with_the_papers_constants_and_a_schedule_scaled_to_the_run():
    cfg = compose_config("norm=renorm")
    validate(cfg)  # the default run (5,000 steps) passes the warm-up check: 1.9 time constants
    assert cfg.norm.momentum == 0.01  # Ioffe 2017, Sec. 4 (not torch BN's 0.1)
    layers = [b.norm for b in hidden_blocks(build_model(cfg, (1, 28, 28), 10))]
    assert len(layers) == 3 and all(type(layer) is BatchRenorm1d for layer in layers)
    schedule = layers[0].schedule
    assert schedule.scale == pytest.approx(5_000 / 130_000)
    assert (schedule.r_max_final, schedule.d_max_final) == (3.0, 5.0)
    # 5k, 25k and 40k of 130k steps: the same shares of a 5,000-step run.
    assert schedule.r_max(192) == 1.0 and schedule.d_max(192) == 0.0  # warm-up: 192.3 steps
    assert schedule.d_max(round(25_000 / 26)) == pytest.approx(5.0, abs=0.01)
    assert schedule.r_max(round(40_000 / 26)) == pytest.approx(3.0, abs=0.01)
    assert layers[0].momentum == 0.01 and layers[0].eps == 1e-5

    cnn = compose_config("norm=renorm", "model=cnn", "steps=2600")
    validate(cnn)
    assert all(
        type(b.norm) is BatchRenorm2d for b in hidden_blocks(build_model(cnn, (3, 32, 32), 10))
    )
    unscaled = compose_config("norm=renorm", "steps=50000", "norm.renorm_schedule_steps=null")
    validate(unscaled)
    assert get_norm_layer(unscaled, spatial=False)(4).schedule.scale == 1.0


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        # 300 steps: warm-up 11.5 steps = 0.12 time constants at momentum 0.01
        (["steps=300"], ["steps=300", "norm.momentum=0.01", "0.12 time constants", ">= 0.0867"]),
        (["steps=2599"], ["steps=2599", "time constants"]),  # just below one time constant
        (["norm.renorm_schedule_steps=null"], ["5000 steps", "the whole run", "r and d never act"]),
        (["norm.momentum=0"], ["norm.momentum=0", "(0, 1]", "norm=renorm"]),
        (["norm.renorm_r_max=0.5"], ["norm.renorm_r_max=0.5", ">= 1"]),
        (["norm.renorm_d_max=-1"], ["norm.renorm_d_max=-1", ">= 0"]),
        (["norm.renorm_r_max_at=100"], ["norm.renorm_r_max_at=100", "renorm_warmup_steps=5000"]),
        (["norm.renorm_schedule_steps=0"], ["norm.renorm_schedule_steps=0", ">= 1"]),
        (["norm.renorm_d_max=inf"], ["norm.renorm_d_max=inf", "finite"]),
        (["batch_size=1"], ["batch_size=1", "norm=renorm"]),
    ],
)
def test_impossible_renorm_configs_are_user_errors(overrides, words):
    with pytest.raises(UserError) as error:
        validate(compose_config("norm=renorm", *overrides))
    assert all(w in str(error.value) for w in words), str(error.value)


def test_the_warm_up_check_sits_at_one_time_constant():
    validate(compose_config("norm=renorm", "steps=2600"))  # 100-step warm-up x 0.01 = 1.0
    validate(compose_config("norm=renorm", "steps=300", "norm.momentum=0.0867"))
    with pytest.raises(UserError):
        validate(compose_config("norm=renorm", "steps=300", "norm.momentum=0.0866"))


def test_renorm_run_equals_batch_norm_until_its_warm_up_ends(bundled_data):
    """Through the real training loop: during the plain-BN warm-up (schedule steps 0 ... 20 of a
    520-step run: 5,000 x 520 / 130,000) renorm's training forward is BN's bit for bit, so every
    row computed from the training and probe passes matches norm=batch's; once r and d act the
    rows part. The moving averages differ from the start (renorm averages sigma, BN the
    unbiased variance), so the running-statistic columns are not compared.

    Row t's probe pass runs after batch t's training forward, which advanced renorm's schedule
    to step t + 1 (bnexp/run/renorm.py: only training forwards count, the probe sees the
    counter as it is), so at row 20 the training columns still match and the probe's unit_*
    columns already differ."""
    common = dict(depth=2, width=16, steps=520, log_every=1, eval_every=520, probe_size=32)
    common["norm.momentum"] = 0.1
    rows = {}
    for name in ("batch", "renorm"):
        cfg = make_config(**common, **{"norm.name": name})
        validate(cfg)
        rows[name] = []
        train(cfg, bundled_data, lambda metrics, new, name=name: rows[name].extend(new))
    probe = {"unit_p15", "unit_p50", "unit_p85"}
    compared = [c for c in LAYERS_COLUMNS[2:] if not c.startswith("running_")]

    def differing(step: int) -> set[str]:
        pairs = [(a, b) for a, b in zip(rows["batch"], rows["renorm"]) if a[0] == b[0] == step]
        assert len(pairs) == 2  # one row per hidden layer
        return {
            column
            for a, b in pairs
            for column in compared
            if not (
                a[LAYERS_COLUMNS.index(column)] == b[LAYERS_COLUMNS.index(column)]
                or (
                    math.isnan(a[LAYERS_COLUMNS.index(column)])
                    and math.isnan(b[LAYERS_COLUMNS.index(column)])
                )
            )
        }

    assert all(differing(step) == set() for step in range(0, 20))
    assert differing(20) == probe
    for step in (21, 25, 100, 519):
        assert {"grad_w_norm", "pre_std", "act_mean"} <= differing(step), step
