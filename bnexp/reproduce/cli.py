"""`bnexp reproduce`: run published findings, draw their figures, judge their claims, write
REPORT.md.

    bnexp reproduce NAME [NAME...] [--out DIR] [--jobs N] [scale=quick|paper] [OVERRIDES...]
    bnexp reproduce all [--out DIR] [scale=quick|paper] [OVERRIDES...]
    bnexp reproduce --list

The command line (argparse, like `bnexp figures`) and the loop over the findings; each finding
is reproduced by bnexp.reproduce.reproducer, reported by bnexp.reproduce.report.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import pandas as pd

from bnexp.errors import UserError
from bnexp.outdir import make_output_dir
from bnexp.reproduce.claims import results_frame
from bnexp.reproduce.findings import SCALES, Finding, load_findings
from bnexp.reproduce.options import DEFAULT_JOBS, DEFAULT_OUT, DEFAULT_SCALE, Options
from bnexp.reproduce.report import summary_report
from bnexp.reproduce.reproducer import Reproducer

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


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors raised as UserError (one paragraph, exit 2, the same
    messages as before) instead of printed with the usage and exited."""

    def error(self, message: str) -> NoReturn:
        missing = re.fullmatch(r"argument (--\w[\w-]*): expected one argument", message)
        if missing:
            key = missing.group(1)
            example = DEFAULT_OUT if key == "--out" else str(DEFAULT_JOBS)
            raise UserError(f"{key} needs a value, e.g. `{key} {example}`.")
        raise UserError(re.sub(r"^argument --\w[\w-]*: ", "", message))


def _jobs(text: str) -> int:
    """--jobs: parallel training jobs, an integer >= 1."""
    try:
        jobs = int(text)
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise argparse.ArgumentTypeError(
            f"--jobs={text} is not allowed: it must be an integer >= 1."
        )
    return jobs


def _parser() -> _Parser:
    parser = _Parser(prog="bnexp reproduce", add_help=False, allow_abbrev=False)
    parser.add_argument("-h", "--help", action="store_true")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--jobs", type=_jobs, default=DEFAULT_JOBS)
    parser.add_argument("--report-only", action="store_true")
    # Finding names, `scale=...` and `bnexp run` overrides, in any order among the options.
    parser.add_argument("items", nargs="*")
    return parser


def parse_args(argv: list[str], known: list[str]) -> Options | None:
    """The command line as Options; None means: the caller printed what was asked (--help,
    --list). Every mistake is a UserError naming the key, the value and the valid choices."""
    args, unknown = _parser().parse_known_intermixed_args(argv)
    if unknown:
        raise UserError(
            f"unknown option {unknown[0]!r} for `bnexp reproduce`. Valid options: --out, --jobs, --report-only, --list, --help."
        )
    if args.help:
        print(USAGE)
        return None
    if args.list:
        print_list(load_findings())
        return None
    names, overrides, scale = [], [], DEFAULT_SCALE
    for item in args.items:
        if item.startswith("scale="):
            scale = item.split("=", 1)[1]
            if scale not in SCALES:
                raise UserError(f"scale={scale} is not known: choose one of {', '.join(SCALES)}.")
        elif "=" in item:
            overrides.append(item)
        else:
            names.append(item)
    if not names:
        raise UserError(
            "which finding? Give a name or `all`: "
            + ", ".join(known)
            + ". `bnexp reproduce --list` describes them."
        )
    if "all" in names:
        names = list(known)
    unknown_names = [n for n in names if n not in known]
    if unknown_names:
        raise UserError(
            f"unknown finding {unknown_names[0]!r}. Known findings: {', '.join(known)} (or `all`); "
            "`bnexp reproduce --list` describes them."
        )
    names = list(dict.fromkeys(names))
    out = Path(args.out).expanduser().resolve()
    return Options(names, out, args.out, scale, overrides, args.jobs, args.report_only)


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
        print(
            f"\nbnexp reproduce: interrupted; completed runs are kept in {options.out / 'runs'} "
            "and will be skipped next time.",
            file=sys.stderr,
        )
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
