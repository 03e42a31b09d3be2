"""Is a run that meta.json calls "running" still alive? Torch-free, for every reader of runs.

A run records its process id, its host and a heartbeat (the time of its last log step, written
at most every HEARTBEAT_EVERY_S seconds) in meta.json. A process killed with SIGKILL, by the
out-of-memory killer or by a cluster's time limit cannot mark itself: its meta.json keeps
saying "running". Readers call such a run "stale":
- on the host that ran it: its process is gone (or the process with its id started after the
  run did, so the id was reused);
- seen from another host (a cluster's login node): its heartbeat is older than STALE_AFTER_S.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import datetime, timezone

RUNNING = "running"
STALE = "stale"
HEARTBEAT_EVERY_S = 5.0  # a running run rewrites meta.json at a log step at most this often
STALE_AFTER_S = 3600.0  # heartbeat age (s) after which a run on another host counts as dead
# A process that started this long (s) after the run's recorded start is another process.
PID_REUSE_SLACK_S = 60.0
# How to finish a stale run, after "to finish it, ".
RESUME_HINT = (
    "re-run the same command (the same run or sweep directory): "
    "completed runs are skipped, a stale run starts again from step 0"
)


def now_iso() -> str:
    """The current time as ISO 8601 in UTC with its offset, e.g. 2026-11-27T17:30:05+00:00."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def this_host() -> str:
    return socket.gethostname()


def _seconds_since(iso: str | None, now: float) -> float | None:
    try:
        moment = datetime.fromisoformat(str(iso))
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:  # local time, as `started_at` is written
        moment = moment.astimezone()
    return now - moment.timestamp()


def process_start_time(pid: int) -> float | None:
    """When process `pid` started (Unix time), from /proc on Linux; None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # Field 22 (starttime, clock ticks after boot) follows the command name, which sits
            # in parentheses and may itself hold spaces.
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/stat") as f:
            boot = next(float(line.split()[1]) for line in f if line.startswith("btime"))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    except OSError:
        return True  # cannot tell: do not call a run dead on a guess
    return True


def stale_reason(
    meta: dict | None, *, now: float | None = None, host: str | None = None
) -> str | None:
    """Why a run that meta.json calls running is dead, or None (alive, finished or unknown)."""
    if not meta or meta.get("status") != RUNNING:
        return None
    now = time.time() if now is None else now
    host = this_host() if host is None else host
    pid, run_host = meta.get("pid"), meta.get("host")
    if run_host == host and isinstance(pid, int):
        if not process_alive(pid):
            return f"its process (pid {pid} on {host}) is gone"
        started = process_start_time(pid)
        run_age = _seconds_since(meta.get("started_at"), now)
        if (
            started is not None
            and run_age is not None
            and started > now - run_age + PID_REUSE_SLACK_S
        ):
            return (
                f"its process (pid {pid} on {host}) is gone; the id now belongs to a newer process"
            )
        return None
    age = _seconds_since(meta.get("heartbeat"), now)
    if run_host is not None and age is not None and age > STALE_AFTER_S:
        return (
            f"its last heartbeat on {run_host} was {age / 3600:.1f} h ago "
            f"({meta.get('heartbeat')}; a live run writes one at every log step, at most "
            f"every {HEARTBEAT_EVERY_S:.0f} s)"
        )
    return None  # a run from before pids were recorded, or a live one: cannot call it dead


def run_status(meta: dict | None, *, now: float | None = None, host: str | None = None) -> str:
    """meta.json's status, except "stale" for a "running" run whose process is gone.

    "unknown" when there is no meta.json (or it cannot be read).
    """
    if not meta:
        return "unknown"
    if stale_reason(meta, now=now, host=host) is not None:
        return STALE
    return str(meta.get("status") or "unknown")
