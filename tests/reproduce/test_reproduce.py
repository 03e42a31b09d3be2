"""`bnexp reproduce`: configs compose, arguments parse, and one finding runs end to end."""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from bnexp import rundir
from bnexp.errors import UserError
from bnexp.reproduce.cli import parse_args, print_list
from bnexp.reproduce.findings import SCALES, load_findings
from bnexp.reproduce.options import Options
from bnexp.reproduce.overrides import (
    BASE_OVERRIDES,
    compose_config,
    expand_overrides,
    merge_overrides,
)
from bnexp.reproduce.reproducer import Reproducer
from bnexp.reproduce.sweeps import sweep_key
from bnexp.run.config import Config, validate

CONFIGS = importlib.resources.files("bnexp.configs")
EXPERIMENTS = sorted(
    p.name[: -len(".yaml")] for p in (CONFIGS / "experiment").iterdir() if p.name.endswith(".yaml")
)
SCALING = sorted(
    p.name[: -len(".yaml")]
    for p in (CONFIGS / "experiment" / "batch_size_scaling").iterdir()
    if p.name.endswith(".yaml")
)
FINDINGS = load_findings()


def composed(overrides: list[str]) -> Config:
    with initialize_config_module(config_module="bnexp.configs", version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    config = OmegaConf.to_object(cfg)
    validate(config)
    return config


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_config_composes_and_validates(experiment):
    config = composed([f"experiment={experiment}"])
    assert isinstance(config, Config)


@pytest.mark.parametrize("option", SCALING)
def test_batch_size_options_scale_the_learning_rate_linearly(option):
    config = composed(["experiment=batch-size", f"+experiment/batch_size_scaling={option}"])
    assert config.model.name.value == "cnn"
    assert config.optim.lr == pytest.approx(0.1 * config.batch_size / 256)
    images = 60_000 if option.startswith("p") else 8_000
    assert (
        config.steps * config.batch_size == images
    )  # the same number of images at every batch size


def test_every_experiment_has_a_finding_and_every_finding_an_experiment():
    used = {f.experiment for f in FINDINGS.values()}
    assert used == set(EXPERIMENTS)


@pytest.mark.parametrize("name", sorted(FINDINGS))
@pytest.mark.parametrize("scale", SCALES)
def test_every_scale_of_every_finding_composes(name, scale):
    finding = FINDINGS[name]
    overrides = merge_overrides(BASE_OVERRIDES, finding.scales[scale].overrides)
    combos = expand_overrides(overrides)
    config = compose_config(finding.experiment, combos[0])
    assert isinstance(config, Config)
    if scale == "quick" and not finding.procedure:
        assert finding.scales["quick"].minutes <= finding.scales["paper"].minutes


def test_paper_scale_is_the_published_figure1_setup():
    config = compose_config("fig1", [])
    assert (config.depth, config.width, config.act.value, config.batch_size, config.steps) == (
        3,
        100,
        "sigmoid",
        60,
        50_000,
    )
    assert config.data.binarize and config.placement.value == "pre"


def test_overrides_merge_and_expand():
    assert merge_overrides(["plots=false", "steps=10"], ["steps=20", "+experiment/x=a"]) == [
        "plots=false",
        "steps=20",
        "+experiment/x=a",
    ]
    assert expand_overrides(["seed=0,1", "steps=5"]) == [
        ["seed=0", "steps=5"],
        ["seed=1", "steps=5"],
    ]
    assert expand_overrides([]) == [[]]
    assert sweep_key("quick", []) == "quick"
    assert sweep_key("quick", ["steps=5"]) != sweep_key("quick", ["steps=6"])


def test_parse_args():
    known = list(FINDINGS)
    options = parse_args(["fig1", "--out", "x", "scale=paper", "steps=10", "--jobs", "1"], known)
    assert (
        options.names == ["fig1"] and options.scale == "paper" and options.overrides == ["steps=10"]
    )
    assert options.jobs == 1 and options.out_text == "x"
    assert parse_args(["all"], known).names == known
    for bad in (
        ["fig2"],
        [],
        ["fig1", "scale=huge"],
        ["fig1", "--out"],
        ["fig1", "--jobs", "0"],
        ["fig1", "--bogus"],
    ):
        with pytest.raises(UserError):
            parse_args(bad, known)


def test_list_counts_identity_checks_apart_and_leaves_out_retired_claims(capsys):
    print_list(FINDINGS)
    listed = capsys.readouterr().out
    assert "1 claim, 3 identity checks" in listed  # scale-invariance
    assert "2 claims, 1 identity check;" in listed  # running-stats
    assert "mean |dL/dW| of the top layer" not in listed  # gradient-flow's retired claims
    assert "(identity check) (identity check)" not in listed


def test_bad_override_is_one_clear_error():
    with pytest.raises(UserError, match="experiment=fig1"):
        compose_config("fig1", ["depthh=3"])


# --------------------------------------------------------------------------------------------
# End to end through the real CLI (subprocesses: Hydra configures logging)
# --------------------------------------------------------------------------------------------


def bnexp(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from bnexp.cli import entry; entry()", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_list_and_user_errors():
    listed = bnexp("reproduce", "--list")
    assert listed.returncode == 0
    for name in FINDINGS:
        assert name in listed.stdout
    unknown = bnexp("reproduce", "fig2")
    assert unknown.returncode == 2
    assert "unknown finding 'fig2'" in unknown.stderr and "Traceback" not in unknown.stderr


@pytest.mark.slow
def test_scale_invariance_end_to_end(tmp_path):
    result = bnexp(
        "reproduce", "scale-invariance", "--out", str(tmp_path), "data.source=bundled", "steps=20"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = tmp_path / "scale-invariance"
    report = (out / "REPORT.md").read_text()
    assert "## Verdicts" in report and "bundled MNIST subset" in report
    assert "could not be drawn" not in report
    claims = pd.read_csv(out / "claims.csv").set_index("claim_id")
    # The eps = 0 algebra is reported as identity checks, never as reproduced claims.
    identities = claims[claims["kind"] == "identity"]
    assert sorted(identities.index) == ["forward", "input-jacobian", "weight-gradient"]
    assert set(identities["verdict"]) == {"identity holds"}
    assert "3 identity checks hold" in report
    # torch's own layer, with what its eps predicts (independent of bnexp's measure): at
    # a = 1e-4 every unit has a·sigma << sqrt(eps) = 3.2e-3, so BN((aW)u) = a(z - mu) / sqrt(eps)
    # is ~0 and the forward error vs a = 1 is ~1; at a = 1 it is exactly 0.
    table = pd.read_csv(out / "tables" / "scale_invariance.csv")
    real = table[(table["layer"] == "torch") & (table["check"] == "forward")].set_index("a")
    assert real.loc[real.index.min(), "rel_error"] > 0.9
    assert real.loc[1.0, "rel_error"] == 0.0
    formula = table[table["layer"] == "formula"]
    assert formula["rel_error"].max() < 1e-12
    in_range = table[(table["layer"] == "torch") & table["a"].between(1, 100)]
    assert claims.loc["real-layer-scaled-up", "value"] == pytest.approx(in_range["rel_error"].max())
    assert is_png(out / "figures" / "scale_invariance.png")


# --------------------------------------------------------------------------------------------
# A constructed case: runs and tables written by hand, so that every verdict is known
# --------------------------------------------------------------------------------------------

RUN_CONFIG = """\
data: {{name: mnist, source: auto, root: ~/.cache/bnexp/data, binarize: true, augment: false, download: true}}
model: {{name: mlp}}
norm: {{name: {norm}, momentum: 0.1, eps: 1.0e-05}}
optim: {{name: sgd, lr: 0.1, momentum: 0.0, weight_decay: 0.0}}
depth: {depth}
width: 100
act: {act}
placement: {placement}
affine: true
init: gaussian
batch_size: 60
steps: 100
seed: {seed}
plots: false
"""


def write_job(
    job: Path,
    *,
    final_acc: float,
    layers: dict[str, list[float]] | None = None,
    norm: str = "batch",
    act: str = "sigmoid",
    placement: str = "pre",
    seed: int = 0,
) -> Path:
    """A completed run directory as `bnexp run` writes it: accuracy rising from 10% to
    `final_acc` by step 50 and flat after; `layers`: per column, one value per hidden layer."""
    depth = len(next(iter(layers.values()))) if layers else 3
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "config.yaml").write_text(
        RUN_CONFIG.format(norm=norm, depth=depth, act=act, placement=placement, seed=seed)
    )
    (job / "meta.json").write_text(
        json.dumps(
            {
                "status": "completed",
                "steps_done": 100,
                "data_source": "bundled-mnist5k",
                "train_size": 4000,
                "test_size": 1000,
                "wall_seconds": 1.0,
                "steps_per_second": 100.0,
            }
        )
    )
    steps = list(range(0, 101, 10))
    accuracy = [0.1 + (final_acc - 0.1) * min(1.0, s / 50) for s in steps]
    metrics = pd.DataFrame({c: [float("nan")] * len(steps) for c in rundir.METRICS_COLUMNS})
    metrics["step"], metrics["test_acc"], metrics["train_loss"] = steps, accuracy, 0.5
    metrics.to_csv(job / "metrics.csv", index=False, na_rep="")
    rows = []
    for step in steps:
        for layer in range(1, depth + 1):
            row = {c: float("nan") for c in rundir.LAYERS_COLUMNS}
            row.update({"step": step, "layer": layer})
            row.update({c: values[layer - 1] for c, values in (layers or {}).items()})
            rows.append(row)
    pd.DataFrame(rows, columns=list(rundir.LAYERS_COLUMNS)).to_csv(
        job / "layers.csv", index=False, na_rep=""
    )
    return job


def write_sweep(out: Path, experiment: str, jobs: list[dict]) -> None:
    sweep_dir = out / "runs" / experiment / "quick"
    paths = [str(write_job(sweep_dir / str(i), **job)) for i, job in enumerate(jobs)]
    manifest = {
        "experiment": experiment,
        "overrides": [],
        "command": f"bnexp run -m experiment={experiment}",
        "jobs": paths,
        "seconds": 1.0,
    }
    (sweep_dir / "reproduce_jobs.json").write_text(json.dumps(manifest))


def write_tables(out: Path, finding: str, tables: dict[str, pd.DataFrame]) -> None:
    folder = out / finding / "tables"
    folder.mkdir(parents=True)
    for name, table in tables.items():
        table.to_csv(folder / f"{name}.csv", index=False)
    meta = {
        "data_source": "bundled-mnist5k",
        "train_size": 4000,
        "test_size": 1000,
        "notes": [],
        "tables": sorted(tables),
        "overrides": [],
        "seconds": 1.0,
    }
    (folder / "meta.json").write_text(json.dumps(meta))


def test_report_only_on_a_constructed_case_gives_the_known_verdicts(tmp_path):
    """Every verdict below follows by hand from the numbers written here; the summary line
    counts identity checks and retired claims apart from the claims."""
    out = tmp_path
    # placement: sigmoid post - pre = +0.5, +0.6, +0.7 points: 95% interval 0.6 +- 4.303 * 0.1 /
    # sqrt(3) = [0.35, 0.85], inside [-3, 3]; relu: +8, +9, +10: [6.5, 11.5], outside.
    jobs = []
    for seed, (sig, relu) in enumerate(((0.5, 8), (0.6, 9), (0.7, 10))):
        jobs += [
            {"act": "sigmoid", "placement": "pre", "seed": seed, "final_acc": 0.90},
            {"act": "sigmoid", "placement": "post", "seed": seed, "final_acc": 0.90 + sig / 100},
            {"act": "relu", "placement": "pre", "seed": seed, "final_acc": 0.80},
            {"act": "relu", "placement": "post", "seed": seed, "final_acc": 0.80 + relu / 100},
        ]
    write_sweep(out, "placement", jobs)
    # gradient-flow: ||dL/dW|| falls 10x per layer without BN (layer 10 / layer 1 = 1e9) and
    # spans 1.0 ... 2.0 with BN (max/min 2): both current claims reproduced. The retired
    # claims read mean |dL/dW|, flat in both (ratio 1: the retired `vanishes` fails).
    write_sweep(
        out,
        "gradient-flow",
        [
            {
                "norm": "none",
                "final_acc": 0.5,
                "layers": {
                    "grad_w_norm": [10.0 ** (k - 10) for k in range(1, 11)],
                    "grad_w_mean_abs": [1e-3] * 10,
                },
            },
            {
                "norm": "batch",
                "final_acc": 0.9,
                "layers": {
                    "grad_w_norm": [1.0 + k / 9 for k in range(10)],
                    "grad_w_mean_abs": [1e-3] * 10,
                },
            },
        ],
    )
    # running-stats: batch statistics at size 2 lose 40 points (>= 10: reproduced); running
    # statistics are the same at every size (identity holds); at size 1000 running - batch =
    # +0.1, +0.2, +0.3 points over 3 seeds: [-0.05, 0.45] inside [-1, 1] (reproduced).
    rows = []
    for seed, gap in enumerate((0.001, 0.002, 0.003)):
        for size, batch_acc in ((2, 0.5), (100, 0.85), (1000, 0.9 - gap)):
            rows += [
                {
                    "seed": seed,
                    "eval_batch_size": size,
                    "mode": "running",
                    "accuracy": 0.9,
                    "images": 1000,
                },
                {
                    "seed": seed,
                    "eval_batch_size": size,
                    "mode": "batch",
                    "accuracy": batch_acc,
                    "images": 1000,
                },
            ]
    write_tables(out, "running-stats", {"eval_batch_size": pd.DataFrame(rows)})
    # scale-invariance: torch's layer within 5e-3 for a in [1, 100] (reproduced); the formula's
    # forward and input Jacobian at 1e-15 (identities hold), its weight gradient at 1e-6 (fails).
    rows = []
    for a in (1e-4, 0.01, 1.0, 10.0, 100.0):
        for check in ("forward", "input_jacobian", "weight_gradient"):
            formula = 0.0 if a == 1 else (1e-6 if check == "weight_gradient" else 1e-15)
            torch_error = {1e-4: 0.99, 0.01: 0.4, 1.0: 0.0, 10.0: 0.004, 100.0: 0.005}[a]
            rows += [
                {
                    "check": check,
                    "layer": "formula",
                    "a": a,
                    "eps": 0.0,
                    "rel_error": formula,
                    "a_sigma_min": a * 0.05,
                },
                {
                    "check": check,
                    "layer": "torch",
                    "a": a,
                    "eps": 1e-5,
                    "rel_error": torch_error,
                    "a_sigma_min": a * 0.05,
                },
            ]
    write_tables(out, "scale-invariance", {"scale_invariance": pd.DataFrame(rows)})

    names = ["placement", "gradient-flow", "running-stats", "scale-invariance"]
    result = bnexp("reproduce", *names, "--out", str(out), "--report-only")
    assert result.returncode == 0, result.stdout + result.stderr

    claims = pd.read_csv(out / "claims.csv")
    verdicts = dict(
        zip(claims["finding"] + "/" + claims["claim_id"], claims["verdict"], strict=True)
    )
    assert verdicts == {
        "placement/small-sigmoid": "reproduced",
        "placement/small-relu": "not reproduced",
        "gradient-flow/vanishes-without-bn-norm": "reproduced",
        "gradient-flow/flat-with-bn-norm": "reproduced",
        "gradient-flow/vanishes-without-bn": "not reproduced",
        "gradient-flow/flat-with-bn": "reproduced",
        "running-stats/batch-stats-fail-small": "reproduced",
        "running-stats/running-stable": "identity holds",
        "running-stats/large-batch-agrees": "reproduced",
        "scale-invariance/real-layer-scaled-up": "reproduced",
        "scale-invariance/forward": "identity holds",
        "scale-invariance/input-jacobian": "identity holds",
        "scale-invariance/weight-gradient": "identity fails",
    }
    values = dict(zip(claims["finding"] + "/" + claims["claim_id"], claims["value"], strict=True))
    assert values["placement/small-sigmoid"] == pytest.approx(0.6)
    assert values["placement/small-relu"] == pytest.approx(9.0)
    assert values["gradient-flow/vanishes-without-bn-norm"] == pytest.approx(1e9)
    assert values["gradient-flow/flat-with-bn-norm"] == pytest.approx(2.0)
    assert values["running-stats/large-batch-agrees"] == pytest.approx(0.2)
    assert values["scale-invariance/real-layer-scaled-up"] == pytest.approx(0.005)

    summary = (out / "REPORT.md").read_text()
    # the retired `vanishes-without-bn` fails, but it is not counted among the claims
    assert (
        "4 findings, **7 claims: 6 reproduced, 1 not reproduced, 0 inconclusive; "
        "4 identity checks: 3 hold, 1 fail; 2 retired claims (not counted)**." in summary
    )
    assert "✔ identity holds" in summary and "✘ identity fails" in summary
    assert "retired, not counted (was ❌ not reproduced)" in summary
    gradient = (out / "gradient-flow" / "REPORT.md").read_text()
    assert (
        "2 claims: 2 reproduced, 0 not reproduced, 0 inconclusive; 2 retired claims (not counted)."
        in gradient
    )
    assert "- retired: Compared mean |dL/dW| with a published table of gradient norms" in gradient
    scale = (out / "scale-invariance" / "REPORT.md").read_text()
    assert (
        "1 claim: 1 reproduced, 0 not reproduced, 0 inconclusive; 3 identity checks: 2 hold, 1 fail."
        in scale
    )
    for name in names:  # every figure was drawn: a figure that raises becomes a note
        report = (out / name / "REPORT.md").read_text()
        assert "could not be drawn" not in report, name
        for figure in FINDINGS[name].figures:
            assert is_png(out / name / "figures" / f"{figure}.png")


@pytest.mark.slow
def test_tiny_fig1_and_noisy_bn_end_to_end_and_rerun_skips(tmp_path):
    args = [
        "reproduce",
        "fig1",
        "fig1-dist",
        "noisy-bn",
        "--out",
        str(tmp_path),
        "--jobs",
        "2",
        "steps=40",
        "log_every=10",
        "eval_every=10",
        "seed=0",
        "data.source=bundled",
    ]
    first = bnexp(*args)
    assert first.returncode == 0, first.stdout + first.stderr
    for name, figure in (("fig1", "fig1"), ("fig1-dist", "fig1_dist"), ("noisy-bn", "noisy_bn")):
        report = (tmp_path / name / "REPORT.md").read_text()
        assert "| claim | published | criterion | ours | verdict |" in report
        assert "bnexp reproduce " + name in report
        assert is_png(tmp_path / name / "figures" / f"{figure}.png")
        assert "could not be drawn" not in report
        claims = pd.read_csv(tmp_path / name / "claims.csv")
        assert len(claims) == len(FINDINGS[name].claims)
    summary = (tmp_path / "REPORT.md").read_text()
    assert "| finding | claim | published | ours | verdict |" in summary
    assert summary.count("| [fig1") == len(FINDINGS["fig1"].claims) + len(
        FINDINGS["fig1-dist"].claims
    )
    runs = list((tmp_path / "runs" / "fig1").glob("*/*/meta.json"))
    assert len(runs) == 2  # fig1-dist read fig1's runs instead of training its own
    second = bnexp(*args[:3], *args[3:])
    assert second.returncode == 0
    # noisy-bn: BN, noisy BN, no BN and no BN + noise (norm=noise_only), one seed each.
    assert len(list((tmp_path / "runs" / "noisy-bn").glob("*/*/meta.json"))) == 4
    assert second.stdout.count("skipped (already completed)") == 2 + 4


def test_every_shipped_finding_has_the_modules_it_requires(tmp_path):
    """`requires: [cnn]` names bnexp.run modules; a name that no longer resolves (as bnexp.cnn
    did once the run package existed) would make the finding silently inconclusive."""
    reproducer = Reproducer(Options(names=[], out=tmp_path, out_text="out"), FINDINGS)
    assert any(f.requires for f in FINDINGS.values())
    for finding in FINDINGS.values():
        assert reproducer.unavailable(finding) is None, finding.name
    missing = dataclasses.replace(FINDINGS["batch-size"], requires=["no_such_module"])
    assert "NO_SUCH_MODULE not available" in reproducer.unavailable(missing)
