"""Hydra callback that ends a multirun with a one-line summary and a meaningful exit status."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from bnexp.records import read_meta

log = logging.getLogger("bnexp")

# Set by on_multirun_end in the launching process; read by the CLI for its exit status.
LAST_SWEEP: dict[str, Any] = {}


def sweep_statuses(sweep_dir: Path) -> Counter:
    statuses: Counter = Counter()
    for meta_path in sorted(Path(sweep_dir).rglob("meta.json")):
        meta = read_meta(meta_path.parent)
        statuses[meta.get("status", "unknown") if meta else "unreadable"] += 1
    return statuses


def summary_line(sweep_dir: Path, statuses: Counter) -> str:
    total = sum(statuses.values())
    parts = [f"{statuses.get(s, 0)} {s}" for s in ("completed", "diverged", "failed")]
    parts += [
        f"{n} {s}"
        for s, n in sorted(statuses.items())
        if s not in ("completed", "diverged", "failed")
    ]
    return f"bnexp: sweep {sweep_dir}: {total} jobs: " + ", ".join(parts)


class SweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        statuses = sweep_statuses(sweep_dir)
        LAST_SWEEP.clear()
        LAST_SWEEP.update(sweep_dir=sweep_dir, statuses=statuses)
        print(summary_line(sweep_dir, statuses), flush=True)
