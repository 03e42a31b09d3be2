"""What a run leaves on disk: metrics.csv, layers.csv (streamed row by row) and meta.json.

Rows are flushed at every log step, so a run killed halfway leaves valid CSVs; meta.json is
replaced atomically, so a reader never sees half of it.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import platform
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bnexp import __version__
from bnexp.rundir import LAYERS_COLUMNS, LAYERS_FILE, META_FILE, METRICS_COLUMNS, METRICS_FILE


def format_cell(value: Any) -> str:
    """Empty for a missing value (None, NaN), never a made-up number; floats to 6 significant digits.

    An infinite value is written as `inf`/`-inf`: a diverging run's numbers are results.
    """
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.6g}"
    return str(value)


class CsvStream:
    """A CSV file written one row at a time, flushed after every batch of rows.

    keep_rows (a resumed run): the file's header and first `keep_rows` rows are kept and the
    rows that follow are appended; `rows` counts the data rows in the file."""

    def __init__(self, path: Path, columns: Sequence[str], keep_rows: int | None = None):
        self.columns = columns
        self.rows = 0
        if keep_rows is not None:
            cut_csv(path, columns, keep_rows)
            self.rows = keep_rows
        self._file = open(path, "a" if keep_rows is not None else "w", newline="")  # noqa: SIM115 - closed in close()
        self._writer = csv.writer(self._file)
        if keep_rows is None:
            self._writer.writerow(columns)

    def write(self, rows: list[list[Any]]) -> None:
        self._writer.writerows([[format_cell(v) for v in row] for row in rows])
        self._file.flush()
        self.rows += len(rows)

    def close(self) -> None:
        self._file.close()


def cut_csv(path: Path, columns: Sequence[str], keep_rows: int) -> None:
    """Cuts a CSV back to its header and first `keep_rows` rows (a resumed run's files, back to
    its checkpoint). ValueError when the file has another header or fewer complete rows."""
    with open(path, "rb") as f:
        lines = f.read().splitlines(keepends=True)
    header = ",".join(columns).encode()
    if not lines or lines[0].rstrip(b"\r\n") != header:
        raise ValueError(f"{path} does not start with the header {header.decode()}")
    kept = lines[: 1 + keep_rows]
    if len(kept) < 1 + keep_rows or not kept[-1].endswith(b"\n"):
        raise ValueError(f"{path} holds fewer than {keep_rows} complete rows")
    if len(kept) < len(lines):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(b"".join(kept))
        os.replace(tmp, path)


# A list of integers only (e.g. probe_indices) as json.dumps(indent=2) spreads it, one per
# line; written on one line instead. Raw newlines never occur inside a JSON string.
_INT_LIST = re.compile(r"\[\n\s*-?\d+(?:,\n\s*-?\d+)*\n\s*\]")


def write_json_atomic(path: Path, payload: dict) -> None:
    text = json.dumps(payload, indent=2, sort_keys=False, default=str)
    text = _INT_LIST.sub(lambda m: re.sub(r"\s+", "", m.group()).replace(",", ", "), text)
    tmp = path.with_suffix(".json.tmp")
    try:
        tmp.write_text(text + "\n")
        os.replace(tmp, path)
    except OSError:  # e.g. a full disk: the previous meta.json stays, whole
        tmp.unlink(missing_ok=True)
        raise


def git_commit() -> str | None:
    """The commit of the bnexp source tree, when it is a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
            capture_output=True, text=True, timeout=5, check=True,
        )  # fmt: skip
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict:
    import torch  # heavy: records.py itself only writes files

    return {
        "bnexp_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "git_commit": git_commit(),
    }


class RunRecord:
    """The files of one run directory."""

    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.meta: dict[str, Any] = {}
        self.metrics: CsvStream | None = None
        self.layers: CsvStream | None = None

    def open_csvs(self, keep_rows: dict[str, int] | None = None) -> None:
        """keep_rows (a resumed run): {"metrics_rows": n, "layers_rows": m} to keep."""
        keep = keep_rows or {}
        self.metrics = CsvStream(
            self.run_dir / METRICS_FILE, METRICS_COLUMNS, keep.get("metrics_rows")
        )
        self.layers = CsvStream(self.run_dir / LAYERS_FILE, LAYERS_COLUMNS, keep.get("layers_rows"))

    def row_counts(self) -> dict[str, int]:
        """The data rows written so far, as a checkpoint records them."""
        return {"metrics_rows": self.metrics.rows, "layers_rows": self.layers.rows}

    def update_meta(self, **fields: Any) -> None:
        self.meta.update(fields)
        write_json_atomic(self.run_dir / META_FILE, self.meta)

    def close(self) -> None:
        for stream in (self.metrics, self.layers):
            if stream is not None:
                # A full disk fails the flush of what is still buffered: the rows flushed at
                # earlier log steps are on disk, and the write's own error is the one to report.
                with contextlib.suppress(OSError):
                    stream.close()
