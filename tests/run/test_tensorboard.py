"""logger=tensorboard (bnexp/run/tensorboard.py): the events, read back with TensorBoard's own
reader, hold the numbers of metrics.csv and layers.csv, at the same steps; each histogram is of
the tensor the layer's pre_* columns describe (its count, min, max, mean and std agree)."""

from __future__ import annotations

import json
import math
import sys

import pytest

from bnexp.errors import UserError
from bnexp.run.config import config_hash
from bnexp.run.runner import execute
from bnexp.run.tensorboard import HISTOGRAM_BINS, TB_DIR, TensorBoardSink

from conftest import TINY, make_config, read_csv, run_cli

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    EventAccumulator,
)

METRIC_TAGS = {
    "train/loss": "train_loss",
    "train/acc": "train_acc",
    "test/loss": "test_loss",
    "test/acc": "test_acc",
}
LAYER_SCALARS = ("grad_w_mean_abs", "grad_w_norm", "act_sat_frac", "gamma_mean", "beta_mean")


def tiny_config(**overrides):
    base = {
        "data.source": "bundled",
        "data.download": False,
        "steps": 20,
        "log_every": 5,
        "eval_every": 10,
        "width": 16,
        "probe_size": 32,
        "batch_size": 30,
    }
    return make_config(**{**base, **overrides})


def read_events(run_dir):
    events = EventAccumulator(str(run_dir / TB_DIR), size_guidance={"scalars": 0, "histograms": 0})
    events.Reload()
    return events


def csv_series(rows, column):
    """{step: value} of the rows whose cell is not empty."""
    return {int(r["step"]): float(r[column]) for r in rows if r[column] != ""}


def test_events_hold_the_csv_numbers_at_the_csv_steps(tmp_path):
    depth = 3
    cfg = tiny_config(depth=depth, **{"logger.name": "tensorboard"})
    assert execute(cfg, tmp_path, threads=1, show_progress=False) == "completed"
    events = read_events(tmp_path)
    metrics, layers = read_csv(tmp_path / "metrics.csv"), read_csv(tmp_path / "layers.csv")

    layer_tags = {f"{c}/layer_{n}": (c, n) for c in LAYER_SCALARS for n in range(1, depth + 1)}
    assert set(events.Tags()["scalars"]) == set(METRIC_TAGS) | set(layer_tags)
    checked = 0
    for tag, column in METRIC_TAGS.items():
        expected = csv_series(metrics, column)
        got = {e.step: e.value for e in events.Scalars(tag)}
        assert sorted(got) == sorted(expected), tag  # test/* only at the evaluated steps
        for step, value in expected.items():
            assert got[step] == pytest.approx(value, rel=1e-5, abs=1e-7), (tag, step)
            checked += 1
    for tag, (column, layer) in layer_tags.items():
        expected = csv_series([r for r in layers if int(r["layer"]) == layer], column)
        got = {e.step: e.value for e in events.Scalars(tag)}
        assert sorted(got) == sorted(expected) == [0, 5, 10, 15, 20], tag
        for step, value in expected.items():
            assert got[step] == pytest.approx(value, rel=1e-5, abs=1e-7), (tag, step)
            checked += 1
    assert checked == 5 + 5 + 3 + 3 + 15 * 5  # train x2 at 5 rows, test x2 at 3, layers

    # One histogram per layer and log step, of the batch's nonlinearity input (batch x width).
    assert set(events.Tags()["histograms"]) == {f"pre_activation/layer_{n}" for n in (1, 2, 3)}
    for layer in range(1, depth + 1):
        rows = {int(r["step"]): r for r in layers if int(r["layer"]) == layer}
        histograms = events.Histograms(f"pre_activation/layer_{layer}")
        assert [h.step for h in histograms] == sorted(rows)
        for h in histograms:
            value, row = h.histogram_value, rows[h.step]
            n = 30 * 16
            assert value.num == n and sum(value.bucket) == n
            assert len(value.bucket) == HISTOGRAM_BINS + 1 and value.bucket[0] == 0
            assert value.min == pytest.approx(float(row["pre_min"]), rel=1e-5, abs=1e-6)
            assert value.max == pytest.approx(float(row["pre_max"]), rel=1e-5, abs=1e-6)
            assert value.bucket_limit[0] == value.min and value.bucket_limit[-1] == pytest.approx(
                value.max
            )
            mean = value.sum / n
            assert mean == pytest.approx(float(row["pre_mean"]), rel=1e-4, abs=1e-5)
            sample_std = math.sqrt((value.sum_squares - n * mean**2) / (n - 1))
            assert sample_std == pytest.approx(float(row["pre_std"]), rel=1e-4)


