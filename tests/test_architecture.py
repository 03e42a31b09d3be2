"""The architecture, checked: the analysis side works without torch, and imports point one way.

    entry points (bnexp.api, bnexp.cli) -> reproduce -> {run, analysis}
        -> shared (bnexp, rundir, outdir, describe, errors)

bnexp.run trains (torch); bnexp.analysis reads runs and draws them and never imports torch, so
figures of runs made elsewhere need only pandas and matplotlib; bnexp.reproduce uses both.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO
from synthetic_runs import write_sweep

# The torch-free modules at the top of the package that every side may use (`bnexp` itself:
# the version; its Python API names are loaded by name on first use, not imported).
SHARED = {"bnexp", "bnexp.errors", "bnexp.rundir", "bnexp.outdir", "bnexp.describe"}
# What users call: the command line and the Python API.
ENTRY_POINTS = {"bnexp.api", "bnexp.cli", "bnexp.__main__"}


def _load_import_graph_script():
    spec = importlib.util.spec_from_file_location(
        "import_graph", REPO / "scripts" / "import_graph.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


import_graph_script = _load_import_graph_script()
GRAPH = import_graph_script.import_graph(REPO)


def side(module: str) -> str:
    """run, analysis, reproduce, shared or entry."""
    for package in ("run", "analysis", "reproduce"):
        if module == f"bnexp.{package}" or module.startswith(f"bnexp.{package}."):
            return package
    if module in ENTRY_POINTS:
        return "entry"
    assert module in SHARED, f"{module}: a new top-level module; add it to SHARED or a package"
    return "shared"


# --------------------------------------------------------------------------------------------
# Imports
# --------------------------------------------------------------------------------------------


def test_the_graph_walker_sees_the_package():
    """So that the checks below cannot pass on an empty or half-read graph."""
    assert {side(m) for m in GRAPH} == {"run", "analysis", "reproduce", "shared", "entry"}
    assert "bnexp.analysis.tables" in GRAPH["bnexp.reproduce.reproducer"]
    assert "bnexp.run.train" in GRAPH["bnexp.reproduce.procedures"]  # a torch module, imported
    assert "bnexp.rundir" in GRAPH["bnexp.run.records"]


def test_no_import_cycles():
    cycles = import_graph_script.import_cycles(GRAPH)
    assert cycles == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


ALLOWED = {
    "shared": {"shared"},
    "run": {"run", "shared"},
    "analysis": {"analysis", "shared"},
    "reproduce": {"reproduce", "run", "analysis", "shared"},
    "entry": {"entry", "run", "analysis", "reproduce", "shared"},
}


@pytest.mark.parametrize("package", ["shared", "run", "analysis", "reproduce"])
def test_imports_point_one_way(package):
    wrong = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        if side(module) == package
        for target in targets
        if side(target) not in ALLOWED[package]
    )
    assert not wrong, f"{package} imports what it must not: " + ", ".join(wrong)


# --------------------------------------------------------------------------------------------
# The analysis side without torch
# --------------------------------------------------------------------------------------------

# Installed first in the subprocess: any import of torch (or of a torch submodule) fails.
BLOCK_TORCH = """
import importlib.abc
import sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"torch is blocked in this test (import of {name})")
        return None

sys.meta_path.insert(0, NoTorch())
try:
    import torch  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("the blocker let torch through")
"""

WITHOUT_TORCH = """
import pkgutil
import sys
from pathlib import Path

import bnexp.analysis
from bnexp import rundir
from bnexp.analysis import run_plots, tables, variants
from bnexp.cli import main

sweep, out = Path(sys.argv[1]), Path(sys.argv[2])
for info in pkgutil.walk_packages(bnexp.analysis.__path__, "bnexp.analysis."):
    __import__(info.name)  # every module of the package, not only those used below

run_dirs = rundir.find_runs([sweep])
runs, layers, metrics, warnings = tables.collect(run_dirs)
assert len(runs) == 9 and set(runs["status"]) == {"completed", "diverged", "running", "failed"}
assert variants.varying_keys(runs) == ["norm", "depth"]
assert len(run_plots.save_run_plots(run_dirs[0])) == len(run_plots.RUN_PLOT_NAMES)

code = main(["figures", str(sweep), "--out", str(out)])  # the real `bnexp figures` command
assert code == 0, code
assert "torch" not in sys.modules, sorted(m for m in sys.modules if m.startswith("torch"))
print("ok")
"""


def test_analysis_reads_and_draws_runs_with_torch_unimportable(tmp_path):
    sweep = write_sweep(tmp_path / "sweep")
    out = tmp_path / "figures"
    code = textwrap.dedent(BLOCK_TORCH) + textwrap.dedent(WITHOUT_TORCH)
    result = subprocess.run(
        [sys.executable, "-c", code, str(sweep), str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("ok")
    for name in ("index.md", "runs.csv", "layers_all.csv", "test_acc_vs_step.png"):
        assert (out / name).is_file(), name


def test_the_torch_blocker_blocks(tmp_path):
    """The check above means something only if the blocker stops a module that needs torch."""
    code = textwrap.dedent(BLOCK_TORCH) + "import bnexp.run.train\n"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0 and "torch is blocked" in result.stderr


def test_a_run_directory_is_read_without_torch(tmp_path: Path):
    """bnexp.rundir alone (what the training side shares with every reader)."""
    code = textwrap.dedent(BLOCK_TORCH) + textwrap.dedent(
        """
        import sys
        from bnexp import rundir
        run = rundir.load_run(sys.argv[1])
        assert run.status == "completed" and not run.metrics.empty and not run.layers.empty
        assert tuple(run.layers.columns) == rundir.LAYERS_COLUMNS
        """
    )
    run_dir = write_sweep(tmp_path / "sweep") / "0"
    result = subprocess.run(
        [sys.executable, "-c", code, str(run_dir)], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
