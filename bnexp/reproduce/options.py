"""What one `bnexp reproduce` command asks for (parsed by bnexp.reproduce.cli)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_OUT = "results/reproduce"
DEFAULT_SCALE = "quick"
DEFAULT_JOBS = 2


@dataclass
class Options:
    names: list[str]
    out: Path
    out_text: str  # as the user typed it, for the commands printed in reports
    scale: str = DEFAULT_SCALE
    overrides: list[str] = field(default_factory=list)
    jobs: int = DEFAULT_JOBS
    report_only: bool = False
