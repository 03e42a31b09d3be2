"""Every layers.csv and metrics.csv number of tiny runs, checked against an independent loop.

bnexp runs through its real CLI in a subprocess; tests/reference_loop.py then rebuilds the same
network from the run's .hydra/config.yaml, trains it in a plain PyTorch loop written out by
hand (its own network, batch norm, noisy BN, init, batch order, SGD, step order) and computes
every column from its definition in README.md. The only bnexp code used here is the data
loader (so that both loops see the same tensors); the probe images are the ones bnexp records
in meta.json (`probe_indices`). The reference trains in float64 (from the same float32 initial
weights, noise draws and data): it is the run without rounding, and bnexp, in float32, must
agree with it to float32 accuracy.

Configs (x every layers.csv column x rows 0, 2, 4, 6, and metrics.csv's train/test loss and
accuracy and lr): BN + sigmoid (pre); no norm + tanh + momentum SGD + xavier init (with rows
that have no evaluation); BN + ReLU after the activation (post) + kaiming init; noisy BN +
sigmoid; the same noise without BN (noise_only); BN without gamma/beta + identity + gaussian
init; a CNN with BN + ReLU; a CNN with noisy BN + sigmoid. Every empty cell is checked too:
a cell the reference leaves empty (update_ratio on the final row, act_sat_frac for identity,
gamma/beta/running columns where the norm has none, test metrics off the evaluation steps)
must be empty, and every other cell must hold a number.

Tolerance, per cell: |bnexp - reference| <= RTOL·|reference| + ATOL·scale, where scale is the
root mean square of the elements the statistic summarises (for running_mean_mean: plus the
square root of the mean running variance, the size of the inputs it averages), and 0 for
magnitudes that never come from a cancellation (gradient norms and ratios, losses): relative
only.
- RTOL = 1e-4: the CSVs hold 6 significant digits (rounding <= 5e-6 relative), and bnexp
  computes in float32 (~6e-8 per operation), which a few training steps amplify. Measured on
  these configs (relative, or in units of ATOL·scale): the reference itself run in float32
  differs from its float64 run by at most 9e-6, bnexp from the float64 reference by at most
  1.9e-5, its largest differences in grad_w_mean_abs / grad_act_mean_abs, whose float32 sum
  (bnexp/run/stats.py mean_abs_of) rounds more than the other statistics. 1e-4 keeps a 5x margin
  and still flags a population instead of a sample std on 192 values (2.6e-3) and any real
  mistake (a wrong batch, unit, layer, step or noise draw is off by percents).
- ATOL = 1e-5 of the scale: a statistic whose true value is ~0 (the mean of a batch-normalised
  input, ~1e-8; a running mean of such inputs; beta's mean after a few steps) is float32 noise,
  so it can only be compared in absolute terms, relative to the size of the values it averages.
- Configs are chosen well-conditioned: with BN after a ReLU (post) at lr 0.1 and kaiming init,
  float32 rounding alone moves some percentiles by 3e-3 within six steps (a nearly dead unit's
  tiny outputs are rescaled by up to 1/sqrt(eps) ≈ 300 by the BN that follows it), so that
  config runs at lr 0.02, where float32 and float64 agree to 1e-5.
"""

from __future__ import annotations

import csv
import functools
import json
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from reference_loop import LAYER_COLUMNS, METRIC_COLUMNS, Reference, run_reference

from bnexp.run.data import load_data
from bnexp.rundir import LAYER_MEASURE_COLUMNS, METRIC_MEASURE_COLUMNS

from conftest import run_cli
from synthetic_data import write_mnist

pytestmark = pytest.mark.slow

RTOL, ATOL = 1e-4, 1e-5

# Six steps, a row every two, test metrics every two (every four in one config, so that rows
# without an evaluation are checked too): rows 0, 2, 4, 6 (the final row: no update follows).
# fmt: off
COMMON = ["steps=6", "log_every=2", "eval_every=2", "threads=1", "plots=false",
          "data.download=false"]
MLP = [*COMMON, "depth=3", "width=12", "batch_size=16", "probe_size=32", "track_unit=3",
       "data.source=bundled"]
# A CNN on a synthetic MNIST (28x28, 64 train / 32 test images, tests/synthetic_data.py).
# Every measured tensor has at most 8·4·28·28 = 25,088 elements, below the 65,536 above which
# bnexp estimates percentiles on a subsample: its percentiles are exact here, like the
# reference's (which refuses larger tensors).
CNN = [*COMMON, "model=cnn", "data=mnist", "data.source=torchvision", "batch_size=8",
       "probe_size=16"]
CONFIGS = {
    "batch-sigmoid-pre": [*MLP, "norm=batch", "act=sigmoid"],
    "none-tanh-momentum": [*MLP, "norm=none", "act=tanh", "init=xavier", "optim=momentum",
                           "eval_every=4"],
    # lr 0.02: see the module docstring (well-conditioned configs).
    "batch-relu-post": [*MLP, "norm=batch", "act=relu", "placement=post", "init=kaiming",
                        "optim.lr=0.02"],
    "noisy-sigmoid": [*MLP, "norm=noisy", "act=sigmoid"],
    "noise_only-sigmoid": [*MLP, "norm=noise_only", "act=sigmoid"],
    "batch-identity-affine-false": [*MLP, "norm=batch", "act=identity", "affine=false",
                                    "init=gaussian", "init_std=0.1"],
    # 3 blocks of 4, 8, 16 channels at 28, 14, 7 pixels (two max-pools).
    "cnn-batch-relu": [*CNN, "norm=batch", "act=relu", "depth=3", "width=4", "track_unit=2"],
    # Noisy BN on feature maps: noise per sample, channel and position; 2 blocks of 2, 4
    # channels.
    "cnn-noisy-sigmoid": [*CNN, "norm=noisy", "act=sigmoid", "depth=2", "width=2",
                          "track_unit=1"],
}
# fmt: on


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@functools.lru_cache(maxsize=4)
def dataset(name: str, root: str, source: str, binarize: bool):
    return load_data(name, root, source, False, binarize)