def test_empty_cells_are_not_written_and_layers_sort_in_order(tmp_path):
    cfg = tiny_config(depth=10, steps=5, **{"norm.name": "none", "logger.name": "tensorboard"})
    assert execute(cfg, tmp_path, threads=1, show_progress=False) == "completed"
    tags = read_events(tmp_path).Tags()
    # No norm: gamma/beta cells are empty in layers.csv, so there is no such tag.
    assert not [t for t in tags["scalars"] if t.startswith(("gamma_mean", "beta_mean"))]
    histograms = sorted(tags["histograms"])
    assert (
        histograms[0] == "pre_activation/layer_01" and histograms[-1] == "pre_activation/layer_10"
    )


def test_the_sink_writes_rows_as_given_inf_yes_nan_and_none_no(tmp_path):
    sink = TensorBoardSink(tmp_path, depth=1)
    # A diverged step: the runner hands the metrics row alone (train_loss inf, nothing else).
    sink.log([7, math.inf, None, None, float("nan"), 0.1, 1.0], [])
    sink.close()
    events = read_events(tmp_path)
    assert events.Tags()["scalars"] == ["train/loss"]
    (event,) = events.Scalars("train/loss")
    assert event.step == 7 and event.value == math.inf


def test_a_run_started_again_replaces_its_events(tmp_path):
    cfg = tiny_config(steps=5, **{"logger.name": "tensorboard"})
    execute(cfg, tmp_path, threads=1, show_progress=False)
    meta = json.loads((tmp_path / "meta.json").read_text())
    meta["status"] = "interrupted"  # so that the next execute runs it again
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    execute(cfg, tmp_path, threads=1, show_progress=False)
    assert len(list((tmp_path / TB_DIR).iterdir())) == 1
    assert [e.step for e in read_events(tmp_path).Scalars("train/loss")] == [0, 5]  # once each


def test_default_logger_writes_no_events_and_the_logger_does_not_change_the_hash(tmp_path):
    cfg = tiny_config(steps=5)
    assert cfg.logger.name.value == "none"
    execute(cfg, tmp_path, threads=1, show_progress=False)
    assert not (tmp_path / TB_DIR).exists()
    assert config_hash(cfg) == config_hash(tiny_config(steps=5, **{"logger.name": "tensorboard"}))


def test_missing_tensorboard_package_is_a_user_error_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import raises ImportError
    cfg = tiny_config(steps=5, **{"logger.name": "tensorboard"})
    with pytest.raises(UserError, match=r"pip install bnexp\[tensorboard\]"):
        execute(cfg, tmp_path, threads=1, show_progress=False)
    assert json.loads((tmp_path / "meta.json").read_text())["status"] == "failed"


@pytest.mark.slow
def test_the_command_line(tmp_path):
    run_dir = tmp_path / "run"
    done = run_cli(["run", "logger=tensorboard", *TINY, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert read_events(run_dir).Tags()["histograms"]
    wrong = run_cli(["run", "logger=wandb", *TINY], cwd=tmp_path)
    assert wrong.returncode == 2
    assert "logger=wandb is not valid. Valid choices for logger: none, tensorboard." in wrong.stderr


def test_a_histogram_leaves_out_non_finite_values_and_counts_the_rest(tmp_path):
    import torch

    sink = TensorBoardSink(tmp_path, depth=3)
    values = torch.tensor([[float("nan"), 1.0, 2.0], [float("inf"), 2.0, 4.0]])
    sink.histograms(3, [values, torch.full((4, 2), 0.5), None])
    sink.close()
    events = read_events(tmp_path)
    assert sorted(events.Tags()["histograms"]) == [
        "pre_activation/layer_1",
        "pre_activation/layer_2",
    ]
    (first,) = events.Histograms("pre_activation/layer_1")
    h = first.histogram_value
    assert (first.step, h.num, h.min, h.max, h.sum, h.sum_squares) == (3, 4, 1, 4, 9, 25)
    assert sum(h.bucket) == 4 and h.bucket[-1] == 1  # 4.0 in the last bucket
    (constant,) = events.Histograms("pre_activation/layer_2")
    assert list(constant.histogram_value.bucket) == [0, 8]  # all equal: one bucket
