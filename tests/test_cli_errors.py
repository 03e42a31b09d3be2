"""Bad input the run-side code must explain: key, value, valid choices, exit 2, no traceback."""

from __future__ import annotations

import pytest

from conftest import TINY, run_cli

pytestmark = pytest.mark.slow


def bad_inputs(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a directory")
    sweep = f"hydra.sweep.dir={tmp_path / 'sweep'}"
    return {
        "threads=-1": (["threads=-1"], ["threads=-1", ">= 1"]),
        "threads-too-many": (["threads=100000"], ["threads=100000", "between 1 and"]),
        "seed=-1": (["seed=-1"], ["seed=-1", "between 0 and"]),
        "probe-too-big": (["probe_size=5000"], ["probe_size=5000", "only 1000", "between 1 and 1000"]),
        "run-dir": ([f"hydra.run.dir={a_file}/x"], [f"hydra.run.dir={a_file}/x", "cannot be created"]),
        "sweep-dir": (["-m", f"hydra.sweep.dir={a_file}/x", "depth=2,3"],
                      [f"hydra.sweep.dir={a_file}/x", "cannot be created"]),
        "comma-list-without-m": (["norm=batch,none"],
                                 ["norm=batch,none", "norm several values",
                                  "use `bnexp run -m ...` to sweep a comma list"]),
        "n_jobs=0": (["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=0", sweep, "depth=2,3"],
                     ["hydra.launcher.n_jobs=0", ">= 1"]),
    }  # fmt: skip


@pytest.mark.parametrize(
    "case",
    [
        "threads=-1",
        "threads-too-many",
        "seed=-1",
        "probe-too-big",
        "run-dir",
        "sweep-dir",
        "n_jobs=0",
        "comma-list-without-m",
    ],
)
def test_bad_run_inputs_are_user_errors(tmp_path, case):
    args, must_mention = bad_inputs(tmp_path)[case]
    flags = [a for a in args if a.startswith("-")]
    overrides = [a for a in args if not a.startswith("-")]
    if not any(a.startswith(("hydra.run.dir", "hydra.sweep.dir")) for a in args):
        overrides.append(f"hydra.run.dir={tmp_path / 'run'}")
    result = run_cli(["run", *flags, *TINY, *overrides], cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert "bnexp: error:" in result.stderr
    for text in must_mention:
        assert text in result.stderr, (text, result.stderr)


def test_figures_into_an_output_directory_that_cannot_be_made_is_a_user_error(tmp_path):
    run_dir = tmp_path / "run"
    assert (
        run_cli(["run", *TINY, "plots=false", f"hydra.run.dir={run_dir}"], cwd=tmp_path).returncode
        == 0
    )
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    result = run_cli(["figures", str(run_dir), "--out", f"{a_file}/figs"], cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"--out={a_file}/figs" in result.stderr and "cannot be created" in result.stderr
