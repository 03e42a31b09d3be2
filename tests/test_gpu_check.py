"""scripts/gpu_check.py (`make gpu-check`) on a machine without a GPU: its comparison rule on
synthetic tables, its "no CUDA device" exit, and its whole path run as cpu against cpu."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys

import pandas as pd
import pytest
import torch

from conftest import REPO

SCRIPT = REPO / "scripts" / "gpu_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_check = load_script()


def frame(values, steps=(0, 0, 5, 5), column="pre_std"):
    return pd.DataFrame({"step": list(steps), "layer": [1, 2] * (len(steps) // 2), column: values})


def test_identical_tables_agree_with_a_zero_worst_ratio():
    a = frame([1.0, 2.0, float("nan"), 4.0])
    result = gpu_check.compare_frames(a, a.copy(), ["pre_std"])
    assert result["ok"] and result["failed"] == {} and result["rows"] == 4
    assert result["worst"]["ratio"] == 0.0 and result["max_rel"]["pre_std"] == 0.0


def test_the_bound_is_the_tolerance_times_the_columns_largest_value():
    a = frame([1.0, 2.0, 3.0, 4.0])  # scale 4: bound 0.04 at tolerance 1e-2
    inside = frame([1.039, 2.0, 3.0, 4.0])
    outside = frame([1.0, 2.0, 3.0, 4.041])
    assert gpu_check.compare_frames(a, inside, ["pre_std"], tolerance=1e-2)["ok"]
    result = gpu_check.compare_frames(a, outside, ["pre_std"], tolerance=1e-2)
    assert not result["ok"] and result["failed"] == {"pre_std": 1}
    worst = result["worst"]
    assert (worst["column"], worst["step"], worst["layer"]) == ("pre_std", 5, 2)
    assert worst["ratio"] == pytest.approx(0.041 / 0.04)
    assert result["max_rel"]["pre_std"] == pytest.approx(0.041 / 4)


def test_empty_and_infinite_cells_must_match_exactly():
    a = frame([1.0, float("nan"), float("inf"), 4.0])
    assert gpu_check.compare_frames(a, a.copy(), ["pre_std"])["ok"]
    for b in ([1.0, 0.5, float("inf"), 4.0], [1.0, float("nan"), 3.0, 4.0],
              [1.0, float("nan"), -math.inf, 4.0]):  # fmt: skip
        result = gpu_check.compare_frames(a, frame(b), ["pre_std", "pre_std"])  # twice: no crash
        assert not result["ok"] and result["worst"]["ratio"] == "inf"


def test_a_zero_column_allows_no_difference_and_max_step_limits_the_rows():
    zeros = frame([0.0, 0.0, 0.0, 0.0])
    assert not gpu_check.compare_frames(zeros, frame([0.0, 1e-12, 0.0, 0.0]), ["pre_std"])["ok"]
    a, b = frame([1.0, 2.0, 3.0, 4.0]), frame([1.0, 2.0, 30.0, 40.0])  # apart after step 0
    assert not gpu_check.compare_frames(a, b, ["pre_std"])["ok"]
    result = gpu_check.compare_frames(a, b, ["pre_std"], max_step=0)
    assert result["ok"] and result["rows"] == 2


def test_differing_cells_counts_text_differences_but_not_elapsed_s(tmp_path):
    def write(run, metrics_rows, layers_rows):
        run.mkdir()
        (run / "metrics.csv").write_text("step,train_loss,elapsed_s\n" + metrics_rows)
        (run / "layers.csv").write_text("step,layer,pre_std\n" + layers_rows)

    write(tmp_path / "a", "0,2.3,0.1\n5,1.1,0.5\n", "0,1,0.5\n0,2,0.25\n")
    write(tmp_path / "b", "0,2.3,0.9\n5,1.1,2.0\n", "0,1,0.5\n0,2,0.25\n")
    assert gpu_check.differing_cells(tmp_path / "a", tmp_path / "b") == 0  # elapsed_s only
    write(tmp_path / "c", "0,2.3,0.1\n5,1.10001,0.5\n", "0,1,0.5\n")
    assert gpu_check.differing_cells(tmp_path / "a", tmp_path / "c") == 1 + 3  # a cell, a row


def test_runs_that_logged_other_rows_disagree():
    result = gpu_check.compare_frames(frame([1.0] * 4), frame([1.0] * 4, steps=(0, 0, 6, 6)), [])
    assert not result["ok"] and "different rows" in result["error"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_without_cuda_it_says_so_in_one_line_and_exits_0(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1 and "no CUDA device" in done.stdout


@pytest.mark.slow
def test_cpu_against_cpu_runs_the_whole_check_and_prints_one_json_line(tmp_path):
    """The cuda path with both runs on the CPU: identical runs, so every cell agrees exactly."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--devices", "cpu,cpu", "--steps", "6", "--models", "mlp",
         "--out", str(tmp_path / "runs"), "width=8", "probe_size=16"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["ok"] and result["devices"] == ["cpu", "cpu"]
    mlp = result["models"]["mlp"]
    assert mlp["overrides"][:3] == ["norm=batch", "act=sigmoid", "depth=10"]
    assert mlp["layers_csv"]["rows"] == 7 * 10  # steps 0..6 (log_every 1) x 10 layers
    assert set(mlp["layers_csv"]["max_rel"].values()) == {0.0}
    assert mlp["metrics_csv"]["ok"] and len(mlp["steps_per_s"]) == 2
    assert mlp["deterministic_rerun"] == {"device": "cpu", "identical": True, "differing_cells": 0}
    assert all(rate > 0 for rate in mlp["steps_per_s"])
    meta = json.loads((tmp_path / "runs" / "mlp-1-cpu" / "meta.json").read_text())
    assert meta["device"] == "cpu" and meta["config"]["device"] == "cpu"
