"""The Hydra callback that draws a run's own figures when its job ends (plots=true).

configs/config.yaml names it under `hydra.callbacks`, so `bnexp run` (one run, or every job
of a sweep, in whichever process the launcher runs it) draws `<run dir>/plots/` after
training, while bnexp.run never imports the analysis side: the wiring is the config's.
A plotting problem is logged, never fatal: the run's numbers are already safe on disk.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("bnexp")

# What bnexp.run.runner.execute returns for a run that trained (a diverged run is a result):
# those get figures; "skipped" (already completed) and "failed" do not.
TRAINED = ("completed", "diverged")


class DrawRunPlots(Callback):
    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if not config.get("plots", False) or job_return.status != JobStatus.COMPLETED:
            return
        if job_return.return_value not in TRAINED:
            return
        draw_run_plots(Path(config.hydra.runtime.output_dir))


def draw_run_plots(run_dir: Path) -> list[Path]:
    """The run's own figures; a problem is logged as a warning and nothing is drawn."""
    try:
        from bnexp.analysis.run_plots import save_run_plots  # matplotlib: only when drawing

        return save_run_plots(run_dir)
    except Exception as error:  # noqa: BLE001 - the run's numbers are already safe on disk
        log.warning("Could not draw the run's figures: %s: %s", type(error).__name__, error)
        return []
