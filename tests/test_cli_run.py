"""`bnexp run` end to end through the real CLI, in a subprocess, on tiny configs."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from bnexp.rundir import LAYER_MEASURE_COLUMNS, LAYERS_COLUMNS, METRICS_COLUMNS

from conftest import TINY, read_csv, run_cli

pytestmark = pytest.mark.slow


def test_run_writes_every_file_with_complete_finite_columns(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(
        ["run", "norm=batch", "act=sigmoid", "depth=4", *TINY, f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    for name in (
        "meta.json",
        "metrics.csv",
        "layers.csv",
        ".hydra/config.yaml",
        ".hydra/overrides.yaml",
    ):
        assert (run_dir / name).is_file(), name

    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["status"] == "completed" and meta["steps_done"] == 20
    assert meta["data_source"] == "bundled-mnist5k" and meta["train_size"] == 4000
    for key in ("config_hash", "bnexp_version", "torch_version", "python_version", "threads",
                "wall_seconds", "steps_per_second", "config", "diverged_at_step"):  # fmt: skip
        assert key in meta, key
    assert meta["config"]["depth"] == 4

    metrics = read_csv(run_dir / "metrics.csv")
    assert list(metrics[0]) == list(METRICS_COLUMNS)
    assert [int(r["step"]) for r in metrics] == [0, 5, 10, 15, 20]
    assert all(r["test_acc"] for r in metrics if int(r["step"]) % 10 == 0)

    layers = read_csv(run_dir / "layers.csv")
    assert list(layers[0]) == list(LAYERS_COLUMNS)
    assert len(layers) == 5 * 4
    for row in layers:
        for name, value in row.items():
            if name == "update_ratio" and row["step"] == "20":
                assert value == ""  # no update after the final measurement: empty, not made up
            elif name in LAYER_MEASURE_COLUMNS:
                assert value == ""  # measure.ics is off: empty, not made up
            else:
                assert value != "" and math.isfinite(float(value)), (name, row)


def test_no_norm_leaves_norm_columns_empty(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(["run", "norm=none", *TINY, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for row in read_csv(run_dir / "layers.csv"):
        assert row["gamma_mean"] == row["beta_std"] == row["running_var_mean"] == ""
        assert row["grad_w_mean_abs"] != ""


def test_same_seed_gives_identical_csvs_apart_from_timing(tmp_path):
    dirs = [tmp_path / "a", tmp_path / "b"]
    for run_dir in dirs:
        result = run_cli(["run", *TINY, "seed=3", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    assert (dirs[0] / "layers.csv").read_text() == (dirs[1] / "layers.csv").read_text()
    strip = lambda rows: [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rows]  # noqa: E731
    assert strip(read_csv(dirs[0] / "metrics.csv")) == strip(read_csv(dirs[1] / "metrics.csv"))


def test_rerun_into_a_completed_run_dir_is_skipped(tmp_path):
    run_dir = tmp_path / "run"
    args = ["run", *TINY, f"hydra.run.dir={run_dir}"]
    assert run_cli(args, cwd=tmp_path).returncode == 0
    stamp = (run_dir / "layers.csv").stat().st_mtime_ns
    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 0 and "skipped" in again.stdout + again.stderr
    assert (run_dir / "layers.csv").stat().st_mtime_ns == stamp


def test_divergence_exits_zero_and_is_recorded(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(
        [
            "run",
            "norm=none",
            "act=identity",
            "optim.lr=10000",
            *TINY,
            "steps=200",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["status"] == "diverged" and isinstance(meta["diverged_at_step"], int)
    assert read_csv(run_dir / "metrics.csv")  # what was logged is kept


def test_ctrl_c_marks_the_run_interrupted_and_keeps_valid_csvs(tmp_path):
    run_dir = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-X", "faulthandler", "-m", "bnexp", "run", *TINY, "steps=1000000", "log_every=50", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A suite started in the background (`cmd &` without job control) inherits SIGINT as
        # ignored, and Python then never raises KeyboardInterrupt: give the run the default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline:
        metrics = run_dir / "metrics.csv"
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # a hang after Ctrl-C: fail with where every thread is
        process.send_signal(signal.SIGABRT)  # faulthandler prints each thread's stack
        _, stderr = process.communicate(timeout=60)
        pytest.fail(f"the run did not stop within 60 s of SIGINT; its stacks:\n{stderr[-6000:]}")
    assert process.returncode != 0
    assert "Traceback" not in stderr
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["status"] == "interrupted"
    rows = read_csv(run_dir / "metrics.csv")
    assert len(rows) >= 2 and all(
        len(r) == len(METRICS_COLUMNS) and None not in r.values() for r in rows
    )


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="Linux only")
def test_headline_command_is_accepted(tmp_path):
    """`bnexp run norm=batch act=sigmoid depth=10` as typed (shortened with steps)."""
    run_dir = tmp_path / "run"
    result = run_cli(
        ["run", "norm=batch", "act=sigmoid", "depth=10", *TINY, f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert len(read_csv(run_dir / "layers.csv")) == 5 * 10


def test_a_killed_run_is_stale_for_every_reader_and_the_same_command_runs_it_again(tmp_path):
    """SIGKILL leaves meta.json saying running: readers must call the run stale (its process is
    gone), `bnexp figures` must count it so, and re-running the same command must finish it."""
    from bnexp.rundir import read_meta, run_status, this_host

    run_dir = tmp_path / "run"
    args = ["run", *TINY, "steps=4000", "log_every=50", "plots=false", f"hydra.run.dir={run_dir}"]
    process = subprocess.Popen(
        [sys.executable, "-m", "bnexp", *args], cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        meta, _ = read_meta(run_dir)
        metrics = run_dir / "metrics.csv"
        if (
            meta.get("status") == "running"
            and metrics.exists()
            and len(metrics.read_text().splitlines()) >= 3
        ):
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)

    meta, _ = read_meta(run_dir)
    assert meta["status"] == "running"  # what the killed process left
    assert meta["pid"] == process.pid and meta["host"] == this_host() and meta["heartbeat"]
    assert run_status(meta) == "stale"

    figures = run_cli(["figures", str(run_dir), "--out", str(tmp_path / "figs")], cwd=tmp_path)
    assert figures.returncode == 0, figures.stderr
    assert "(1 stale)" in figures.stdout
    assert "is stale" in figures.stderr and "re-run the same command" in figures.stderr
    runs = read_csv(tmp_path / "figs" / "runs.csv")
    assert [r["status"] for r in runs] == ["stale"]

    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    meta, _ = read_meta(run_dir)
    assert run_status(meta) == "completed" and meta["steps_done"] == 4000
    steps = [int(r["step"]) for r in read_csv(run_dir / "metrics.csv")]
    assert steps == list(range(0, 4001, 50))  # started again from step 0, nothing duplicated
