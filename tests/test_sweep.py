"""A sweep through the real CLI with joblib, a failing job, the re-run that skips finished
work, and `bnexp figures` on the result."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from PIL import Image

from conftest import TINY, run_cli

pytestmark = pytest.mark.slow


def test_sweep_survives_a_failing_job_skips_finished_work_and_feeds_figures(tmp_path):
    sweep = tmp_path / "sweep"
    # norm=batch with batch_size=1 is impossible: that one job must fail, alone.
    args = ["run", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}",
            "norm=batch,none", "batch_size=1,30", *TINY]  # fmt: skip
    first = run_cli(args, cwd=tmp_path)
    assert first.returncode == 1, (
        first.stdout + first.stderr
    )  # a failed job makes the sweep fail...
    assert "4 jobs: 3 completed, 0 diverged, 1 failed" in first.stdout  # ...after all jobs ran
    metas = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/meta.json")}
    assert len(metas) == 4
    (failed,) = [m for m in metas.values() if m["status"] == "failed"]
    assert "batch_size=1" in failed["error"] and failed["config"]["norm"]["name"] == "batch"
    for meta in metas.values():
        assert meta["threads"] == 1  # 2 parallel jobs on 2 cores: one thread each

    stamps = {p.parent.name: p.stat().st_mtime_ns for p in sweep.glob("*/layers.csv")}
    second = run_cli(args, cwd=tmp_path)
    assert second.returncode == 1
    assert (second.stdout + second.stderr).count("skipped") == 3
    for name, stamp in stamps.items():
        assert (sweep / name / "layers.csv").stat().st_mtime_ns == stamp, f"{name} was retrained"

    out = tmp_path / "figures"
    figures = run_cli(["figures", str(sweep), "--out", str(out)], cwd=tmp_path)
    assert figures.returncode == 0, figures.stderr
    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 4 and {"norm", "batch_size", "status"} <= set(runs.columns)
    assert sorted(runs["status"]) == ["completed", "completed", "completed", "failed"]
    layers = pd.read_csv(out / "layers_all.csv")
    assert {"norm", "batch_size", "step", "layer", "grad_w_mean_abs"} <= set(layers.columns)
    pngs = sorted(out.glob("*.png"))
    assert {"test_acc_vs_step.png", "grad_profile.png", "unit_percentiles.png"} <= {
        p.name for p in pngs
    }
    for png in pngs:
        with Image.open(png) as image:
            image.verify()
        assert png.with_suffix(".pdf").stat().st_size > 0
    index = (out / "index.md").read_text()
    assert "failed" in index


def test_figures_on_a_path_without_runs_is_a_clear_error(tmp_path):
    result = run_cli(["figures", str(tmp_path)], cwd=tmp_path)
    assert result.returncode == 2
    assert str(tmp_path) in result.stderr + result.stdout and "Traceback" not in result.stderr


def test_submitit_local_launcher_runs_a_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_cli(
        [
            "run",
            "-m",
            "hydra/launcher=submitit_local",
            f"hydra.sweep.dir={sweep}",
            "norm=batch,none",
            *TINY,
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    statuses = sorted(json.loads(p.read_text())["status"] for p in sweep.glob("*/meta.json"))
    assert statuses == ["completed", "completed"]
