"""The Python API (bnexp/api.py): load_run, load_runs, run, steps_to_reach.

Reading is checked against the files themselves (read here with the csv module) and against
what `bnexp figures` writes; `bnexp.run` against the command line (same numbers, same error
messages)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pandas as pd
import pytest

import bnexp
from bnexp.describe import flatten_config
from bnexp.rundir import LAYER_STAT_COLUMNS, LAYERS_COLUMNS, METRICS_COLUMNS, this_host

from conftest import REPO, TINY, read_csv, run_cli
from synthetic_runs import write_run, write_sweep

# ---------------------------------------------------------------------------------------------
# import bnexp
# ---------------------------------------------------------------------------------------------


def test_import_bnexp_is_cheap_and_reading_never_loads_torch(tmp_path):
    write_run(tmp_path / "r")
    code = (
        "import sys, bnexp\n"
        "assert not {'torch', 'hydra', 'pandas', 'bnexp.api'} & set(sys.modules), sorted(sys.modules)\n"
        f"r = bnexp.load_run({str(tmp_path / 'r')!r}); t = bnexp.load_runs({str(tmp_path)!r})\n"
        "assert bnexp.steps_to_reach(t.metrics[t.metrics.run_dir == t.runs.run_dir[0]], 0.05) == 0\n"
        "t.claims_tables()\n"
        "assert 'torch' not in sys.modules and 'hydra' not in sys.modules\n"
        "assert callable(bnexp.run) and bnexp.UserError is __import__('bnexp.errors').errors.UserError\n"
        "import bnexp.run.config  # binds the subpackage to the name bnexp.run: still callable\n"
        "assert callable(bnexp.run)\n"
        "print(r.layers.shape, len(t.runs))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "(123,",
        f"{len(LAYERS_COLUMNS)})",
        "1",
    ]  # 41 log steps x 3 layers


def test_bnexp_run_is_callable_whichever_import_comes_first():
    """`bnexp.run` names the subpackage as soon as one of its modules is imported."""
    code = (
        "import bnexp.run.config, bnexp, inspect\n"
        "assert callable(bnexp.run) and bnexp.run.config.Config\n"
        "print(inspect.signature(bnexp.run))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "overrides" in done.stdout and "out" in done.stdout


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'lod_run'"):
        bnexp.lod_run  # noqa: B018


# ---------------------------------------------------------------------------------------------
# load_run
# ---------------------------------------------------------------------------------------------


def test_load_run_reads_the_contract_columns_dtypes_and_values(tmp_path):
    run_dir = write_run(tmp_path / "r", norm="none", depth=4, seed=3)
    run = bnexp.load_run(run_dir)
    assert isinstance(run, bnexp.Run) and run.path == run_dir
    assert tuple(run.layers.columns) == LAYERS_COLUMNS
    assert tuple(run.metrics.columns) == METRICS_COLUMNS
    assert run.layers["step"].dtype.kind == "i" and run.layers["layer"].dtype.kind == "i"
    assert all(run.layers[c].dtype == "float64" for c in LAYER_STAT_COLUMNS)
    assert run.config["norm"] == "none" and run.config["depth"] == 4 and run.config["seed"] == 3
    assert run.config["optim.lr"] == 0.1  # flat dotted keys, as `bnexp run` takes them
    assert run.meta["config_hash"] == "h3none4" and run.status == "completed"
    # Every cell as the file has it (an empty cell is NaN, never a number).
    rows = read_csv(run_dir / "layers.csv")
    assert len(rows) == len(run.layers) == 41 * 4
    for row, (_, parsed) in zip(rows, run.layers.iterrows()):
        for name in LAYERS_COLUMNS:
            if row[name] == "":
                assert math.isnan(parsed[name]), name
            else:
                assert parsed[name] == pytest.approx(float(row[name]), rel=1e-12), name


def test_load_run_calls_a_killed_run_stale_and_reads_meta_config_without_hydra(tmp_path):
    run_dir = write_run(tmp_path / "r", depth=2)
    (run_dir / ".hydra" / "config.yaml").unlink()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    meta = json.loads((run_dir / "meta.json").read_text())
    meta.update(
        status="running",
        pid=dead.pid,
        host=this_host(),
        started_at="2026-01-01T00:00:00",
        config={"depth": 2, "norm": {"name": "layer"}},
    )
    (run_dir / "meta.json").write_text(json.dumps(meta))
    run = bnexp.load_run(run_dir)
    assert run.status == "stale"
    assert run.config == {"depth": 2, "norm": "layer"}  # meta.json's copy, flattened


def test_load_run_reads_a_config_as_omegaconf_does(tmp_path):
    """rundir reads Hydra's config.yaml with libyaml (10x faster): the same values as OmegaConf."""
    from omegaconf import OmegaConf

    run_dir = write_run(tmp_path / "r")
    text = (run_dir / ".hydra" / "config.yaml").read_text()
    text += "extra: {a: 1e-5, b: ~, c: 2026-01-01, d: .inf, e: 1_000, f: '7', g: [1, 2.5]}\n"
    (run_dir / ".hydra" / "config.yaml").write_text(text)
    expected = flatten_config(OmegaConf.to_container(OmegaConf.create(text), resolve=True))
    config = bnexp.load_run(run_dir).config
    assert config == expected and config["extra.a"] == 1e-5 and config["extra.c"] == "2026-01-01"
    assert [type(config[k]) for k in ("depth", "extra.a", "affine")] == [int, float, bool]
    # Interpolations are resolved (by OmegaConf).
    (run_dir / ".hydra" / "config.yaml").write_text(text + "steps_again: ${steps}\n")
    assert bnexp.load_run(run_dir).config["steps_again"] == 1000


