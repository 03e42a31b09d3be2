"""The published findings `bnexp reproduce` knows: one claim declaration per finding.

A finding is data: `configs/experiment/<experiment>.yaml` (the runs, a Hydra sweep at the
published scale) plus `bnexp/reproduce/findings/<name>.yaml` (what was published, the setup choices
with their reasons, the scale settings, the figures, and the claims with their criteria,
written before running). The format is described in `bnexp/reproduce/findings/README.md`; this module
reads and checks the declarations, nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from bnexp.errors import UserError
from bnexp.reproduce import optimisation  # noqa: F401 (registers its measure in MEASURES)
from bnexp.reproduce.claims import MEASURES, check_claim
from bnexp.reproduce.finding_figures import FIGURES

SCALES = ("quick", "paper")
REQUIRED_KEYS = ("title", "reference", "summary", "published", "setup", "claims")
CLAIM_KEYS = ("id", "claim", "published", "measure", "criterion")


HISTORY_KEYS = ("date", "note", "seen_before_claims")


@dataclass
class HistoryEntry:
    """One event in a finding's life that a reader should know: a pilot run looked at, a
    re-declaration, a scale changed after a run. `seen_before_claims`: results that were seen
    before the current claims were written (so those claims were not declared blind)."""

    date: str
    note: str
    seen_before_claims: bool = False


@dataclass
class Scale:
    overrides: list[str]
    note: str
    minutes: float | None


@dataclass
class Finding:
    name: str
    title: str
    reference: str
    summary: str
    published: str
    setup: str
    experiment: str
    claims: list[dict[str, Any]]
    scales: dict[str, Scale]
    figures: list[str] = field(default_factory=list)
    runs_of: str | None = None  # another finding whose runs this one reads
    procedure: str | None = None  # an in-process measurement in bnexp.reproduce.procedures
    requires: list[str] = field(default_factory=list)  # e.g. ["cnn"]: bnexp.run modules needed
    published_values: dict[str, Any] = field(default_factory=dict)
    history: list[HistoryEntry] = field(default_factory=list)
    path: Path | None = None

    @property
    def n_claims(self) -> int:
        return len(self.claims)

    @property
    def declared_blind(self) -> bool:
        """Whether the current claims were declared before any of their results was seen."""
        return not any(entry.seen_before_claims for entry in self.history)


def findings_dir() -> Path:
    return Path(str(resources.files("bnexp.reproduce.findings")))


def _problem(path: Path, message: str) -> UserError:
    return UserError(f"finding declaration {path}: {message}")


def parse_finding(name: str, raw: dict[str, Any], path: Path) -> dict[str, Any]:
    """Checks one declaration's shape (not yet `runs_of`, which needs the others)."""
    if not isinstance(raw, dict):
        raise _problem(path, "must be a YAML mapping")
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if "experiment" not in raw and "runs_of" not in raw:
        missing.append("experiment (or runs_of)")
    if missing:
        raise _problem(path, f"missing key(s): {', '.join(missing)}")
    seen_ids = set()
    for i, claim in enumerate(raw["claims"] or []):
        lacking = [k for k in CLAIM_KEYS if k not in claim]
        if lacking:
            raise _problem(path, f"claim {i + 1} lacks {', '.join(lacking)}")
        if claim["id"] in seen_ids:
            raise _problem(path, f"two claims have the id {claim['id']!r}")
        seen_ids.add(claim["id"])
        if claim["measure"] not in MEASURES:
            raise _problem(
                path,
                f"claim {claim['id']!r}: unknown measure {claim['measure']!r}; known: {', '.join(sorted(MEASURES))}",
            )
        try:
            check_claim(claim)
        except ValueError as error:
            raise _problem(path, f"claim {claim['id']!r}: {error}") from None
    _check_history(raw.get("history"), path)
    if "runs_of" not in raw:
        scales = raw.get("scales") or {}
        absent = [s for s in SCALES if s not in scales]
        if absent:
            raise _problem(path, f"scales lacks {', '.join(absent)}")
    for figure in raw.get("figures") or []:
        if figure not in FIGURES:
            raise _problem(path, f"unknown figure {figure!r}; known: {', '.join(sorted(FIGURES))}")
    if raw.get("procedure"):
        from bnexp.reproduce import procedures  # imports torch: only for a finding that has one

    if raw.get("procedure") and raw["procedure"] not in procedures.PROCEDURES:
        raise _problem(
            path,
            f"unknown procedure {raw['procedure']!r}; known: {', '.join(sorted(procedures.PROCEDURES))}",
        )
    return raw


