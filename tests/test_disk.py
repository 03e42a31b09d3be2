"""A full disk (issue 14 item 4): a clear error (exit 2, no traceback) that keeps what was
written, and the same command finishes the run once there is space. The disk is a real tiny
tmpfs (mount needs root; skipped elsewhere)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bnexp.rundir import LAYERS_COLUMNS, METRICS_COLUMNS

from conftest import read_csv, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture
def tiny_disk(tmp_path):
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mount_point)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


def complete_rows(path: Path, columns) -> list[dict]:
    rows = read_csv(path)
    assert all(len(r) == len(columns) and None not in r.values() for r in rows)
    return rows


def test_a_full_disk_is_a_clear_error_that_keeps_the_rows_and_the_run_can_finish(
    tiny_disk, tmp_path
):
    run_dir = tiny_disk / "run"
    args = ["run", "depth=3", "steps=3000", "log_every=10", "plots=false", "threads=1",
            "data.source=bundled", "checkpoint_every=100", f"hydra.run.dir={run_dir}"]  # fmt: skip
    full = run_cli(args, cwd=tmp_path)
    assert full.returncode == 2, full.stdout + full.stderr
    assert "Traceback" not in full.stderr
    assert f"cannot write to the run directory {run_dir}: No space left on device" in full.stderr
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["status"] == "failed" and "No space left" in meta["error"]
    steps = [int(r["step"]) for r in complete_rows(run_dir / "metrics.csv", METRICS_COLUMNS)]
    assert steps == list(range(0, 10 * len(steps), 10)) and len(steps) >= 2  # kept, whole
    assert f"every row up to step {steps[-1]}" in full.stderr
    complete_rows(run_dir / "layers.csv", LAYERS_COLUMNS)
    assert not list(run_dir.glob("*.tmp"))  # no half-written temporary left behind

    subprocess.run(["mount", "-o", "remount,size=4m", str(tiny_disk)], check=True)
    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["status"] == "completed"
    steps = [int(r["step"]) for r in complete_rows(run_dir / "metrics.csv", METRICS_COLUMNS)]
    assert steps == list(range(0, 3001, 10))