def test_load_run_turns_a_cell_that_is_no_number_into_nan(tmp_path):
    run_dir = write_run(tmp_path / "r")
    lines = (run_dir / "metrics.csv").read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace(lines[2].split(",")[1], "oops", 1)  # train_loss of row 2
    (run_dir / "metrics.csv").write_text("".join(lines))
    metrics = bnexp.load_run(run_dir).metrics
    assert math.isnan(metrics["train_loss"].iloc[1]) and metrics["train_loss"].notna().sum() == 40
    assert metrics["step"].dtype == "int64" and metrics["train_loss"].dtype == "float64"


# ---------------------------------------------------------------------------------------------
# load_runs
# ---------------------------------------------------------------------------------------------


def test_load_runs_gives_the_tables_bnexp_figures_writes(tmp_path):
    sweep = write_sweep(tmp_path / "sweep")
    tables = bnexp.load_runs(sweep)
    figures = run_cli(["figures", str(sweep), "--out", str(tmp_path / "figs")], cwd=tmp_path)
    assert figures.returncode == 0, figures.stderr

    assert tables.keys == ["norm", "depth"]
    # Byte for byte what `bnexp figures` wrote, when written with its CSV settings.
    runs_csv = (tmp_path / "figs" / "runs.csv").read_text()
    columns = runs_csv.splitlines()[0].split(",")
    assert list(tables.runs.columns[: len(columns)]) == columns
    assert tables.runs[columns].to_csv(index=False) == runs_csv
    # The other config keys follow, constant across the sweep.
    assert {"act", "width", "optim.lr", "norm.momentum"} <= set(tables.runs.columns)
    assert tables.runs["act"].nunique() == 1

    layers_csv = (tmp_path / "figs" / "layers_all.csv").read_text()
    assert list(tables.layers.columns) == ["run_dir", "norm", "depth", "seed", *LAYERS_COLUMNS]
    assert tables.layers.to_csv(index=False, float_format="%.6g") == layers_csv
    assert list(tables.metrics.columns) == ["run_dir", "norm", "depth", "seed", *METRICS_COLUMNS]


def test_load_runs_rows_are_each_runs_files_with_its_keys(tmp_path):
    sweep = write_sweep(tmp_path / "sweep")
    tables = bnexp.load_runs(sweep / "0", sweep)  # a run reached twice counts once
    assert len(tables.runs) == 9 and tables.runs["run_dir"].is_unique
    failed = tables.runs[tables.runs["status"] == "failed"]
    assert len(failed) == 1 and failed["run_dir"].iloc[0] not in set(tables.layers["run_dir"])
    for run_dir in ["0", "6"]:
        run = bnexp.load_run(sweep / run_dir)
        mine = tables.layers[tables.layers["run_dir"] == str(sweep / run_dir)]
        assert set(mine["norm"]) == {run.config["norm"]} and set(mine["seed"]) == {
            run.config["seed"]
        }
        pd.testing.assert_frame_equal(mine[list(LAYERS_COLUMNS)].reset_index(drop=True), run.layers)
        metrics = tables.metrics[tables.metrics["run_dir"] == str(sweep / run_dir)]
        assert len(metrics) == len(read_csv(sweep / run_dir / "metrics.csv"))
    assert any("running" in w for w in tables.warnings)


