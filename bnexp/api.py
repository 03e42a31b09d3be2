"""bnexp from Python: runs and sweeps as pandas tables, and one run started from a notebook.

    bnexp.load_run(path) -> Run           one run directory: .meta, .config, .metrics, .layers,
                                          .status ("stale" for a killed run)
    bnexp.load_runs(*paths) -> RunTables  many runs and sweeps: .runs, .layers, .metrics with
                                          the varying config keys as columns (the tables
                                          `bnexp figures` writes as runs.csv and layers_all.csv)
    bnexp.run([...], out=..., **kw) -> Run  one configuration, checked and run as `bnexp run`
                                          runs it (same checks, same messages, same files)
    bnexp.steps_to_reach(curve, target)   the first step at which a curve reaches a target

    >>> import bnexp
    >>> r = bnexp.run(["norm=none", "depth=10"], steps=500)
    >>> r.layers.query("layer == 1")[["step", "grad_w_mean_abs"]]
    >>> t = bnexp.load_runs("results/sweeps/2026-11-23/14-02-11")
    >>> t.layers.groupby(["norm", "layer"]).grad_w_mean_abs.median()

The CSV files stay the source of truth: these functions read them (bnexp.rundir holds the
file and column names) and never write anything but a new run. Reading never imports torch or
Hydra; `run` imports both when it is called.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from bnexp.errors import UserError
from bnexp.rundir import Run, find_runs, load_run

if TYPE_CHECKING:
    from bnexp.reproduce.claims import Tables

__all__ = ["Run", "RunTables", "UserError", "load_run", "load_runs", "run", "steps_to_reach"]


# --------------------------------------------------------------------------------------------
# Many runs
# --------------------------------------------------------------------------------------------


@dataclass
class RunTables:
    """The runs and sweeps given to `load_runs`, as three tables.

    runs: one row per run: `run_dir`, the varying config keys, `seed`, the results of runs.csv
      (`status`, `final_test_acc`, `best_test_acc`, `steps_to_target`, ...), then every other
      config key (flat, dotted: `norm.momentum`, `optim.lr`), constant across these runs.
    layers: every layers.csv row, led by its run's `run_dir`, varying keys and `seed`
      (layers_all.csv of `bnexp figures`).
    metrics: every metrics.csv row, labelled the same way.
    keys: the varying config keys, most telling first (seeds are never among them).
    warnings: what was odd (failed, stale or still running runs, damaged files).
    Failed runs (or runs with nothing logged) are rows of `runs` only.
    """

    runs: pd.DataFrame
    layers: pd.DataFrame
    metrics: pd.DataFrame
    keys: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def claims_tables(self) -> Tables:
        """These tables as the claim measures of `bnexp reproduce` read them (a
        `Tables` with `run_id` = `run_dir`), e.g.

            from bnexp.reproduce.claims import steps_to_reach_ratio
            steps_to_reach_ratio(t.claims_tables(), fast={"norm": "batch"}, slow={"norm": "none"})
        """
        from bnexp.reproduce.claims import Tables

        frames = [
            frame.assign(run_id=frame["run_dir"].astype(str))
            for frame in (self.runs, self.metrics, self.layers)
        ]
        return Tables(*frames)


def load_runs(*paths: str | Path, target: float = 0.9) -> RunTables:
    """Read every run at or below `paths` (runs, sweeps, folders of sweeps) into RunTables.

    `target`: the test accuracy that runs.csv's `steps_to_target` counts the steps to.
    A path that does not exist or holds no run is a UserError; a damaged run is a warning.
    """
    from bnexp.analysis.sweep_tables import labelled, runs_frame
    from bnexp.analysis.tables import collect
    from bnexp.analysis.variants import varying_keys

    if not paths:
        raise UserError("load_runs needs at least one path (a run, a sweep or a folder of them).")
    run_dirs: list[Path] = []
    for path in map(Path, paths):
        found = find_runs([path])
        if not found:
            reason = "no such directory" if not path.exists() else "no runs found under"
            raise UserError(
                f"{reason} {path} (a run directory holds meta.json or .hydra/config.yaml)."
            )
        run_dirs += found
    run_dirs = find_runs(run_dirs)  # a run reached through two paths counts once
    runs_df, layers_df, metrics_df, warnings = collect(run_dirs, target=target)
    keys = varying_keys(runs_df)
    table = runs_frame(runs_df, keys)
    rest = [c for c in runs_df.columns if c not in table.columns]
    runs = pd.concat([table, runs_df[rest]], axis=1)
    return RunTables(
        runs=runs,
        layers=labelled(layers_df, runs_df, keys),
        metrics=labelled(metrics_df, runs_df, keys),
        keys=list(keys),
        warnings=warnings,
    )


# --------------------------------------------------------------------------------------------
# Measures
# --------------------------------------------------------------------------------------------


def steps_to_reach(
    curve: pd.Series | pd.DataFrame, target: float, column: str = "test_acc"
) -> float | None:
    """The first step at which `curve` reaches `target` (>=), or None if it never does.

    curve: a Series of values indexed by step (e.g. a seed mean:
    `t.metrics.groupby("step").test_acc.mean()`), or the metrics rows of ONE run (a Run's
    `.metrics`), whose `column` is read at the steps that have it. The same rule as the
    claims of `bnexp reproduce` (bnexp.reproduce.claims.first_step_reaching).
    """
    if isinstance(curve, pd.DataFrame):
        if "run_dir" in curve and curve["run_dir"].nunique() > 1:
            raise ValueError(
                "steps_to_reach reads one run's metrics; these rows hold "
                f"{curve['run_dir'].nunique()} runs: select one run_dir, or pass a seed mean "
                f"such as rows.groupby('step').{column}.mean()"
            )
        curve = curve.dropna(subset=[column]).groupby("step")[column].mean()
    from bnexp.reproduce.claims import first_step_reaching

    return first_step_reaching(curve.dropna().sort_index(), target)


# --------------------------------------------------------------------------------------------
# One run
# --------------------------------------------------------------------------------------------


def run(
    overrides: Sequence[str] | str | None = None,
    /,
    *,
    out: str | Path | None = None,
    **overrides_kw: Any,
) -> Run:
    """Run one configuration, as `bnexp run OVERRIDES` does, and return the loaded run.

    overrides: `bnexp run`'s KEY=VALUE words, e.g. ["norm=batch", "depth=10", "optim.lr=0.5"];
    overrides_kw: the same as keywords, `norm="batch", depth=10`; a dotted key as
    `optim__lr=0.5` or `**{"optim.lr": 0.5}`. Keywords come after the list.
    out: the run directory; default `results/runs/<date>/<time>_<overrides>/` below the
    current directory, as the command line. A directory that already holds a completed run of
    this config is not run again (its run is returned), as on the command line.

    The config is composed by Hydra from bnexp's configs and checked by the same code as the
    command line: a mistake raises bnexp.UserError with the message `bnexp run` prints. A
    diverging run is a result: it returns normally with `.status == "diverged"`. Sweeps (`-m`,
    `a,b`) are for the command line: call `run` once per configuration.
    """
    words = _override_words(overrides, overrides_kw)
    if out is not None:
        if any(_key_of(w) == "hydra.run.dir" for w in words):
            raise UserError("give the run directory once: out=... or hydra.run.dir=..., not both.")
        words.append(f"hydra.run.dir={_quoted(str(Path(out).expanduser()))}")
    return load_run(_run_with_hydra(words))


def _override_words(
    overrides: Sequence[str] | str | None, keywords: Mapping[str, Any]
) -> list[str]:
    if overrides is None:
        words: list[str] = []
    elif isinstance(overrides, str):
        words = [overrides]
    else:
        words = list(overrides)
    for word in words:
        if not isinstance(word, str):
            raise TypeError(f"overrides are KEY=VALUE strings, got {word!r}")
    words += [f"{key.replace('__', '.')}={_value_text(value)}" for key, value in keywords.items()]
    flags = [w for w in words if w.startswith("-")]
    if flags:
        raise UserError(
            f"bnexp.run takes KEY=VALUE overrides, not command-line flags ({' '.join(flags)}). "
            "For a sweep, call bnexp.run once per configuration, or use `bnexp run -m ...`."
        )
    return words


def _value_text(value: Any) -> str:
    """A keyword's value as it would be typed on the command line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list | tuple | set | dict):
        raise UserError(
            f"bnexp.run runs one configuration: {value!r} is not one value. For a sweep, call "
            "bnexp.run once per value, or use `bnexp run -m KEY=a,b`."
        )
    return str(value)


