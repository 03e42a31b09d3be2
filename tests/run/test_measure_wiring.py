"""measure.ics / measure.landscape wired into `bnexp run`: their columns, their steps, the rest
of the CSVs bit-identical to a run without them, their values those of an independent call on
the run's own network and batch, and the config's rules (exit 2) and hash."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from bnexp.errors import UserError
from bnexp.run.config import Config, config_hash, validate
from bnexp.run.data import batch_indices
from bnexp.run.ics import internal_covariate_shift
from bnexp.run.landscape import loss_landscape
from bnexp.run.layers import hidden_blocks
from bnexp.run.models import build_model
from bnexp.run.train import build_optimizer, train
from bnexp.rundir import (
    LAYER_MEASURE_COLUMNS,
    LAYERS_COLUMNS,
    METRIC_MEASURE_COLUMNS,
    METRICS_COLUMNS,
)

from conftest import TINY, make_config, read_csv, run_cli

MEASURE_COLUMNS = {*LAYER_MEASURE_COLUMNS, *METRIC_MEASURE_COLUMNS}


def cli_run(tmp_path, name, *overrides):
    run_dir = tmp_path / name
    result = run_cli(
        ["run", *TINY, "plots=false", *overrides, f"hydra.run.dir={run_dir}"], cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    return read_csv(run_dir / "metrics.csv"), read_csv(run_dir / "layers.csv")


@pytest.mark.slow
@pytest.mark.parametrize("model", ["model=mlp", "model=cnn"])
def test_cli_writes_the_columns_and_trains_bit_identically(tmp_path, model):
    arch = ["depth=3", "width=4"] if model == "model=cnn" else ["depth=3"]
    off = cli_run(tmp_path, "off", model, *arch, "norm=noisy")
    on = cli_run(tmp_path, "on", model, *arch, "norm=noisy", "measure.ics=true",
                 "measure.landscape=true", "measure.every=10")  # fmt: skip
    for rows_off, rows_on in zip(off, on, strict=True):
        assert len(rows_off) == len(rows_on)
        for a, b in zip(rows_off, rows_on, strict=True):
            for name in a:  # every cell the run learns from, as written: bit-identical text
                if name not in MEASURE_COLUMNS and name != "elapsed_s":
                    assert a[name] == b[name], (name, a, b)
            assert all(a[name] == "" for name in MEASURE_COLUMNS & a.keys())  # off: empty
    metrics, layers = on
    for row in metrics:  # measured at steps 0 and 10 (every=10), not 5, 15 or the final 20
        measured = int(row["step"]) in (0, 10)
        for name in METRIC_MEASURE_COLUMNS:
            assert (row[name] != "") == measured, (name, row)
            if measured:
                assert math.isfinite(float(row[name])) and float(row[name]) > 0
    for row in layers:
        measured = int(row["step"]) in (0, 10) and row["layer"] != "1"  # layer 1: G' = G
        for name in LAYER_MEASURE_COLUMNS:
            assert (row[name] != "") == measured, (name, row)
        if measured:
            assert float(row["ics_diff_norm"]) > 0 and -1 <= float(row["ics_cosine"]) <= 1


def test_row_0_is_an_independent_call_on_the_runs_network_and_batch(bundled_data):
    """Row 0's cells equal ics/landscape called directly on a network built with the run's seed
    and batch 0 (the loop does not hand them another batch, model or learning rate)."""
    cfg = make_config(depth=3, width=16, steps=10, log_every=5, probe_size=32, **{
        "measure.ics": True, "measure.landscape": True, "measure.ics_moved": "weight",
        "measure.landscape_range": [0.25, 2.0], "measure.landscape_points": 4,
        "optim.name": "momentum", "optim.momentum": 0.9})  # fmt: skip
    metrics, layers = [], []
    train(cfg, bundled_data, lambda m, rows: (metrics.append(m), layers.extend(rows)))

    torch.manual_seed(cfg.seed)
    model = build_model(cfg, bundled_data.input_shape, bundled_data.num_classes).train()
    optimizer = build_optimizer(cfg, model)
    x, y = bundled_data.train_batch(
        next(batch_indices(len(bundled_data.y_train), cfg.batch_size, cfg.seed))
    )
    ics = internal_covariate_shift(
        model, hidden_blocks(model), x, y, optimizer, F.cross_entropy, "weight"
    )
    land = loss_landscape(model, x, y, 0.1, F.cross_entropy, (0.25, 0.5, 1.0, 2.0))
    i_diff, i_cos = LAYERS_COLUMNS.index("ics_diff_norm"), LAYERS_COLUMNS.index("ics_cosine")
    first = METRICS_COLUMNS.index(METRIC_MEASURE_COLUMNS[0])
    land_cols = slice(first, first + 3)
    rows0 = [r for r in layers if r[0] == 0]
    assert rows0[0][i_diff] is None and rows0[0][i_cos] is None
    for layer in (2, 3):
        assert rows0[layer - 1][i_diff] == pytest.approx(ics.diff_norm[layer - 1], rel=1e-9)
        assert rows0[layer - 1][i_cos] == pytest.approx(ics.cosine[layer - 1], rel=1e-9)
    assert metrics[0][land_cols] == pytest.approx(
        [land.loss_range, land.gradient_predictiveness, land.beta_smoothness], rel=1e-9
    )
    assert metrics[-1][land_cols] == [
        None,
        None,
        None,
    ]  # final row: no update follows, not measured


def schema(**overrides):
    cfg = OmegaConf.structured(Config)
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value, merge=False)
    return cfg


def test_hash_is_unchanged_when_off_and_reads_only_the_keys_in_use():
    plain = config_hash(schema())
    # Off: the measure keys do not count, so finished runs keep their hash.
    assert config_hash(schema(**{"measure.every": 50, "measure.landscape_points": 3})) == plain
    ics = config_hash(schema(**{"measure.ics": True}))
    assert ics != plain
    assert config_hash(schema(**{"measure.ics": True, "measure.landscape_points": 3})) == ics
    assert config_hash(schema(**{"measure.ics": True, "measure.ics_moved": "weight"})) != ics
    land = config_hash(schema(**{"measure.landscape": True}))
    assert config_hash(schema(**{"measure.landscape": True, "measure.landscape_points": 3})) != land
    assert config_hash(schema(**{"measure.landscape": True, "measure.ics_moved": "weight"})) == land


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"log_every": 10, "measure.every": 15}, "measure.every=15"),
        ({"log_every": 10, "measure.every": 0}, "measure.every=0"),
        ({"measure.landscape_range": [2.0, 1.0]}, "measure.landscape_range=[2.0, 1.0]"),
        ({"measure.landscape_range": [0.0, 1.0]}, "measure.landscape_range=[0.0, 1.0]"),
        ({"measure.landscape_range": [0.5]}, "measure.landscape_range=[0.5]"),
        ({"measure.landscape_points": 1}, "measure.landscape_points=1"),
    ],
)
def test_bad_values_are_refused_naming_key_and_value(overrides, named):
    with pytest.raises(UserError, match=named.replace("[", r"\[").replace("]", r"\]")):
        validate(make_config(**overrides))


def test_every_a_multiple_of_the_log_interval_is_accepted():
    validate(make_config(log_every=10, **{"measure.every": 30, "measure.ics": True}))
    validate(make_config(steps=1000, **{"measure.every": 20}))  # log interval 1000 // 100 = 10


@pytest.mark.slow
def test_cli_refuses_a_bad_every_with_exit_2(tmp_path):
    result = run_cli(["run", *TINY, "measure.ics=true", "measure.every=7"], cwd=tmp_path)
    assert result.returncode == 2
    assert "measure.every=7" in result.stderr and "Traceback" not in result.stderr
    result = run_cli(["run", *TINY, "measure.ics_moved=layer"], cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "block" in result.stderr and "weight" in result.stderr
