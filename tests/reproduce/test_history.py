"""A finding's history (pilot runs, re-declarations, changed scales): parsed from its claim
file, printed in every report, and the summary's "declared before its runs" sentence made true
for the findings it covers."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bnexp.errors import UserError
from bnexp.reproduce.claims import Tables, evaluate
from bnexp.reproduce.findings import load_findings
from bnexp.reproduce.options import Options
from bnexp.reproduce.report import (
    FindingResult,
    declaration_sentence,
    finding_report,
    summary_report,
)

SHIPPED = load_findings()


def result_of(finding) -> FindingResult:
    """A report of `finding` with no runs: every claim inconclusive, which is all the history needs."""
    claims = [evaluate(spec, Tables.empty()) for spec in finding.claims]
    return FindingResult(
        finding=finding,
        scale="quick",
        claims=claims,
        figures=[],
        command="bnexp reproduce x",
        run_command=None,
        data_text="",
        runs_text="none",
        seconds=0.0,
    )


def test_every_report_prints_the_findings_history_and_when_its_claims_were_declared():
    noisy = SHIPPED["noisy-bn"]
    report = finding_report(result_of(noisy), link_root=Path("."))
    assert "## History" in report
    for entry in noisy.history:
        assert f"- {entry.date}" in report and entry.note[:60] in report
    # The pilot pair and the first version's results were seen before the current claims.
    assert report.count("(seen before the current claims were written)") == 2
    assert "91.5% vs BN 92.4%" in report  # the pilot's numbers, once only in a YAML comment
    declared = next(line for line in report.splitlines() if line.startswith("**Declared:**"))
    assert "written after earlier results had been seen" in declared
    blind = SHIPPED["placement"]
    assert blind.declared_blind and not blind.history
    plain = finding_report(result_of(blind), link_root=Path("."))
    assert "## History" not in plain
    assert "**Declared:** every claim with its criterion before its runs" in plain


def test_the_summary_names_every_finding_declared_after_results_were_seen():
    results = [result_of(f) for f in SHIPPED.values()]
    late = sorted(f.name for f in SHIPPED.values() if not f.declared_blind)
    assert "noisy-bn" in late
    sentence = declaration_sentence(results)
    assert sentence.startswith("Every claim was declared, with its criterion, before its runs")
    assert f"except those of {', '.join(n for n in SHIPPED if n in late)}:" in sentence
    for name in SHIPPED:
        if SHIPPED[name].history:
            assert name in sentence.split("History notes")[1]
    options = Options(names=list(SHIPPED), out=Path("out"), out_text="out")
    summary = summary_report(results, options, seconds=60.0)
    assert sentence in summary
    # Only the blind findings: the sentence holds without exception.
    blind = [r for r in results if r.finding.declared_blind and not r.finding.history]
    assert blind
    clean = declaration_sentence(blind)
    assert "except" not in clean and "History notes" not in clean


def write_finding(directory: Path, history) -> None:
    noisy = yaml.safe_load(SHIPPED["noisy-bn"].path.read_text())
    noisy["history"] = history
    (directory / "noisy-bn.yaml").write_text(yaml.safe_dump(noisy))


@pytest.mark.parametrize(
    ("history", "words"),
    [
        ("a pilot was seen", ["history must be a list"]),
        ([{"note": "no date"}], ["history entry 1 needs a date and a note"]),
        (
            [{"date": "2026-11-27", "note": "n", "seen": True}],
            ["unknown key(s) seen", "seen_before_claims"],
        ),
        ([{"date": "2026-11-27", "note": "n", "seen_before_claims": "yes"}], ["true or false"]),
    ],
)
def test_a_malformed_history_is_a_clear_error(tmp_path, history, words):
    write_finding(tmp_path, history)
    with pytest.raises(UserError) as error:
        load_findings(tmp_path)
    assert "noisy-bn.yaml" in str(error.value)
    assert all(w in str(error.value) for w in words), str(error.value)


def test_a_well_formed_history_is_read_in_order(tmp_path):
    write_finding(
        tmp_path,
        [
            {"date": "2026-11-20", "note": "first\n   version", "seen_before_claims": True},
            {"date": "2026-11-27", "note": "second"},
        ],
    )
    finding = load_findings(tmp_path)["noisy-bn"]
    assert [(e.date, e.note, e.seen_before_claims) for e in finding.history] == [
        ("2026-11-20", "first version", True),
        ("2026-11-27", "second", False),
    ]
    assert not finding.declared_blind
