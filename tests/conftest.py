"""Shared test helpers: tiny configs, the real CLI in a subprocess, CSV readers."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bnexp.run.config import Config, register_configs

register_configs()  # the schema and resolver configs/ needs, as `bnexp run` registers them

REPO = Path(__file__).resolve().parents[1]


def make_config(**overrides) -> Config:
    """A validated Config from dotted overrides, e.g. make_config(depth=2, **{"norm.name": "none"})."""
    cfg = OmegaConf.structured(Config)
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value, merge=False)
    cfg.plots = False
    return OmegaConf.to_object(cfg)


@pytest.fixture(scope="session")
def bundled_data():
    from bnexp.run.data import load_data

    return load_data("mnist", "/nonexistent", "bundled", False, False)


def run_cli(
    args: list[str], cwd: Path, timeout: float = 300, **popen
) -> subprocess.CompletedProcess:
    """`bnexp ARGS` in a fresh interpreter (Hydra reconfigures logging in-process)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run(
        [sys.executable, "-m", "bnexp", *args], cwd=cwd, env=env, capture_output=True,
        text=True, timeout=timeout, **popen,
    )  # fmt: skip


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# Flags every test run passes: offline data, no download attempt, few steps.
TINY = [
    "data.source=bundled",
    "data.download=false",
    "steps=20",
    "log_every=5",
    "eval_every=10",
    "width=16",
    "probe_size=32",
]
