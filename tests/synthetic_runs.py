"""Synthetic run directories, written exactly as `bnexp run` writes them (docs/design.md §5):
Hydra's `.hydra/config.yaml`, `meta.json`, `metrics.csv` and `layers.csv` with the contract's
columns (bnexp.rundir), including the awkward cases: a diverged run, a failed run, a run whose
last CSV line was cut. No training, no data set: for the tests of reading and drawing runs.

    write_run(run_dir, norm=..., depth=..., seed=..., status=...)   one run directory
    write_sweep(root)                                                a small sweep of them

Use from a test module in tests/: `from synthetic_runs import write_run, write_sweep`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from bnexp.rundir import LAYERS_COLUMNS, METRICS_COLUMNS

CONFIG_TEMPLATE = """\
data: {{name: mnist, source: auto, root: ~/.cache/bnexp/data, binarize: false, augment: false, download: true}}
model: {{name: mlp}}
norm: {{name: {norm}, momentum: 0.1, eps: 1.0e-05, groups: null}}
optim: {{name: sgd, lr: {lr}, momentum: 0.0, weight_decay: 0.0}}
depth: {depth}
width: 100
act: sigmoid
placement: pre
affine: true
init: default
init_std: 0.01
batch_size: {batch_size}
steps: {steps}
log_every: null
eval_every: null
seed: {seed}
track_unit: 0
probe_size: 500
threads: null
plots: true
"""


def synthetic_frames(
    norm: str, depth: int, seed: int, steps: int, stop_at: int | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Curves shaped like the real thing: BN learns faster, and without BN the gradient
    shrinks by orders of magnitude towards the input while pre-activations drift."""
    rng = np.random.default_rng(seed + 100 * depth + (7 if norm == "batch" else 0))
    log_steps = np.arange(0, (stop_at or steps) + 1, max(1, steps // 40))
    eval_every = max(1, steps // 10)
    rate = 3.0 if norm == "batch" else 1.0 / depth
    progress = 1 - np.exp(-rate * 4 * log_steps / steps)
    test_acc = (
        0.1
        + (0.97 if norm == "batch" else 0.9) * progress * 0.9
        + rng.normal(0, 0.005, len(log_steps))
    )
    train_loss = (
        2.3 * np.exp(-rate * 3 * log_steps / steps) + 0.05 + rng.normal(0, 0.02, len(log_steps))
    )
    metrics = pd.DataFrame(
        {
            "step": log_steps,
            "train_loss": train_loss,
            "train_acc": np.clip(test_acc + rng.normal(0, 0.03, len(log_steps)), 0, 1),
            "test_loss": train_loss * 1.05,
            "test_acc": np.clip(test_acc, 0, 1),
            "lr": 0.1,
            "elapsed_s": log_steps / 1500,
        }
    )
    not_evaluated = metrics["step"] % eval_every != 0
    metrics.loc[not_evaluated, ["test_loss", "test_acc"]] = np.nan
    if stop_at is not None:
        metrics.loc[metrics.index[-1], ["train_loss", "test_loss", "test_acc"]] = np.nan

    rows = []
    for step, frac in zip(log_steps, log_steps / steps, strict=True):
        for layer in range(1, depth + 1):
            decay = 1.0 if norm == "batch" else 10.0 ** (-(depth - layer) * 0.8)
            drift = 0 if norm == "batch" else 3 * frac * (layer / depth)
            spread = 1.0 if norm == "batch" else 1 + 2 * frac
            rows.append(
                {
                    "step": step,
                    "layer": layer,
                    "grad_w_mean_abs": 0.2 * decay * (1 + 0.1 * rng.random()),
                    "grad_w_norm": 5 * decay,
                    "grad_w_ratio": 0.01 * decay,
                    "update_ratio": 0.001 * decay,
                    "grad_act_mean_abs": 0.05 * decay,
                    "pre_mean": drift,
                    "pre_std": spread,
                    "pre_min": drift - 3.5 * spread,
                    "pre_max": drift + 3.5 * spread,
                    "pre_p15": drift - spread,
                    "pre_p50": drift,
                    "pre_p85": drift + spread,
                    "act_mean": 0.5 + 0.1 * drift,
                    "act_std": 0.2,
                    "act_min": 0.03 if norm == "none" else 0.1,
                    "act_max": 0.97 if norm == "none" else 0.9,
                    "act_sat_frac": min(
                        1.0, 0.05 + (0.5 * frac * layer / depth if norm == "none" else 0)
                    ),
                    "unit_p15": drift - 0.8 * spread,
                    "unit_p50": drift + 0.1,
                    "unit_p85": drift + 0.8 * spread,
                    # No norm layer: the norm's own columns are empty cells, never made up.
                    "gamma_mean": 1.0 if norm == "batch" else np.nan,
                    "gamma_std": 0.01 if norm == "batch" else np.nan,
                    "beta_mean": 0.0 if norm == "batch" else np.nan,
                    "beta_std": 0.01 if norm == "batch" else np.nan,
                    "running_mean_mean": 0.0 if norm == "batch" else np.nan,
                    "running_var_mean": 1.0 if norm == "batch" else np.nan,
                }
            )
    # The opt-in measurement columns (rundir.*_MEASURE_COLUMNS) stay empty, as in a run without them.
    layers = pd.DataFrame(rows).reindex(columns=list(LAYERS_COLUMNS))
    return metrics.reindex(columns=list(METRICS_COLUMNS)), layers


def write_run(
    run_dir: Path,
    *,
    norm: str = "batch",
    depth: int = 3,
    seed: int = 0,
    lr: float = 0.1,
    batch_size: int = 60,
    steps: int = 1000,
    status: str = "completed",
    diverged_at: int | None = None,
    truncate_last_line: bool = False,
    data_source: str = "bundled-mnist5k",
) -> Path:
    """One run directory in the layout `bnexp run` writes."""
    (run_dir / ".hydra").mkdir(parents=True)
    config_text = CONFIG_TEMPLATE.format(
        norm=norm, depth=depth, seed=seed, lr=lr, batch_size=batch_size, steps=steps
    )
    (run_dir / ".hydra" / "config.yaml").write_text(config_text)
    meta = {
        "status": status,
        "steps_done": diverged_at or steps,
        "diverged_at_step": diverged_at,
        "data_source": data_source,
        "train_size": 4000,
        "test_size": 1000,
        "config_hash": f"h{seed}{norm}{depth}",
        "wall_seconds": 2.0,
        "steps_per_second": 500.0,
    }
    if status == "failed":
        meta["error"] = "RuntimeError: CUDA out of patience"
        (run_dir / "meta.json").write_text(json.dumps(meta))
        return run_dir
    (run_dir / "meta.json").write_text(json.dumps(meta))
    metrics, layers = synthetic_frames(norm, depth, seed, steps, diverged_at)
    metrics.to_csv(run_dir / "metrics.csv", index=False, na_rep="")
    layers.to_csv(run_dir / "layers.csv", index=False, na_rep="")
    if truncate_last_line:
        for name in ("metrics.csv", "layers.csv"):
            text = (run_dir / name).read_text()
            (run_dir / name).write_text(text[: len(text) - 12])  # cut mid-row, no newline
    return run_dir


def write_sweep(root: Path) -> Path:
    """A sweep directory: norm x depth x 2 seeds; one diverged, one failed, one still running
    with a cut last line."""
    job = 0
    for norm in ("batch", "none"):
        for depth in (3, 5):
            for seed in (0, 1):
                kwargs: dict = {}
                if (norm, depth, seed) == ("none", 5, 1):
                    kwargs = {"status": "diverged", "diverged_at": 400}
                if (norm, depth, seed) == ("batch", 5, 1):
                    kwargs = {"status": "running", "truncate_last_line": True}
                write_run(root / str(job), norm=norm, depth=depth, seed=seed, **kwargs)
                job += 1
    write_run(root / str(job), norm="none", depth=3, seed=2, status="failed")
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return root
