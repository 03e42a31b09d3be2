"""Hydra callback: checks that a run or sweep can start (its output directory can be made, the
launcher's settings mean something) before any job does, and ends a multirun with a one-line
summary and a meaningful exit status."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from bnexp.errors import UserError
from bnexp.outdir import make_output_dir
from bnexp.rundir import RESUME_HINT, STALE, read_meta, run_status

log = logging.getLogger("bnexp")

# Set by on_multirun_end in the launching process; read by the CLI for its exit status.
LAST_SWEEP: dict[str, Any] = {}


class LaunchError(BaseException):
    """A sweep or run that cannot start (an output directory that cannot be made, a launcher
    setting with no meaning). A BaseException, so that it passes Hydra's `except Exception`
    (which prints a traceback) up to the CLI, which reports it as a user error (exit 2)."""


def check_can_start(key: str, path: str, launcher: DictConfig | None = None) -> None:
    """Raises LaunchError unless the output directory can be made and the launcher makes sense."""
    try:
        make_output_dir(key, path)
        if launcher is not None and "joblib" in str(launcher.get("_target_", "")).lower():
            n_jobs = launcher.get("n_jobs")
            if n_jobs is not None and int(n_jobs) == 0:
                raise UserError(
                    "hydra.launcher.n_jobs=0 is not allowed: choose the number of parallel jobs "
                    "(>= 1), or -1 for one per core."
                )
    except UserError as error:
        raise LaunchError(str(error)) from None


def sweep_statuses(sweep_dir: Path) -> Counter:
    """How many runs under sweep_dir have each status ("stale": running, but process gone)."""
    statuses: Counter = Counter()
    for meta_path in sorted(Path(sweep_dir).rglob("meta.json")):
        meta, _warnings = read_meta(meta_path.parent)
        statuses[run_status(meta) if meta else "unreadable"] += 1
    return statuses


def summary_line(sweep_dir: Path, statuses: Counter) -> str:
    total = sum(statuses.values())
    parts = [f"{statuses.get(s, 0)} {s}" for s in ("completed", "diverged", "failed")]
    parts += [
        f"{n} {s}"
        for s, n in sorted(statuses.items())
        if s not in ("completed", "diverged", "failed")
    ]
    line = f"bnexp: sweep {sweep_dir}: {total} jobs: " + ", ".join(parts)
    if statuses.get(STALE):
        line += (
            f" (stale: meta.json says running but the process is gone; to finish them, "
            f"{RESUME_HINT})"
        )
    return line


class SweepSummary(Callback):
    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_can_start("hydra.run.dir", str(config.hydra.run.dir))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        check_can_start("hydra.sweep.dir", str(config.hydra.sweep.dir), config.hydra.launcher)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        statuses = sweep_statuses(sweep_dir)
        LAST_SWEEP.clear()
        LAST_SWEEP.update(sweep_dir=sweep_dir, statuses=statuses)
        print(summary_line(sweep_dir, statuses), flush=True)