def _key_of(word: str) -> str:
    return word.split("=", 1)[0].lstrip("+~")


def _quoted(text: str) -> str:
    """A value quoted for Hydra's override grammar (paths with spaces, commas, '=')."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _run_with_hydra(words: list[str]) -> Path:
    """Compose and run one job with Hydra's own run mode (output directory, .hydra/ files and
    callbacks as for `bnexp run`), without its command line or logging setup; the run dir."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from bnexp.run.command import job_threads
    from bnexp.run.config import register_configs
    from bnexp.run.overrides import check_overrides
    from bnexp.run.runner import execute

    if GlobalHydra.instance().is_initialized():
        raise UserError(
            "bnexp.run cannot start inside another Hydra application (Hydra is initialized): "
            "run it from a plain Python process, or call `bnexp run` in a subprocess."
        )
    try:
        parsed = OverridesParser.create().parse_overrides(words)
    except HydraException as error:
        raise UserError(f"cannot read the overrides: {str(error).splitlines()[0]}") from None
    sweeps = [o.input_line for o in parsed if o.is_sweep_override()]
    if sweeps:
        raise UserError(
            f"bnexp.run runs one configuration; {' '.join(sweeps)} is a sweep. Call bnexp.run "
            "once per value, or use `bnexp run -m ...` on the command line."
        )
    check_overrides(words)  # the command line's checks and messages, value by value

    outcome: dict[str, Any] = {}

    def task(cfg: Any) -> str:
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        outcome["run_dir"] = run_dir
        try:
            return execute(cfg, run_dir, threads=cfg.threads or job_threads(cfg, False))
        except Exception as error:  # raised below, after Hydra has closed the job
            outcome["error"] = error
            return "failed"

    register_configs()
    try:
        with initialize_config_module(config_module="bnexp.configs", version_base="1.3"):
            hydra = GlobalHydra.instance().hydra
            assert hydra is not None
            hydra.run("config", task, words, with_log_configuration=False)
    except (HydraException, OmegaConfBaseException) as error:
        # A combination of values that each compose alone (check_overrides) but not together.
        raise UserError(f"cannot compose the config: {str(error).splitlines()[0]}") from None
    if "error" in outcome:
        raise outcome["error"]
    return outcome["run_dir"]