@pytest.fixture(scope="module")
def bnexp_run(tmp_path_factory):
    """bnexp_run(name) -> the run directory of CONFIGS[name], run once per module."""
    done: dict[str, Path] = {}

    def run(name: str) -> Path:
        if name not in done:
            tmp_path = tmp_path_factory.mktemp(name)
            overrides = list(CONFIGS[name])
            if "data.source=torchvision" in overrides:
                write_mnist(tmp_path / "data", train=64, test=32)
                overrides.append(f"data.root={tmp_path / 'data'}")
            run_dir = tmp_path / "run"
            result = run_cli(["run", *overrides, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
            assert result.returncode == 0, result.stderr
            done[name] = run_dir
        return done[name]

    return run


def reference_for(run_dir: Path, **options) -> Reference:
    cfg = OmegaConf.to_container(OmegaConf.load(run_dir / ".hydra" / "config.yaml"), resolve=True)
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["status"] == "completed", meta
    assert "probe_indices" in meta, "meta.json records no probe_indices (issue 9, item 1)"
    probe = meta["probe_indices"]
    assert len(probe) == cfg["probe_size"] == len(set(probe))
    d = cfg["data"]
    data = dataset(d["name"], str(Path(d["root"]).expanduser()), d["source"], d["binarize"])
    options = {"dtype": torch.float64, **options}
    return run_reference(
        cfg, data.train_inputs, data.y_train, data.test_inputs, data.y_test, probe, **options
    )


def mismatches(reference: Reference, run_dir: Path) -> list[str]:
    """Every cell of the run's CSVs that differs from the reference, as readable lines."""
    problems = []

    def check(where: str, column: str, cell: str, expected: float | None, scale: float) -> None:
        if expected is None:
            if cell != "":
                problems.append(f"{where} {column}: bnexp {cell}, expected an empty cell")
            return
        if cell == "":
            problems.append(f"{where} {column}: empty, expected {expected:.6g}")
            return
        got = float(cell)
        bound = RTOL * abs(expected) + ATOL * scale
        if not (math.isfinite(got) and abs(got - expected) <= bound):
            problems.append(
                f"{where} {column}: bnexp {cell}, reference {expected:.8g} "
                f"(difference {got - expected:.3g}, allowed {bound:.3g})"
            )

    layer_rows = read_rows(run_dir / "layers.csv")
    # The opt-in measurement columns (measure.ics / measure.landscape) follow the statistics and
    # are empty here: the reference runs leave them off.
    assert list(layer_rows[0]) == ["step", "layer", *LAYER_COLUMNS, *LAYER_MEASURE_COLUMNS]
    for row in layer_rows:
        assert all(row[column] == "" for column in LAYER_MEASURE_COLUMNS)
    keys = [(int(r["step"]), int(r["layer"])) for r in layer_rows]
    assert keys == sorted(reference.layers), (keys, sorted(reference.layers))
    for key, row in zip(keys, layer_rows):
        expected = reference.layers[key]
        for column in LAYER_COLUMNS:
            check(f"layers.csv step {key[0]} layer {key[1]}", column, row[column],
                  expected.values[column], expected.scales.get(column, 0.0))  # fmt: skip

    metric_rows = read_rows(run_dir / "metrics.csv")
    assert all(row[column] == "" for row in metric_rows for column in METRIC_MEASURE_COLUMNS)
    assert [int(r["step"]) for r in metric_rows] == sorted(reference.metrics)
    for row in metric_rows:
        expected = reference.metrics[int(row["step"])]
        for column in METRIC_COLUMNS:
            check(f"metrics.csv step {row['step']}", column, row[column],
                  expected.values[column], expected.scales[column])  # fmt: skip
    return problems


@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_csv_number_matches_an_independent_plain_pytorch_loop(name, bnexp_run):
    run_dir = bnexp_run(name)
    reference = reference_for(run_dir)
    problems = mismatches(reference, run_dir)
    assert not problems, f"{len(problems)} cells differ:\n" + "\n".join(problems[:40])


def test_the_comparison_tells_row_t_from_running_stats_one_batch_ahead(bnexp_run):
    """The comparison is sharp enough to see issue 9's off-by-one: the same run checked against
    a reference that reads BN's running statistics and the test metrics after batch t's
    forward (the old order) must fail on exactly those columns."""
    run_dir = bnexp_run("batch-sigmoid-pre")
    problems = mismatches(reference_for(run_dir, running_stats_one_batch_ahead=True), run_dir)
    columns = {line.split(":")[0].split()[-1] for line in problems}
    assert {"running_mean_mean", "running_var_mean", "test_loss"} <= columns, problems
    assert columns <= {"running_mean_mean", "running_var_mean", "test_loss", "test_acc"}, problems
