"""One finding, reproduced: its runs (a sweep, or an in-process measurement), its tables, its
claims judged, its figures drawn, its REPORT.md and claims.csv written.

Runs live under DIR/runs/<experiment>/<scale>[-<overrides hash>]/, shared by findings that
read the same experiment (fig1 and fig1-dist). Findings that need the trained network itself
(running-stats, scale-invariance) run in-process (bnexp.reproduce.procedures) and save their
tables under DIR/NAME/tables/.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import pandas as pd

from bnexp.analysis import style
from bnexp.analysis.tables import collect
from bnexp.analysis.variants import varying_keys
from bnexp.errors import UserError
from bnexp.reproduce.claims import Tables, evaluate, results_frame
from bnexp.reproduce.finding_figures import FIGURE_DPI, FIGURES, FigureContext
from bnexp.reproduce.findings import Finding
from bnexp.reproduce.options import Options
from bnexp.reproduce.overrides import (
    BASE_OVERRIDES,
    compose_config,
    expand_overrides,
    merge_overrides,
)
from bnexp.reproduce.report import FindingResult, data_text, finding_report, relative_to
from bnexp.reproduce.sweeps import (
    SweepRun,
    display_command,
    load_manifest,
    run_sweep,
    sweep_key,
)


def tables_from_runs(run_dirs: list[Path]) -> tuple[Tables, list[str]]:
    runs, layers, metrics, warnings = collect(run_dirs)
    for frame in (runs, layers, metrics):
        if "run_dir" in frame.columns:
            frame["run_id"] = frame["run_dir"].astype(str)
        else:
            frame["run_id"] = pd.Series(dtype=str)
    return Tables(runs, metrics, layers), warnings


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
                run_command = display_command(
                    shown_sweep_args(sweep.command, sweep.directory, self.options)
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
            finding=finding,
            scale=scale,
            claims=claims,
            figures=figures,
            command=self.command_for(finding.name),
            run_command=run_command,
            data_text=data_text(data_sources),
            runs_text=runs_text,
            seconds=elapsed,
            notes=notes,
            out_dir=out_dir,
            overrides=list(self.options.overrides),
        )
        (out_dir / "REPORT.md").write_text(finding_report(result, link_root=out_dir, heading="#"))
        print(
            f"[{finding.name}] {result.tally().text()} ({result.seconds:.0f} s) -> {out_dir / 'REPORT.md'}",
            flush=True,
        )
        return result

    def unavailable(self, finding: Finding) -> str | None:
        for module in finding.requires:
            if importlib.util.find_spec(f"bnexp.run.{module}") is None:
                return f"{module.upper()} not available (bnexp.run.{module} is missing)"
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
        from bnexp.reproduce.procedures import PROCEDURES  # torch: only when a finding needs it

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
            meta = {
                "data": configs[0].data.name.value if configs else None,
                "data_source": result.data_source,
                "train_size": result.train_size,
                "test_size": result.test_size,
                "notes": result.notes,
                "tables": sorted(result.tables),
                "overrides": overrides,
                "seconds": round(time.time() - began, 1),
            }
            meta_path.write_text(json.dumps(meta, indent=2) + "\n")
        extra = {name: pd.read_csv(tables_dir / f"{name}.csv") for name in meta.get("tables", [])}
        tables = Tables.empty()
        tables.extra = extra
        sources = [
            {
                "data": meta.get("data"),
                "data_source": meta.get("data_source"),
                "train_size": meta.get("train_size"),
                "test_size": meta.get("test_size"),
                "data.source": None,
            }
        ]
        notes = list(meta.get("notes", []))
        return tables, sources, runs_text, notes, float(meta.get("seconds", 0.0))

    def draw(
        self, finding: Finding, tables: Tables, sources: list[dict], out_dir: Path, notes: list[str]
    ) -> list[Path]:
        scale = self.options.scale
        caption = [
            f"Data: {data_text(sources, short=True)}. Scale: {scale} ({self.scale_note(finding)}). "
            f"bnexp reproduce {finding.name}."
        ]
        paths = []
        for name in finding.figures:
            try:
                fig = FIGURES[name](FigureContext(tables, finding, caption))
                base = out_dir / "figures" / name
                paths += style.savefig(fig, base, formats=("png",), dpi=FIGURE_DPI)
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
        return f"no runs in {relative_to(directory, out)}"
    counts = ", ".join(f"{n} {s}" for s, n in runs["status"].value_counts().items())
    return f"{len(runs)} runs ({counts}) in `{relative_to(directory, out)}/`"


def _runs_summary(tables: Tables, out: Path) -> pd.DataFrame:
    """One row per run: the config keys that vary, status, final accuracy (for runs.csv)."""
    runs = tables.runs
    if runs.empty:
        return runs
    keys = [k for k in varying_keys(runs.drop(columns=["run_id"])) if k in runs] + (
        ["seed"] if "seed" in runs else []
    )
    columns = [
        *dict.fromkeys(keys),
        "status",
        "final_test_acc",
        "best_test_acc",
        "steps_done",
        "diverged_at_step",
        "steps_per_second",
        "data_source",
        "run_dir",
    ]
    summary = runs[[c for c in columns if c in runs]].copy()
    if "run_dir" in summary:  # relative to --out, so that the folder can be moved or committed
        summary["run_dir"] = [relative_to(Path(p), out) for p in summary["run_dir"]]
    return summary


def shown_sweep_args(command: list[str], directory: Path, options: Options) -> list[str]:
    """A sweep's recorded command as a report shows it: the sweep directory named from --out as
    the user gave it, also for runs made in another folder and copied here (the recorded path
    would name a folder the reader does not have)."""
    shown = Path(options.out_text) / relative_to(directory, options.out)
    return [
        f"hydra.sweep.dir={shown.as_posix()}" if arg.startswith("hydra.sweep.dir=") else arg
        for arg in command
    ]
