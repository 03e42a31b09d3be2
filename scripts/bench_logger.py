"""What logger=tensorboard costs: steps/s of a default run with and without it, and the time of
one log step's events (scalars + one histogram per layer) for an MLP's and a CNN's tensors.

    python scripts/bench_logger.py [--rounds 4] [--steps 5000] [--threads 1]

(a) Runs: the default configuration (`bnexp run`: 3x100 sigmoid MLP with BN, batch 60, 5,000
    steps, a log row every 50 steps) on the bundled MNIST subset, logger=none and
    logger=tensorboard interleaved (the order alternates each round), through the runner as
    `bnexp run` calls it. Reported: the training loop's steps/s (meta.json's steps_per_second,
    the wall clock) and the CPU seconds of the whole run (this process, all threads: the
    event writer's thread included), median over rounds, and the median of the per-round
    ratios tensorboard/none. The issue's budget: at most 10% fewer steps/s.
(b) Events alone: the milliseconds one log step's sink calls take (TensorBoardSink.log of one
    metrics row and its layer rows, and .histograms of the captured pre-activations) for the
    MLP's tensors (3 layers of 60x100) and for CNN-sized ones (60x32x28x28, 60x64x14x14,
    60x128x7x7: `model=cnn` on MNIST's 28x28 images, width 32).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from bnexp.run.config import Config, register_configs
from bnexp.run.runner import execute
from bnexp.run.tensorboard import TensorBoardSink
from bnexp.rundir import LAYER_STAT_COLUMNS


def default_config(steps: int, logger: str) -> Config:
    cfg = OmegaConf.structured(Config)
    for key, value in {
        "steps": steps,
        "data.source": "bundled",
        "data.download": False,
        "plots": False,
        "logger.name": logger,
    }.items():
        OmegaConf.update(cfg, key, value, merge=False)
    return OmegaConf.to_object(cfg)


def one_run(root: Path, name: str, steps: int, logger: str, threads: int) -> tuple[float, float]:
    run_dir = root / name
    cpu = time.process_time()
    execute(default_config(steps, logger), run_dir, threads=threads, show_progress=False)
    cpu = time.process_time() - cpu
    meta = json.loads((run_dir / "meta.json").read_text())
    return float(meta["steps_per_second"]), cpu


def bench_runs(rounds: int, steps: int, threads: int) -> None:
    speed: dict[str, list[float]] = {"none": [], "tensorboard": []}
    cpu: dict[str, list[float]] = {"none": [], "tensorboard": []}
    ratios = []
    with tempfile.TemporaryDirectory() as tmp:
        one_run(Path(tmp), "warmup", 200, "tensorboard", threads)  # imports, caches
        for r in range(rounds):
            order = ("none", "tensorboard") if r % 2 == 0 else ("tensorboard", "none")
            got = {}
            for logger in order:
                got[logger] = one_run(Path(tmp), f"{r}-{logger}", steps, logger, threads)
                speed[logger].append(got[logger][0])
                cpu[logger].append(got[logger][1])
            ratios.append(got["tensorboard"][0] / got["none"][0])
            print(
                f"round {r + 1}: none {got['none'][0]:7.1f} steps/s ({got['none'][1]:.2f} CPU s), "
                f"tensorboard {got['tensorboard'][0]:7.1f} steps/s ({got['tensorboard'][1]:.2f} CPU s), "
                f"ratio {ratios[-1]:.3f}"
            )
    print(
        f"(a) default run, {steps} steps, {rounds} interleaved rounds: median steps/s "
        f"none {statistics.median(speed['none']):.1f}, tensorboard "
        f"{statistics.median(speed['tensorboard']):.1f}; median ratio "
        f"{statistics.median(ratios):.3f} ({(1 - statistics.median(ratios)) * 100:+.1f}% slower); "
        f"median CPU s per run none {statistics.median(cpu['none']):.2f}, tensorboard "
        f"{statistics.median(cpu['tensorboard']):.2f}"
    )


def bench_events(shapes: list[tuple[int, ...]], label: str, repeats: int = 50) -> None:
    depth = len(shapes)
    pre = [torch.randn(shape) for shape in shapes]
    metrics_row = [50, 0.5, 0.9, 0.4, 0.91, 0.1, 1.0]
    layer_rows = [[50, layer, *[0.5] * len(LAYER_STAT_COLUMNS)] for layer in range(1, depth + 1)]
    with tempfile.TemporaryDirectory() as tmp:
        sink = TensorBoardSink(tmp, depth)
        sink.log(metrics_row, layer_rows)
        sink.histograms(0, pre)  # warm-up
        start = time.perf_counter()
        for step in range(repeats):
            sink.log([step, *metrics_row[1:]], layer_rows)
        scalars_ms = (time.perf_counter() - start) / repeats * 1e3
        start = time.perf_counter()
        for step in range(repeats):
            sink.histograms(step, pre)
        histograms_ms = (time.perf_counter() - start) / repeats * 1e3
        sink.close()
    print(
        f"(b) {label}: one log step's scalars {scalars_ms:.3f} ms, its {depth} histograms "
        f"{histograms_ms:.3f} ms ({histograms_ms / depth:.3f} ms each)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (bnexp run: 1 for an MLP)"
    )
    parser.add_argument("--skip-runs", action="store_true", help="only (b)")
    args = parser.parse_args()
    register_configs()
    torch.set_num_threads(args.threads)
    bench_events([(60, 100)] * 3, "MLP 3 layers of 60x100")
    bench_events(
        [(60, 32, 28, 28), (60, 64, 14, 14), (60, 128, 7, 7)],
        "CNN-sized 60x32x28x28, 60x64x14x14, 60x128x7x7",
    )
    if not args.skip_runs:
        bench_runs(args.rounds, args.steps, args.threads)


if __name__ == "__main__":
    main()
