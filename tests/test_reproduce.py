"""`bnexp reproduce`: configs compose, arguments parse, and one finding runs end to end."""

from __future__ import annotations

import importlib.resources
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

import bnexp.cli  # noqa: F401 - registers the schema and resolvers before composing
from bnexp.config import Config, UserError, validate
from bnexp.findings import SCALES, load_findings
from bnexp.reproduce import (
    BASE_OVERRIDES,
    compose_config,
    expand_overrides,
    merge_overrides,
    parse_args,
    sweep_key,
)

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
        "plots=false", "steps=20", "+experiment/x=a",
    ]  # fmt: skip
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


def test_bad_override_is_one_clear_error():
    with pytest.raises(UserError, match="experiment=fig1"):
        compose_config("fig1", ["depthh=3"])


# --------------------------------------------------------------------------------------------
# End to end through the real CLI (subprocesses: Hydra configures logging)
# --------------------------------------------------------------------------------------------


def bnexp(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from bnexp.cli import entry; entry()", *args],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


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
    claims = pd.read_csv(out / "claims.csv")
    assert list(claims["verdict"]) == ["reproduced"] * 3  # exact identities hold after any training
    assert is_png(out / "figures" / "scale_invariance.png")


@pytest.mark.slow
def test_tiny_fig1_and_noisy_bn_end_to_end_and_rerun_skips(tmp_path):
    args = ["reproduce", "fig1", "fig1-dist", "noisy-bn", "--out", str(tmp_path), "--jobs", "2",
            "steps=40", "log_every=10", "eval_every=10", "seed=0", "data.source=bundled"]  # fmt: skip
    first = bnexp(*args)
    assert first.returncode == 0, first.stdout + first.stderr
    for name, figure in (("fig1", "fig1"), ("fig1-dist", "fig1_dist"), ("noisy-bn", "noisy_bn")):
        report = (tmp_path / name / "REPORT.md").read_text()
        assert "| claim | published | criterion | ours | verdict |" in report
        assert "bnexp reproduce " + name in report
        assert is_png(tmp_path / name / "figures" / f"{figure}.png")
        claims = pd.read_csv(tmp_path / name / "claims.csv")
        assert len(claims) == len(FINDINGS[name].claims)
        assert set(claims["verdict"]) <= {"reproduced", "not reproduced", "inconclusive"}
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
