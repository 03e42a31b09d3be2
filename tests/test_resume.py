"""Checkpoints and resuming (bnexp/run/checkpoint.py): a resumed run writes the rows an
uninterrupted run writes (elapsed_s aside), in process and after a SIGKILL of the real CLI."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bnexp.errors import UserError
from bnexp.run.checkpoint import CHECKPOINT_FILE, Checkpointer, load_checkpoint
from bnexp.run.config import config_hash, validate
from bnexp.run.data import InMemoryData, batch_indices
from bnexp.run.records import cut_csv
from bnexp.run.train import train
from bnexp.rundir import METRICS_COLUMNS, read_meta, run_status

from conftest import make_config, read_csv, run_cli

ELAPSED = METRICS_COLUMNS.index("elapsed_s")


def test_batch_order_restored_mid_epoch_yields_the_same_batches():
    order = batch_indices(10, 3, seed=5)  # 3 batches an epoch: crosses epochs below
    for _ in range(4):
        next(order)
    state = order.state_dict()
    expected = [next(order) for _ in range(7)]
    restored = batch_indices(10, 3, seed=5)
    restored.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(expected, [next(restored) for _ in range(7)]))
    fresh = batch_indices(10, 3, seed=6)
    fresh.load_state_dict(state)  # the state, not the seed, decides
    assert torch.equal(next(fresh), expected[0])


def test_batch_order_is_the_generator_it_replaced():
    """Same seed -> the batches the former generator function yielded: a fresh seeded
    permutation per epoch, whole batches only."""

    def former(n, size, seed):
        generator = torch.Generator().manual_seed(seed)
        while True:
            order = torch.randperm(n, generator=generator)
            for start in range(0, n - size + 1, size):
                yield order[start : start + size]

    old, new = former(10, 3, 7), batch_indices(10, 3, seed=7)
    assert all(torch.equal(next(old), next(new)) for _ in range(20))


def test_cut_csv_keeps_the_header_and_the_first_rows_and_refuses_missing_rows(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes(b"a,b\r\n1,2\r\n3,4\r\n5,")  # the last row torn by a kill
    cut_csv(path, ("a", "b"), 1)
    assert path.read_bytes() == b"a,b\r\n1,2\r\n"
    with pytest.raises(ValueError, match="fewer than 2 complete rows"):
        cut_csv(path, ("a", "b"), 2)
    with pytest.raises(ValueError, match="header"):
        cut_csv(path, ("a", "c"), 1)


def test_checkpoint_every_is_checked_and_left_out_of_the_config_hash():
    with pytest.raises(UserError, match=r"checkpoint_every=-1 is not allowed"):
        validate(make_config(checkpoint_every=-1))
    assert config_hash(make_config(checkpoint_every=7)) == config_hash(make_config())


def synthetic_images(channels: int = 1, size: int = 12, n: int = 96) -> InMemoryData:
    generator = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 10
    x = y.view(-1, 1, 1, 1) * 20 + torch.randint(
        0, 60, (n, channels, size, size), generator=generator
    )
    x = x.clamp(0, 255).to(torch.uint8)
    mean = torch.full((channels,), 0.5)
    return InMemoryData("mnist", "synthetic", x[:64], y[:64], x[64:], y[64:], mean, mean.clone())


def rows_of(cfg, data, tmp_path: Path, **kwargs):
    """(metrics rows, layer rows, checkpointer) of train(cfg) with a checkpoint every
    cfg.checkpoint_every steps in tmp_path."""
    metrics, layers = [], []

    def on_log(metrics_row, layer_rows):
        metrics.append(metrics_row)
        layers.extend(layer_rows)

    digest = config_hash(cfg)
    start = kwargs["resume"]["step"] - 1 if kwargs.get("resume") else 0
    rows = lambda: {"metrics_rows": len(metrics), "layers_rows": len(layers)}  # noqa: E731
    checkpointer = Checkpointer(tmp_path, digest, cfg.checkpoint_every, rows, start_step=start)
    train(cfg, data, on_log, checkpointer=checkpointer, **kwargs)
    return metrics, layers, checkpointer


def without_elapsed(rows):
    return [[v for i, v in enumerate(row) if i != ELAPSED] for row in rows]


def exact(rows):
    """Rows with NaN (not measured) as None, so that == compares every value exactly."""
    return [[None if isinstance(v, float) and math.isnan(v) else v for v in row] for row in rows]


CASES = {
    # Noisy BN (per-layer pass counters), momentum (optimizer state), BN buffers.
    "mlp-noisy-momentum": dict(
        overrides={"norm.name": "noisy", "optim.name": "momentum", "optim.momentum": 0.9},
        data=lambda bundled: bundled,
    ),
    # A CNN with augmentation (its own generator) and Adam; batch renorm (a step buffer).
    "cnn-renorm-adam-augment": dict(
        overrides={"model.name": "cnn", "norm.name": "renorm", "optim.name": "adam",
                   "optim.lr": 0.01, "norm.renorm_schedule_steps": None,
                   "norm.renorm_warmup_steps": 5, "norm.renorm_r_max_at": 10,
                   "norm.renorm_d_max_at": 10, "norm.momentum": 0.5, "width": 4,
                   "depth": 2, "batch_size": 8, "probe_size": 16},
        data=lambda bundled: synthetic_images(),
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_resumed_training_writes_the_rows_of_an_uninterrupted_run(case, tmp_path, bundled_data):
    spec = CASES[case]
    cfg = make_config(steps=30, log_every=3, checkpoint_every=12, **spec["overrides"])
    validate(cfg)
    data = spec["data"](bundled_data)
    if "cnn" in case:
        from bnexp.run.augment import random_crop_flip

        augment = {"augment": random_crop_flip}
    else:
        augment = {}
    metrics, layers, checkpointer = rows_of(cfg, data, tmp_path, **augment)
    assert len(checkpointer.costs_ms) == 2  # after steps 12 and 24
    state = load_checkpoint(tmp_path, config_hash(cfg))
    assert state["step"] == 25 and state["metrics_rows"] == 9  # rows 0, 3, ..., 24

    resumed_metrics, resumed_layers, _ = rows_of(cfg, data, tmp_path, resume=state, **augment)
    assert exact(without_elapsed(resumed_metrics)) == exact(without_elapsed(metrics[9:]))
    assert exact(resumed_layers) == exact(layers[state["layers_rows"] :])
    assert resumed_metrics[0][ELAPSED] >= state["elapsed_s"]  # elapsed_s goes on


def test_a_checkpoint_of_another_configuration_is_not_resumed(tmp_path, bundled_data):
    cfg = make_config(steps=12, log_every=3, checkpoint_every=6)
    rows_of(cfg, bundled_data, tmp_path)
    assert load_checkpoint(tmp_path, config_hash(cfg)) is not None
    assert load_checkpoint(tmp_path, config_hash(make_config(steps=12, seed=1))) is None
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"torn")
    assert load_checkpoint(tmp_path, config_hash(cfg)) is None


# --------------------------------------------------------------------------------------------
# SIGKILL of the real CLI, then the same command again


def kill_after_a_checkpoint(args: list[str], run_dir: Path, cwd: Path) -> int:
    """Starts `bnexp ARGS`, SIGKILLs it once a checkpoint exists and metrics.csv holds rows
    after it (so the resume must cut them); returns the checkpoint's step."""
    process = subprocess.Popen(
        [sys.executable, "-m", "bnexp", *args], cwd=cwd,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline, step = time.time() + 180, None
    try:
        while time.time() < deadline and process.poll() is None:
            if (run_dir / CHECKPOINT_FILE).exists():
                state = torch.load(run_dir / CHECKPOINT_FILE, weights_only=True)
                rows = len(read_csv(run_dir / "metrics.csv"))
                if rows >= state["metrics_rows"] + 2:
                    step = state["step"]
                    break
            time.sleep(0.02)
        assert process.poll() is None, "the run ended before it could be killed"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    assert step is not None
    return step


def metric_rows(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "elapsed_s"} for row in read_csv(run_dir / "metrics.csv")]  # fmt: skip


