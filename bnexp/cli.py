"""The `bnexp` command: `run` (Hydra), `figures` and `reproduce`. The only module that exits."""

from __future__ import annotations

import hashlib
import logging
import re
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from bnexp import __version__
from bnexp.errors import UserError
from bnexp.run.config import register_schema

log = logging.getLogger("bnexp")

USAGE = f"""\
bnexp {__version__}: reproduce, measure and explain the published findings about Batch Normalization.

usage:
  bnexp run [OVERRIDES...]                 one training run, e.g. bnexp run norm=batch act=sigmoid depth=10
  bnexp run -m [OVERRIDES...]              a Hydra multirun sweep, e.g. bnexp run -m norm=batch,none depth=3,10
  bnexp figures PATH... [--out DIR]        comparison figures from runs and sweeps
  bnexp reproduce NAME [--out DIR] [scale=quick|paper] [OVERRIDES...]
                                           a published finding: runs, figures, verdicts
  bnexp reproduce --list                   the findings bnexp knows

`bnexp run --help` lists every config key and its default; `bnexp run --cfg job` prints the
resolved config. Hydra flags (-m, --cfg, --info, --multirun) go before the overrides.
"""


def slug(override_dirname: str) -> str:
    """A directory-name-safe form of a run's overrides ("base" when there are none).

    Names longer than 120 characters are cut and end with a hash of the whole, so two jobs
    whose overrides differ only at the end never share a directory.
    """
    text = re.sub(r"[^A-Za-z0-9=,._+-]", "_", override_dirname)
    if len(text) > 120:
        digest = hashlib.sha256(override_dirname.encode()).hexdigest()[:10]
        text = f"{text[:108]}_{digest}"
    return text or "base"


OmegaConf.register_new_resolver("bnexp_slug", slug, replace=True)
register_schema()


def job_threads(cfg: DictConfig, multirun: bool) -> int:
    """Torch threads for this job, so that parallel jobs x threads <= cores.

    An MLP gets one thread: its matrices are too small to gain from a second (measured here:
    1,126 steps/s on 1 thread against 1,292 on 2 when the machine is idle, and 97 on 2 when
    another process wants a core, since every small kernel then waits on a descheduled thread).

    joblib runs n_jobs at once on this machine; submitit_local starts every job at once (one
    thread each, unless hydra.launcher.cpus_per_task says otherwise); on SLURM the job's CPU
    affinity already is its allocation.
    """
    from bnexp.run.runner import default_threads

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
    from bnexp.run.runner import execute

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
    from bnexp.run.overrides import check_overrides, split_command_line
    from bnexp.run.sweep import LAST_SWEEP, LaunchError

    flags, overrides = split_command_line(args)
    if not {"--help", "-h", "--hydra-help"} & set(flags):
        check_overrides(overrides)
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    command, rest = argv[0], argv[1:]
    if command == "--version":
        print(f"bnexp {__version__}")
        return 0
    try:
        if command == "run":
            return run_command(rest)
        if command == "figures":
            from bnexp.figures import main as figures_main

            return figures_main(rest)
        if command == "reproduce":
            from bnexp.reproduce import main as reproduce_main

            return reproduce_main(rest)
    except UserError as error:
        print(f"bnexp: error: {error}", file=sys.stderr)
        return 2
    print(
        f"bnexp: error: unknown command {command!r}. Valid commands: run, figures, reproduce "
        "(see `bnexp --help`).",
        file=sys.stderr,
    )
    return 2


def entry() -> None:
    sys.exit(main())
