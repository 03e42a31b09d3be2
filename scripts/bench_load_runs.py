"""How long `bnexp.load_runs` takes on a sweep of 100 default-sized runs (issue 15: under 2 s).

    python scripts/bench_load_runs.py [--runs 100] [--repeats 3] [--keep DIR]

The sweep is synthetic but shaped like `bnexp run -m` output: per run a .hydra/config.yaml (the
full resolved config), meta.json (with a 256-index probe), metrics.csv with 101 rows and
layers.csv with 303 rows (a default 5,000-step run of 3 hidden layers logs every 50 steps), in
sweep/<job>/ folders; the varying keys are norm, act, optim.lr and seed. Reading is timed
after one untimed pass (the files in the OS cache, as after writing them); the median of
`--repeats` is printed with the time of the reading alone (bnexp.analysis.tables.collect).
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import bnexp
from bnexp.rundir import LAYER_STAT_COLUMNS, METRICS_COLUMNS, find_runs

CONFIG_YAML = """\
data: {{name: mnist, source: bundled, root: ~/.cache/bnexp/data, binarize: false, augment: false, download: true}}
model: {{name: mlp}}
norm: {{name: {norm}, momentum: 0.1, eps: 1.0e-05, groups: null, noise_shift: 0.5, noise_scale: 1.25, noise_shift_jitter: 0.1, noise_scale_jitter: 0.1}}
optim: {{name: sgd, lr: {lr}, momentum: 0.0, weight_decay: 0.0}}
logger: {{name: none}}
depth: 3
width: 100
act: {act}
placement: pre
affine: true
init: default
init_std: 0.01
batch_size: 60
steps: 5000
log_every: null
eval_every: null
seed: {seed}
track_unit: 0
probe_size: 256
threads: null
plots: true
"""


def write_sweep(root: Path, n_runs: int) -> None:
    # norm x act x lr x seed: 2 x 2 x 5 x 5 = 100 configurations, repeated beyond that
    grid = itertools.cycle(
        itertools.product(
            ("batch", "none"), ("sigmoid", "relu"), (0.01, 0.03, 0.1, 0.3, 1.0), range(5)
        )
    )
    rng = np.random.default_rng(0)
    steps = np.arange(0, 5001, 50)
    for job, (norm, act, lr, seed) in zip(range(n_runs), grid):
        run_dir = root / str(job)
        (run_dir / ".hydra").mkdir(parents=True)
        (run_dir / ".hydra" / "config.yaml").write_text(
            CONFIG_YAML.format(norm=norm, act=act, lr=lr, seed=seed % 5)
        )
        meta = {
            "status": "completed",
            "steps_done": 5000,
            "diverged_at_step": None,
            "config_hash": f"{job:016x}",
            "data_source": "bundled-mnist5k",
            "train_size": 4000,
            "test_size": 1000,
            "threads": 1,
            "wall_seconds": 6.1,
            "steps_per_second": 900.0,
            "probe_indices": list(range(256)),
        }
        (run_dir / "meta.json").write_text(json.dumps(meta, indent=2))
        metrics = pd.DataFrame(
            rng.random((len(steps), len(METRICS_COLUMNS))), columns=list(METRICS_COLUMNS)
        )
        metrics["step"] = steps
        metrics.loc[steps % 250 != 0, ["test_loss", "test_acc"]] = np.nan
        metrics.to_csv(run_dir / "metrics.csv", index=False, float_format="%.6g")
        layers = pd.DataFrame(
            rng.random((len(steps) * 3, len(LAYER_STAT_COLUMNS))), columns=list(LAYER_STAT_COLUMNS)
        )
        layers.insert(0, "layer", np.tile([1, 2, 3], len(steps)))
        layers.insert(0, "step", np.repeat(steps, 3))
        layers.to_csv(run_dir / "layers.csv", index=False, float_format="%.6g")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="write the sweep here and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp) / "sweep"
        write_sweep(root, args.runs)
        from bnexp.analysis.tables import collect

        tables = bnexp.load_runs(root)  # untimed: imports, OS cache
        totals, reading = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            tables = bnexp.load_runs(root)
            totals.append(time.perf_counter() - start)
            start = time.perf_counter()
            collect(find_runs([root]))
            reading.append(time.perf_counter() - start)
    print(
        f"load_runs on {len(tables.runs)} runs ({len(tables.layers):,} layer rows, "
        f"{len(tables.metrics):,} metrics rows; varying {', '.join(tables.keys)}): "
        f"median {statistics.median(totals):.2f} s of {args.repeats} "
        f"(reading the files, collect: {statistics.median(reading):.2f} s)"
    )


if __name__ == "__main__":
    main()