def check_kill_and_resume(common: list[str], every: int, tmp_path: Path) -> None:
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    done = run_cli(["run", *common, f"hydra.run.dir={reference}"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr

    args = ["run", *common, f"checkpoint_every={every}", f"hydra.run.dir={killed}"]
    step = kill_after_a_checkpoint(args, killed, tmp_path)
    meta, _ = read_meta(killed)
    assert run_status(meta) == "stale" and 0 < step

    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"resuming from step {step}" in again.stdout + again.stderr
    meta = json.loads((killed / "meta.json").read_text())
    assert meta["status"] == "completed" and meta["resumed_from_step"] == step
    assert meta["resumes"] == 1
    assert not (killed / CHECKPOINT_FILE).exists()  # a finished run keeps none
    assert (killed / "layers.csv").read_bytes() == (reference / "layers.csv").read_bytes()
    assert metric_rows(killed) == metric_rows(reference)


@pytest.mark.slow
def test_mlp_killed_with_sigkill_resumes_to_the_csvs_of_an_uninterrupted_run(tmp_path):
    common = ["norm=noisy", "optim=momentum", "depth=3", "width=32", "steps=6000",
              "log_every=20", "plots=false", "threads=1", "data.source=bundled"]  # fmt: skip
    check_kill_and_resume(common, every=400, tmp_path=tmp_path)


@pytest.mark.slow
def test_cnn_killed_with_sigkill_resumes_to_the_csvs_of_an_uninterrupted_run(tmp_path):
    from synthetic_data import write_mnist

    write_mnist(tmp_path / "data", train=256, test=64)
    common = ["model=cnn", "data=mnist", "data.source=torchvision",
              f"data.root={tmp_path / 'data'}", "data.augment=true", "width=8", "depth=2",
              "batch_size=16", "steps=400", "log_every=5", "probe_size=16", "plots=false",
              "threads=1"]  # fmt: skip
    check_kill_and_resume(common, every=20, tmp_path=tmp_path)


@pytest.mark.slow
def test_a_killed_sweep_skips_its_finished_job_and_resumes_the_half_done_one(tmp_path):
    common = ["norm=batch", "depth=2", "width=32", "steps=4000", "log_every=20",
              "plots=false", "threads=1", "data.source=bundled"]  # fmt: skip
    sweep = tmp_path / "sweep"
    args = ["run", "-m", f"hydra.sweep.dir={sweep}", "seed=0,1", "checkpoint_every=400", *common]
    process = subprocess.Popen(
        [sys.executable, "-m", "bnexp", *args], cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def job_dir(seed: int) -> Path | None:
        for meta in sweep.glob("*/meta.json"):
            if json.loads(meta.read_text() or "{}").get("config", {}).get("seed") == seed:
                return meta.parent
        return None

    deadline = time.time() + 180
    try:
        while time.time() < deadline and process.poll() is None:
            second = job_dir(1)
            if second is not None and (second / CHECKPOINT_FILE).exists():
                break
            time.sleep(0.02)
        assert process.poll() is None, "the sweep ended before it could be killed"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    first, second = job_dir(0), job_dir(1)
    assert json.loads((first / "meta.json").read_text())["status"] == "completed"
    stamp = (first / "layers.csv").stat().st_mtime_ns

    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    output = again.stdout + again.stderr
    assert output.count("skipped") == 1 and output.count("resuming from step") == 1
    assert (first / "layers.csv").stat().st_mtime_ns == stamp  # not retrained
    meta = json.loads((second / "meta.json").read_text())
    assert meta["status"] == "completed" and meta["resumed_from_step"] > 0

    reference = tmp_path / "reference"
    done = run_cli(["run", "seed=1", *common, f"hydra.run.dir={reference}"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (second / "layers.csv").read_bytes() == (reference / "layers.csv").read_bytes()
    assert metric_rows(second) == metric_rows(reference)


@pytest.mark.slow
def test_submitit_local_requeues_a_preempted_job_which_resumes_from_its_checkpoint(tmp_path):
    """SIGUSR2 is submitit's preemption signal: the launcher's checkpoint() requeues the same
    job (same arguments, same job directory), and the requeued process resumes the run."""
    common = ["norm=batch", "depth=2", "width=32", "steps=4000", "log_every=20",
              "plots=false", "threads=1", "data.source=bundled"]  # fmt: skip
    sweep = tmp_path / "sweep"
    args = ["run", "-m", "hydra/launcher=submitit_local", f"hydra.sweep.dir={sweep}",
            "seed=1", "checkpoint_every=400", *common]  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "bnexp", *args], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline, job = time.time() + 180, None
    while time.time() < deadline and process.poll() is None:
        metas = list(sweep.glob("*/meta.json"))
        if metas and (metas[0].parent / CHECKPOINT_FILE).exists():
            job = metas[0].parent
            break
        time.sleep(0.02)
    assert job is not None, "no checkpoint before the sweep ended"
    pid = json.loads((job / "meta.json").read_text())["pid"]
    os.kill(pid, signal.SIGUSR2)  # the job's own process, as SLURM signals it
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    meta = json.loads((job / "meta.json").read_text())
    assert meta["status"] == "completed" and meta["resumed_from_step"] > 0
    assert meta["pid"] != pid

    reference = tmp_path / "reference"
    done = run_cli(["run", "seed=1", *common, f"hydra.run.dir={reference}"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (job / "layers.csv").read_bytes() == (reference / "layers.csv").read_bytes()
    assert metric_rows(job) == metric_rows(reference)
