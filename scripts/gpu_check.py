"""Does bnexp compute the same numbers on a GPU as on the CPU, and how much faster? (`make gpu-check`)

Runs the headline run (norm=batch act=sigmoid depth=10, the MLP at batch 60) and the default CNN
(model=cnn, batch 128) for --steps steps on each of --devices (default: cuda, then cpu), with the
same seed, on the bundled MNIST subset, through bnexp's Python API (bnexp.run: Hydra's compose
API, not its command line). Then, for each model, compares the two runs' layers.csv and
metrics.csv column by column and prints each device's training steps/s (meta.json's
steps_per_second, after a short warm-up run per device so that CUDA's start and cuDNN's
first-call setup are not timed). It also runs each model twice on the first device with
deterministic=true and checks that the two runs wrote the same CSV text (elapsed_s aside). The
last line on stdout is ONE JSON object with everything;
the human-readable lines before it go to stderr. Exit status 0 when every compared cell agrees
and the deterministic reruns are identical, 1 otherwise. Where torch sees no CUDA device and cuda is asked for, it prints one
"no CUDA device" line and exits 0.

Tolerance. Both devices train on the same batches from the same initial weights (bnexp draws
batch order, crops and probe on the CPU) in float32 (TF32 is off on CUDA), so the runs differ
only by float32 sums done in another order (a GPU splits reductions differently), and that
difference compounds over training steps. A cell passes when |a - b| <= TOLERANCE x scale, the
scale being the largest |a| of its column over the compared rows (for the location statistics
of BN's output, which sit near 0, that of pre_std: SCALE_WITH); empty cells must be empty on
both sides. How far float32 noise carries, measured on the CPU by giving every weight one ulp
of random sign after every step (more than a reordered sum moves it) against the same run
without: the MLP's columns stay within 2e-5 of their scale over 300 steps; the CNN's within
1.6e-4 over 30 steps, 7.6e-4 over 45, 1.4e-3 over 60, 3.3e-3 over 90, and reach 1e-2 by step
150 and O(1) by 300 (its trajectory is chaotic). So the CNN is compared on its first
COMPARE_STEPS["cnn"] = 45 steps (the whole run is still timed), and TOLERANCE = 1e-2 leaves a
margin of 13x (CNN) to 500x (MLP), while a device bug (a statistic read from the wrong tensor,
another batch, a lost update) moves a column by O(1) from step 0. Noisy norms are not checked:
a GPU draws their noise from its own generator (other numbers, the same distribution).

On a machine where bnexp's dependencies are not installed (the lent GPU image has torch,
pandas and matplotlib but not hydra-core, omegaconf, antlr4-python3-runtime or mlxtend), carry
their wheels and install bnexp itself without dependencies, e.g. with PYTHONPATH=/tmp/site:
    python3 -m pip install --no-index --no-deps --target /tmp/site .whl/*.whl
    python3 -m pip install --no-index --no-deps --no-build-isolation --target /tmp/site .

Usage:
    python scripts/gpu_check.py                      # cuda vs cpu, 300 steps each
    python scripts/gpu_check.py --devices cpu,cpu    # the same path on a CPU only (tests)
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

TOLERANCE = 1e-2  # of the column's largest |value| over the compared rows (see the docstring)
STEPS = 300
# The runs: bnexp overrides beyond seed, steps, device (the headline and CNN runs).
RUNS = {
    "mlp": ["norm=batch", "act=sigmoid", "depth=10", "batch_size=60"],
    "cnn": ["model=cnn", "batch_size=128"],
}
# Rows compared: steps <= this (None: every row). The CNN drifts chaotically (docstring).
COMPARE_STEPS = {"mlp": None, "cnn": 45}
COMMON = ["seed=0", "data.source=bundled", "data.download=false", "plots=false"]
WARMUP_STEPS = 10
# Columns whose values sit near 0 in a normalised network (the mean and median of BN's output,
# ~1e-4, are what float32 cancellation leaves): their bound uses the larger of their own scale
# and this partner column's (the spread of the same values), not their own alone.
SCALE_WITH = {
    **{c: "pre_std" for c in ("pre_mean", "pre_p15", "pre_p50", "pre_p85")},
    **{c: "pre_std" for c in ("unit_p15", "unit_p50", "unit_p85")},
}
# metrics.csv columns compared (elapsed_s is time; lr is a constant; landscape_* are off).
METRIC_COLUMNS = ("train_loss", "train_acc", "test_loss", "test_acc")
NO_CUDA = "gpu_check: no CUDA device here (torch {version}: torch.cuda.is_available() is False): nothing to check."


def compare_frames(
    a, b, columns, tolerance: float = TOLERANCE, max_step: int | None = None
) -> dict:
    """Compares two runs' tables (pandas, rows in the same order) column by column.

    A cell agrees when |a - b| <= tolerance x scale, scale = the largest finite |a| of its
    column (and of its SCALE_WITH partner, when the table has it) over the compared rows
    (rows with step <= max_step; None: all); an empty cell (NaN)
    must be empty on both sides and an infinite one equal. Returns {"ok", "rows", "failed"
    ({column: cells that disagree}), "max_rel" ({column: max |a - b| / scale}), "worst" (the cell
    furthest outside or nearest its bound: column, step, layer, a, b, ratio = |a - b| / bound)}."""
    import numpy as np

    if list(a["step"]) != list(b["step"]):
        return {"ok": False, "rows": [len(a), len(b)], "error": "the runs logged different rows"}
    keep = np.ones(len(a), dtype=bool) if max_step is None else (a["step"] <= max_step).to_numpy()
    failed, max_rel, worst, worst_ratio = {}, {}, None, -1.0
    for column in columns:
        x = a[column].to_numpy(dtype=float)[keep]
        y = b[column].to_numpy(dtype=float)[keep]
        finite = np.isfinite(x) & np.isfinite(y)
        scale = float(np.abs(x[finite]).max()) if finite.any() else 0.0
        partner = SCALE_WITH.get(column)
        if partner in a.columns:
            spread = np.abs(a[partner].to_numpy(dtype=float)[keep])
            spread = spread[np.isfinite(spread)]
            scale = max(scale, float(spread.max())) if spread.size else scale
        with np.errstate(divide="ignore", invalid="ignore"):  # inf - inf, 0 / 0: masked
            diff = np.where(finite, np.abs(x - y), 0.0)
            ratio = np.where(diff > 0, diff / (tolerance * scale), 0.0)  # bound 0: inf
        # Not both finite: agree only when both are the same non-number (empty, inf, -inf).
        same_special = (np.isnan(x) & np.isnan(y)) | (np.isinf(x) & (x == y))
        ratio[~finite & ~same_special] = math.inf
        bad = ratio > 1
        max_rel[column] = float(diff.max() / scale) if scale > 0 else 0.0
        if bad.any():
            failed[column] = int(bad.sum())
        if len(ratio) and ratio.max() > worst_ratio:
            i = int(ratio.argmax())
            worst_ratio = float(ratio[i])
            row = a[keep].iloc[i]
            worst = {
                "column": column, "step": int(row["step"]),
                "layer": int(row["layer"]) if "layer" in a.columns else None,
                "a": _number(x[i]), "b": _number(y[i]), "ratio": _number(worst_ratio),
            }  # fmt: skip
    return {"ok": not failed, "rows": int(keep.sum()), "failed": failed, "max_rel": max_rel,
            "worst": worst}  # fmt: skip


def _number(value: float) -> float | str | None:
    """A cell for JSON: NaN as null, infinities as text."""
    value = float(value)
    if math.isnan(value):
        return None
    return value if math.isfinite(value) else str(value)


def run_once(overrides: list[str], device: str, steps: int, out: Path):
    import bnexp

    return bnexp.run([*COMMON, *overrides, f"device={device}", f"steps={steps}"], out=out)


def csv_cells(run_dir: Path, name: str) -> list[list[str]]:
    """A CSV file's cells as written, without the elapsed_s column (wall time)."""
    with open(run_dir / name, newline="") as f:
        rows = list(csv.reader(f))
    drop = rows[0].index("elapsed_s") if "elapsed_s" in rows[0] else None
    return [[cell for i, cell in enumerate(row) if i != drop] for row in rows]


