"""A finding's sweep, run through `bnexp run -m` in a subprocess.

A subprocess keeps Hydra's logging setup out of this process; joblib runs `--jobs` jobs at
once (torch threads per job are set by `bnexp run`). Jobs already completed with the same
config are skipped, so an interrupted reproduction resumes where it stopped. What a sweep made
is recorded in its directory (MANIFEST), so that `--report-only` finds its runs again.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bnexp.errors import UserError

MANIFEST = "reproduce_jobs.json"


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
        "run",
        "-m",
        "hydra/launcher=joblib",
        f"hydra.launcher.n_jobs={jobs}",
        f"hydra.sweep.dir={sweep_dir}",
        f"experiment={experiment}",
        *overrides,
    ]
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
    manifest = {
        "experiment": experiment,
        "overrides": overrides,
        "command": display_command(args),
        "jobs": [str(p) for p in found],
        "seconds": round(seconds, 1),
    }
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
    # A job is found where the manifest says, or by its name inside this sweep folder: a sweep
    # made elsewhere (another machine, another --out) and copied here still reads.
    jobs = []
    for recorded in map(Path, manifest.get("jobs", [])):
        here = sweep_dir / recorded.name
        if recorded.is_dir() or here.is_dir():
            jobs.append(recorded if recorded.is_dir() else here)
    return SweepRun(
        sweep_dir,
        jobs,
        shlex.split(manifest.get("command", "bnexp"))[1:],
        float(manifest.get("seconds", 0)),
    )
