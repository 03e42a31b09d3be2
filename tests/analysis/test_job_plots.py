"""plots=true: a run's own figures are drawn when its Hydra job ends (bnexp.analysis.job_plots,
named in configs/config.yaml), for trained runs only, and a plotting problem is never fatal."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from bnexp.analysis.job_plots import DrawRunPlots
from bnexp.analysis.run_plots import RUN_PLOT_NAMES

from conftest import TINY, run_cli
from synthetic_runs import write_run


def job_end(run_dir: Path, *, plots: bool, status: JobStatus, value: object) -> None:
    config = OmegaConf.create({"plots": plots, "hydra": {"runtime": {"output_dir": str(run_dir)}}})
    job = JobReturn()
    job.status = status
    job.return_value = value
    DrawRunPlots().on_job_end(config=config, job_return=job)


def pngs(run_dir: Path) -> set[str]:
    return {p.stem for p in (run_dir / "plots").glob("*.png")}


@pytest.mark.parametrize("outcome", ["completed", "diverged"])
def test_a_trained_run_gets_its_figures(tmp_path, outcome):
    run_dir = write_run(tmp_path / "run")
    job_end(run_dir, plots=True, status=JobStatus.COMPLETED, value=outcome)
    assert pngs(run_dir) == set(RUN_PLOT_NAMES)


@pytest.mark.parametrize(
    ("plots", "status", "value"),
    [
        (False, JobStatus.COMPLETED, "completed"),  # plots=false
        (True, JobStatus.COMPLETED, "skipped"),  # already completed: its figures exist
        (True, JobStatus.COMPLETED, "failed"),  # a failed job of a sweep
        (True, JobStatus.FAILED, RuntimeError("a bug")),  # the task function raised
    ],
)
def test_no_figures_unless_asked_and_trained(tmp_path, plots, status, value):
    run_dir = write_run(tmp_path / "run")
    job_end(run_dir, plots=plots, status=status, value=value)
    assert not (run_dir / "plots").exists()


def test_a_plotting_problem_is_a_warning_not_an_error(tmp_path, caplog, monkeypatch):
    from bnexp.analysis import run_plots

    def broken(_run_dir):
        raise ValueError("no such axis")

    monkeypatch.setattr(run_plots, "save_run_plots", broken)
    with caplog.at_level(logging.WARNING, logger="bnexp"):
        job_end(
            write_run(tmp_path / "run"), plots=True, status=JobStatus.COMPLETED, value="completed"
        )
    assert "Could not draw the run's figures: ValueError: no such axis" in caplog.text


@pytest.mark.slow
def test_bnexp_run_draws_the_figures_of_each_trained_job(tmp_path):
    """Through the real CLI: a sweep of two jobs, one impossible (BN with batches of one)."""
    sweep = tmp_path / "sweep"
    args = ["run", "-m", f"hydra.sweep.dir={sweep}", "norm=batch", "batch_size=1,30", *TINY]
    result = run_cli(args, cwd=tmp_path)
    assert "2 jobs: 1 completed, 0 diverged, 1 failed" in result.stdout, result.stderr
    drawn = {job.name: pngs(job) for job in sweep.iterdir() if (job / "meta.json").is_file()}
    assert sorted(map(len, drawn.values())) == [0, len(RUN_PLOT_NAMES)]
