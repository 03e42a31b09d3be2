"""`bnexp run`: the Hydra application. Checks the command line, lets Hydra compose the config
(one run, or a sweep through a launcher), and runs each job with bnexp.run.runner.execute.

Hydra's launchers (joblib, submitit) run each sweep job in another process: it unpickles
`hydra_run`, which imports this module, and resolves the job's directory
(configs/config.yaml: ${bnexp_slug:...}) before calling it. Importing this module is all such
a process does first, so the registration below must happen at import here; every other user
of the configs calls bnexp.run.config.register_configs() itself.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from bnexp.errors import UserError
from bnexp.run.config import register_configs
from bnexp.run.overrides import check_overrides, split_command_line
from bnexp.run.runner import default_threads, execute
from bnexp.run.sweep import LAST_SWEEP, LaunchError

log = logging.getLogger("bnexp")

register_configs()  # for sweep-job processes (see above); idempotent


def job_threads(cfg: DictConfig, multirun: bool) -> int:
    """Torch threads for this job, so that parallel jobs x threads <= cores.

    An MLP gets one thread: its matrices are too small to gain from a second (measured here:
    1,126 steps/s on 1 thread against 1,292 on 2 when the machine is idle, and 97 on 2 when
    another process wants a core, since every small kernel then waits on a descheduled thread).

    joblib runs n_jobs at once on this machine; submitit_local starts every job at once (one
    thread each, unless hydra.launcher.cpus_per_task says otherwise); on SLURM the job's CPU
    affinity already is its allocation.
    """
    if getattr(cfg.model.name, "value", cfg.model.name) == "mlp":
        return 1
    if not multirun:
        return default_threads(1)
    launcher = HydraConfig.get().launcher
    target = str(launcher.get("_target_", "")).lower()
    if "joblib" in target:
        n_jobs = int(launcher.get("n_jobs", -1) or -1)
        cores = default_threads(1)
        return default_threads(cores + 1 + n_jobs if n_jobs < 0 else n_jobs)
    if "submitit" in target:
        cpus = launcher.get("cpus_per_task")
        if cpus:
            return int(cpus)
        return 1 if "local" in target else default_threads(1)
    return default_threads(1)


@hydra.main(version_base="1.3", config_path="pkg://bnexp.configs", config_name="config")
def hydra_run(cfg: DictConfig) -> str | None:
    hydra_cfg = HydraConfig.get()
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    run_dir = Path(hydra_cfg.runtime.output_dir)
    threads = cfg.threads or job_threads(cfg, multirun)
    try:
        return execute(cfg, run_dir, threads=threads, show_progress=not multirun)
    except UserError as error:
        if not multirun:
            print(f"bnexp: error: {error}", file=sys.stderr)
            sys.exit(2)
        log.error("job %s failed: %s", run_dir, error)
        return "failed"
    except KeyboardInterrupt:
        print(f"\nbnexp: interrupted; what was logged is in {run_dir}", file=sys.stderr)
        sys.exit(130)
    except Exception as error:  # a bug, not a user error: keep the sweep going, keep the trace
        if not multirun:
            raise
        log.exception(
            "job %s failed: %s: %s (traceback in its meta.json)",
            run_dir,
            type(error).__name__,
            error,
        )
        return "failed"


def run_command(args: list[str]) -> int:
    """`bnexp run ARGS`: checks the overrides, then hands the command line to Hydra. Returns the
    exit status (1 when a sweep job failed, was interrupted or is stale)."""
    register_configs()  # the schema and resolver configs/ needs, before anything composes
    register_configs()
    flags, overrides = split_command_line(args)
    if not {"--help", "-h", "--hydra-help"} & set(flags):
        multirun = {"-m", "--multirun"} & set(flags) or "hydra.mode=MULTIRUN" in overrides
        check_overrides(overrides, multirun=bool(multirun))
    sys.argv = ["bnexp", *args]
    LAST_SWEEP.clear()
    try:
        hydra_run()
    except LaunchError as error:
        raise UserError(str(error)) from None
    statuses = LAST_SWEEP.get("statuses")
    if statuses and any(statuses.get(s, 0) for s in ("failed", "interrupted", "stale")):
        return 1
    return 0