def rerun_identical(overrides: list[str], device: str, steps: int, work: Path) -> dict:
    """Two runs with deterministic=true on `device`: are their CSVs the same text?"""
    dirs = [work / f"deterministic-{i}" for i in (1, 2)]
    first, second = (run_once([*overrides, "deterministic=true"], device, steps, d) for d in dirs)
    differing = differing_cells(first.path, second.path)
    return {"device": device, "identical": differing == 0, "differing_cells": differing}


def differing_cells(run_a: Path, run_b: Path) -> int:
    """Cells of layers.csv and metrics.csv whose text differs (a missing row: all its cells)."""
    differing = 0
    for name in ("layers.csv", "metrics.csv"):
        a, b = csv_cells(run_a, name), csv_cells(run_b, name)
        longer, shorter = (a, b) if len(a) >= len(b) else (b, a)
        differing += sum(len(row) for row in longer[len(shorter) :])
        differing += sum(x != y for row_a, row_b in zip(a, b) for x, y in zip(row_a, row_b))
    return differing


def check_model(name: str, devices: list[str], steps: int, extra: list[str], work: Path) -> dict:
    from bnexp.rundir import LAYER_MEASURE_COLUMNS, LAYERS_COLUMNS

    statistics = [c for c in LAYERS_COLUMNS[2:] if c not in LAYER_MEASURE_COLUMNS]  # ics: off
    overrides = [*RUNS[name], *extra]
    runs = []
    for index, device in enumerate(devices):
        run_once(overrides, device, WARMUP_STEPS, work / f"{name}-{index}-{device}-warmup")
        started = time.perf_counter()
        runs.append(run_once(overrides, device, steps, work / f"{name}-{index}-{device}"))
        print(f"gpu_check: {name} on {device}: {runs[-1].meta.get('steps_per_second')} steps/s "
              f"({time.perf_counter() - started:.1f} s with data and evaluation)", file=sys.stderr)  # fmt: skip
    first, second = runs
    max_step = COMPARE_STEPS[name]
    layers = compare_frames(first.layers, second.layers, statistics, max_step=max_step)
    metrics = compare_frames(first.metrics, second.metrics, METRIC_COLUMNS, max_step=max_step)
    rerun = rerun_identical(overrides, devices[0], steps, work / name)
    print(f"gpu_check: {name} twice on {devices[0]} with deterministic=true: "
          f"{'identical' if rerun['identical'] else 'DIFFERENT'}", file=sys.stderr)  # fmt: skip
    rates = [run.meta.get("steps_per_second") for run in runs]
    final_acc = [float(run.metrics["test_acc"].dropna().iloc[-1]) for run in runs]
    return {
        "overrides": overrides,
        "steps": steps,
        "compared_up_to_step": steps if max_step is None else min(max_step, steps),
        "ok": layers["ok"] and metrics["ok"] and rerun["identical"],
        "steps_per_s": rates,  # in --devices order
        "speedup": round(rates[0] / rates[1], 2) if all(rates) else None,  # first / second
        "final_test_acc": final_acc,
        "status": [run.status for run in runs],
        "layers_csv": layers,
        "metrics_csv": metrics,
        "deterministic_rerun": rerun,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--devices", default="cuda,cpu", help="two devices, compared (default: cuda,cpu)"
    )
    parser.add_argument(
        "--steps", type=int, default=STEPS, help=f"steps of each run (default: {STEPS})"
    )
    parser.add_argument("--models", default=",".join(RUNS), help="which runs (default: mlp,cnn)")
    parser.add_argument("--out", type=Path, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("extra", nargs="*", help="more overrides for every run (KEY=VALUE)")
    args = parser.parse_args(argv)  # fmt: skip
    devices = args.devices.split(",")
    if len(devices) != 2:
        parser.error("--devices takes two devices, e.g. cuda,cpu")

    # Before CUDA's first use in this process: cuBLAS reads it once (deterministic=true runs).
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    import torch

    if "cuda" in devices and not torch.cuda.is_available():
        print(NO_CUDA.format(version=torch.__version__))
        return 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bnexp-gpu-check-") as tmp:
        work = args.out or Path(tmp)
        models = {
            name: check_model(name, devices, args.steps, args.extra, work)
            for name in args.models.split(",")
        }
    from bnexp.run.device import device_name

    result = {
        "check": "bnexp gpu_check",
        "ok": all(m["ok"] for m in models.values()),
        "devices": devices,
        "device_names": [device_name(torch.device(d)) for d in devices],
        "torch": torch.__version__,
        "tolerance": {
            "rule": "|a - b| <= tolerance * max|a| of the column over the compared rows",
            "tolerance": TOLERANCE,
            "why": "float32 reductions in another order, compounded over training steps",
        },
        "models": models,
        "seconds": round(time.perf_counter() - started, 1),
    }
    for name, model in models.items():
        worst = model["layers_csv"].get("worst") or {}
        print(f"gpu_check: {name}: {'agree' if model['ok'] else 'DISAGREE'} within {TOLERANCE:g} "
              f"up to step {model['compared_up_to_step']}; worst layers.csv cell {worst}; "
              f"steps/s {model['steps_per_s']}", file=sys.stderr)  # fmt: skip
    print(json.dumps(result, sort_keys=False))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