def _check_history(history: Any, path: Path) -> None:
    if history is None:
        return
    if not isinstance(history, list):
        raise _problem(path, "history must be a list of {date, note, seen_before_claims} entries")
    for i, entry in enumerate(history):
        if not isinstance(entry, dict) or "date" not in entry or "note" not in entry:
            raise _problem(path, f"history entry {i + 1} needs a date and a note")
        unknown = sorted(set(entry) - set(HISTORY_KEYS))
        if unknown:
            raise _problem(
                path,
                f"history entry {i + 1}: unknown key(s) {', '.join(unknown)}; known: {', '.join(HISTORY_KEYS)}",
            )
        if not isinstance(entry.get("seen_before_claims", False), bool):
            raise _problem(path, f"history entry {i + 1}: seen_before_claims must be true or false")


def _history(raw: dict[str, Any]) -> list[HistoryEntry]:
    return [
        HistoryEntry(
            date=str(entry["date"]),
            note=" ".join(str(entry["note"]).split()),
            seen_before_claims=bool(entry.get("seen_before_claims", False)),
        )
        for entry in raw.get("history") or []
    ]


def _scales(raw: dict[str, Any]) -> dict[str, Scale]:
    out = {}
    for scale in SCALES:
        entry = raw["scales"][scale] or {}
        out[scale] = Scale(
            overrides=[str(o) for o in entry.get("overrides") or []],
            note=str(entry.get("note", "")),
            minutes=float(entry["minutes"]) if entry.get("minutes") is not None else None,
        )
    return out


def load_findings(directory: Path | None = None) -> dict[str, Finding]:
    """Every declaration in `directory` (default: the shipped ones), by name, in file order."""
    directory = directory or findings_dir()
    raws: dict[str, tuple[dict[str, Any], Path]] = {}
    for path in sorted(directory.glob("*.yaml")):
        with open(path) as handle:
            try:
                raw = yaml.safe_load(handle)
            except yaml.YAMLError as error:
                raise _problem(path, f"not valid YAML ({error})") from None
        raws[path.stem] = (parse_finding(path.stem, raw, path), path)
    findings = {}
    for name, (raw, path) in raws.items():
        source = raw
        if raw.get("runs_of"):
            if raw["runs_of"] not in raws:
                raise _problem(path, f"runs_of: no finding named {raw['runs_of']!r}")
            source = raws[raw["runs_of"]][0]
        findings[name] = Finding(
            name=name,
            title=str(raw["title"]).strip(),
            reference=str(raw["reference"]).strip(),
            summary=str(raw["summary"]).strip(),
            published=str(raw["published"]).strip(),
            setup=str(raw["setup"]).strip(),
            experiment=str(source.get("experiment") or raw["runs_of"]),
            claims=list(raw["claims"]),
            scales=_scales(source),
            figures=list(raw.get("figures") or []),
            runs_of=raw.get("runs_of"),
            procedure=raw.get("procedure"),
            requires=list(raw.get("requires") or []),
            published_values=dict(raw.get("published_values") or {}),
            history=_history(raw),
            path=path,
        )
    return dict(sorted(findings.items(), key=lambda item: ORDER.get(item[0], len(ORDER))))


# The order of docs/design.md §7; findings a user adds come after, alphabetically.
ORDER = {
    name: i
    for i, name in enumerate(
        [
            "fig1",
            "fig1-dist",
            "gradient-flow",
            "affine",
            "placement",
            "learning-rate",
            "batch-size",
            "running-stats",
            "scale-invariance",
            "bn-backward",
            "running-average",
            "linear-depth",
            "init-scale",
            "regularization",
            "lenet",
            "explosion",
            "renorm",
            "ics",
            "smoothness",
        ]
    )
}