def test_load_runs_refuses_a_path_without_runs(tmp_path):
    with pytest.raises(bnexp.UserError, match="no such directory"):
        bnexp.load_runs(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(bnexp.UserError, match="no runs found under"):
        bnexp.load_runs(tmp_path / "empty")


# ---------------------------------------------------------------------------------------------
# Measures
# ---------------------------------------------------------------------------------------------


def test_steps_to_reach_on_a_curve_and_on_a_runs_metrics(tmp_path):
    curve = pd.Series([0.1, 0.5, 0.85, 0.8, 0.95], index=[0, 100, 200, 300, 400])
    assert bnexp.steps_to_reach(curve, 0.85) == 200
    assert bnexp.steps_to_reach(curve, 0.99) is None
    run = bnexp.load_run(write_run(tmp_path / "r"))
    tested = run.metrics.dropna(subset=["test_acc"])
    first = tested[tested["test_acc"] >= 0.5]["step"].iloc[0]  # by hand
    assert bnexp.steps_to_reach(run.metrics, 0.5) == first
    tables = bnexp.load_runs(write_sweep(tmp_path / "sweep"))
    with pytest.raises(ValueError, match="one run's metrics"):
        bnexp.steps_to_reach(tables.metrics, 0.5)


def test_claim_measures_run_on_loaded_tables_as_in_bnexp_reproduce(tmp_path):
    from bnexp.reproduce import claims
    from bnexp.reproduce.reproducer import tables_from_runs
    from bnexp.rundir import find_runs

    sweep = write_sweep(tmp_path / "sweep")
    where = {"fast": {"norm": "batch", "depth": 3}, "slow": {"norm": "none", "depth": 3, "seed": 0}}
    ours = claims.steps_to_reach_ratio(bnexp.load_runs(sweep).claims_tables(), **where)
    theirs = claims.steps_to_reach_ratio(tables_from_runs(find_runs([sweep]))[0], **where)
    assert ours.value == theirs.value and ours.text == theirs.text
    assert ours.value > 1  # synthetic BN learns faster


# ---------------------------------------------------------------------------------------------
# bnexp.run
# ---------------------------------------------------------------------------------------------

TINY_KW = dict(arg.split("=", 1) for arg in TINY)


@pytest.mark.slow
def test_run_from_a_fresh_directory_as_in_the_issue(tmp_path):
    code = "import bnexp; r = bnexp.run(['steps=200', 'data.source=bundled', 'plots=false']); print(r.layers.shape, r.status)"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    # 200 steps, a row every 2 steps (about 100 rows) and the final one: 101 rows x 3 layers.
    assert done.stdout.split() == ["(303,", f"{len(LAYERS_COLUMNS)})", "completed"]
    (run_dir,) = (tmp_path / "results" / "runs").glob("*/*")
    assert run_dir.name.endswith("_data.source=bundled,plots=false,steps=200")


@pytest.mark.slow
def test_run_gives_the_numbers_of_the_command_line(tmp_path):
    words = ["norm=none", "depth=2", *TINY]
    cli = run_cli(["run", *words, f"hydra.run.dir={tmp_path / 'cli'}"], cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr
    run = bnexp.run(words[:2], out=tmp_path / "api", **TINY_KW, plots=False)
    assert run.path == tmp_path / "api" and run.status == "completed"
    assert (run.path / ".hydra" / "config.yaml").is_file()
    assert run.config["norm"] == "none" and run.config["plots"] is False
    for name in ("layers.csv", "metrics.csv"):
        ours, theirs = read_csv(run.path / name), read_csv(tmp_path / "cli" / name)
        for row in ours + theirs:
            row.pop("elapsed_s", None)
        assert ours == theirs, name


def test_run_raises_the_command_lines_user_errors(tmp_path):
    for words in (["depht=3"], ["act=swish"]):
        cli = run_cli(["run", *words], cwd=tmp_path)
        assert cli.returncode == 2
        with pytest.raises(bnexp.UserError) as raised:
            bnexp.run(words, out=tmp_path / "x")
        assert f"bnexp: error: {raised.value}" == cli.stderr.strip().splitlines()[-1]
    with pytest.raises(bnexp.UserError, match="batch_size=1 is not allowed with norm=batch"):
        bnexp.run(["batch_size=1"], out=tmp_path / "bs1", **TINY_KW)
    meta = json.loads((tmp_path / "bs1" / "meta.json").read_text())
    assert meta["status"] == "failed"  # recorded, as on the command line


def test_run_refuses_sweeps_and_flags(tmp_path):
    with pytest.raises(bnexp.UserError, match="norm=batch,none is a sweep"):
        bnexp.run(["norm=batch,none"], out=tmp_path)
    with pytest.raises(bnexp.UserError, match="not command-line flags"):
        bnexp.run(["-m", "norm=batch"])
    with pytest.raises(bnexp.UserError, match="one configuration"):
        bnexp.run(depth=[3, 10])
    with pytest.raises(bnexp.UserError, match="out=... or hydra.run.dir"):
        bnexp.run([f"hydra.run.dir={tmp_path}"], out=tmp_path)
    assert not any(tmp_path.iterdir())


def test_run_keywords_dotted_keys_and_a_completed_run_is_not_run_again(tmp_path):
    out = tmp_path / "dir with, comma"
    run = bnexp.run(out=out, optim__lr=0.05, affine=False, **TINY_KW, plots=False)
    assert run.path == out and run.config["optim.lr"] == 0.05 and run.config["affine"] is False
    written = (out / "layers.csv").stat().st_mtime_ns
    again = bnexp.run(**{"optim.lr": 0.05}, affine=False, out=out, **TINY_KW, plots=False)
    assert (out / "layers.csv").stat().st_mtime_ns == written  # skipped: already completed
    pd.testing.assert_frame_equal(again.layers, run.layers)
