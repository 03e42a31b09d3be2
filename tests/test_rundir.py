"""Telling a live run from a killed one: pid and host, heartbeat, pid reuse; torch-free."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

from bnexp.rundir import STALE_AFTER_S, run_status, stale_reason, this_host

from conftest import REPO


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def local_time(seconds_ago: float) -> str:
    """As the runner writes `started_at`: local time, no zone."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - seconds_ago))


def utc_iso(seconds_ago: float) -> str:
    moment = datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)
    return moment.isoformat(timespec="seconds")


def running(**fields) -> dict:
    return {"status": "running", "started_at": local_time(5), "heartbeat": utc_iso(1), **fields}


def test_a_running_run_whose_process_is_gone_on_this_host_is_stale():
    pid = dead_pid()
    meta = running(pid=pid, host=this_host())
    assert run_status(meta) == "stale"
    assert f"pid {pid}" in stale_reason(meta)


def test_a_running_run_whose_process_lives_is_running():
    assert run_status(running(pid=os.getpid(), host=this_host())) == "running"


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc (Linux)")
def test_a_reused_pid_does_not_keep_a_dead_run_running():
    """This process exists, but started long after a run that began a day ago: not that run."""
    meta = running(pid=os.getpid(), host=this_host(), started_at=local_time(86_400))
    assert run_status(meta) == "stale"
    assert "newer process" in stale_reason(meta)


def test_on_another_host_only_an_old_heartbeat_makes_a_run_stale():
    elsewhere = {"pid": 1, "host": this_host() + "-elsewhere"}
    assert run_status(running(**elsewhere, heartbeat=utc_iso(STALE_AFTER_S + 60))) == "stale"
    assert run_status(running(**elsewhere, heartbeat=utc_iso(STALE_AFTER_S - 60))) == "running"


def test_finished_unknown_and_legacy_runs_keep_their_status():
    gone = {"pid": dead_pid(), "host": this_host()}
    for status in ("completed", "diverged", "failed", "interrupted"):
        assert run_status({"status": status, **gone}) == status
    assert run_status(None) == run_status({}) == "unknown"
    assert run_status({"status": "running"}) == "running"  # no pid recorded: cannot tell


def test_the_reader_imports_without_torch():
    code = "import sys, bnexp.rundir; assert 'torch' not in sys.modules, 'torch imported'"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_heartbeat_is_written_at_log_steps_at_most_every_few_seconds(tmp_path, monkeypatch):
    import json

    from bnexp.run import runner

    from conftest import make_config

    beats = []
    monkeypatch.setattr(runner, "now_iso", lambda: beats.append(1) or f"beat-{len(beats)}")
    cfg = make_config(
        depth=2,
        width=8,
        steps=20,
        log_every=2,
        probe_size=16,
        **{"data.source": "bundled", "data.download": False},
    )
    monkeypatch.setattr(runner, "HEARTBEAT_EVERY_S", 3600.0)
    assert runner.execute(cfg, tmp_path / "slow", threads=1, show_progress=False) == "completed"
    assert len(beats) == 2  # the start and the end only: 11 log steps within the interval
    beats.clear()
    monkeypatch.setattr(runner, "HEARTBEAT_EVERY_S", 0.0)
    assert runner.execute(cfg, tmp_path / "fast", threads=1, show_progress=False) == "completed"
    assert len(beats) == 2 + 11  # start, every log step (steps 0, 2, ..., 20), end
    meta = json.loads((tmp_path / "fast" / "meta.json").read_text())
    assert meta["heartbeat"] == "beat-13" and meta["pid"] == os.getpid()
