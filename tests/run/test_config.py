"""The config: the real YAML composes against the schema; every bad input is a clear UserError."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from bnexp.errors import UserError
from bnexp.run.config import Config, config_hash, validate
from bnexp.run.overrides import check_overrides, split_command_line

from conftest import REPO, make_config, run_cli


def compose_config(overrides: list[str]) -> Config:
    with initialize_config_module(config_module="bnexp.configs", version_base="1.3"):
        return OmegaConf.to_object(compose("config", overrides=overrides))


def test_default_config_composes_to_the_documented_defaults():
    cfg = compose_config([])
    validate(cfg)
    assert (cfg.depth, cfg.width, cfg.batch_size, cfg.steps, cfg.seed) == (3, 100, 60, 5000, 0)
    assert (cfg.act.value, cfg.norm.name.value, cfg.placement.value, cfg.affine) == (
        "sigmoid",
        "batch",
        "pre",
        True,
    )
    assert (cfg.optim.name.value, cfg.optim.lr) == ("sgd", 0.1)
    assert (cfg.data.name.value, cfg.data.source.value, cfg.model.name.value) == (
        "mnist",
        "auto",
        "mlp",
    )


def test_headline_overrides_compose():
    cfg = compose_config(
        ["norm=none", "act=relu", "depth=10", "optim=adam", "placement=post", "affine=false"]
    )
    assert (cfg.norm.name.value, cfg.act.value, cfg.depth) == ("none", "relu", 10)
    assert cfg.optim.name.value == "adam" and cfg.optim.lr == pytest.approx(1e-3)
    assert cfg.placement.value == "post" and cfg.affine is False


@pytest.mark.parametrize(
    ("override", "must_mention"),
    [
        ("norm=foo", ["norm=foo", "batch", "noisy", "group", "layer", "none"]),
        ("act=foo", ["act=foo", "sigmoid", "relu", "tanh", "identity"]),
        ("placement=middle", ["placement=middle", "pre", "post"]),
        ("depth=abc", ["depth=abc", "integer"]),
        ("norm.momentum=x", ["norm.momentum=x", "number"]),
        ("affine=maybe", ["affine=maybe", "true or false"]),
        ("dept=3", ["dept", "depth"]),
        ("+foo=1", ["foo", "not a bnexp config key"]),
        ("data=imagenet", ["data=imagenet", "mnist", "cifar10"]),
        ("data.source=web", ["data.source=web", "auto", "torchvision", "bundled"]),
        ("depth=3,abc", ["depth=abc"]),  # a bad value inside a sweep
    ],
)
def test_bad_override_names_key_value_and_choices(override, must_mention):
    with pytest.raises(UserError) as caught:
        check_overrides([override])
    for text in must_mention:
        assert text in str(caught.value)


def test_good_overrides_and_sweeps_pass_the_check():
    check_overrides(
        [
            "norm=batch,none",
            "act=sigmoid,relu",
            "depth=3,10",
            "seed=range(2)",
            "hydra/launcher=joblib",
        ]
    )


@pytest.mark.parametrize(
    ("overrides", "must_mention"),
    [
        ({"depth": 0}, ["depth=0", ">= 1"]),
        ({"width": 0}, ["width=0"]),
        ({"steps": 0}, ["steps=0"]),
        ({"norm.name": "batch", "batch_size": 1}, ["batch_size=1", "norm=batch", "norm=group"]),
        ({"norm.name": "noisy", "batch_size": 1}, ["batch_size=1", "norm=noisy"]),
        ({"norm.noise_scale": 0.5}, ["norm.noise_scale=0.5", ">= 1"]),
        ({"norm.noise_shift": -1.0}, ["norm.noise_shift=-1.0", ">= 0"]),
        ({"norm.noise_scale": float("inf")}, ["norm.noise_scale=inf", "finite"]),
        ({"optim.lr": float("nan")}, ["optim.lr=nan", "finite"]),
        ({"norm.eps": float("inf")}, ["norm.eps=inf", "finite"]),
        ({"optim.lr": -0.1}, ["optim.lr=-0.1"]),
        ({"track_unit": 100}, ["track_unit=100", "[0, 99]"]),
        ({"log_every": 0}, ["log_every=0"]),
        ({"threads": -1}, ["threads=-1", ">= 1"]),
        ({"threads": 10**6}, ["threads=1000000", "between 1 and"]),
        ({"seed": -1}, ["seed=-1", "between 0 and"]),
        ({"seed": 2**63}, ["seed=9223372036854775808", "between 0 and"]),
        ({"probe_size": 0}, ["probe_size=0", ">= 1"]),
    ],
)
def test_impossible_values_and_combinations_are_rejected(overrides, must_mention):
    with pytest.raises(UserError) as caught:
        validate(make_config(**overrides))
    for text in must_mention:
        assert text in str(caught.value)


def test_flags_after_overrides_are_explained():
    with pytest.raises(UserError, match="before the overrides"):
        split_command_line(["norm=batch", "-m", "depth=3,10"])
    flags, overrides = split_command_line(["-m", "norm=batch,none", "depth=3"])
    assert flags == ["-m"] and overrides == ["norm=batch,none", "depth=3"]


def test_config_hash_changes_with_the_config_only():
    assert config_hash(make_config()) == config_hash(make_config())
    assert config_hash(make_config()) != config_hash(make_config(depth=4))
    assert config_hash(make_config(plots=True)) == config_hash(make_config(plots=False))


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ["norm=foo"],
        ["depth=0"],
        ["depth=abc"],
        ["dept=3"],
        ["norm=batch", "batch_size=1"],
        ["data=cifar10", "data.source=bundled"],
    ],
)
def test_cli_user_errors_exit_nonzero_without_traceback(tmp_path, args):
    result = run_cli(
        ["run", *args, f"hydra.run.dir={tmp_path}/run", "data.download=false", "steps=2"],
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert "bnexp: error:" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) <= 3


@pytest.mark.slow
def test_cli_help_and_cfg_job(tmp_path):
    top = run_cli(["--help"], cwd=tmp_path)
    assert top.returncode == 0 and "bnexp run" in top.stdout and "bnexp figures" in top.stdout
    run_help = run_cli(["run", "--help"], cwd=tmp_path)
    assert run_help.returncode == 0 and "norm" in run_help.stdout and "depth" in run_help.stdout
    cfg = run_cli(["run", "--cfg", "job", "norm=none", "depth=7"], cwd=tmp_path)
    assert cfg.returncode == 0
    assert "depth: 7" in cfg.stdout and "name: none" in cfg.stdout


def test_configs_live_at_the_top_level_and_ship_as_package_data():
    assert (REPO / "configs" / "config.yaml").is_file()
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"bnexp.configs" = "configs"' in pyproject


def test_run_directory_names_are_safe_and_unique():
    from bnexp.run.outdir import slug

    assert slug("") == "base"
    assert slug("norm=batch,depth=10") == "norm=batch,depth=10"
    assert "/" not in slug("hydra/launcher=joblib,data.root=/tmp/x")
    long_a, long_b = "x=" + "a" * 200 + ",seed=0", "x=" + "a" * 200 + ",seed=1"
    assert slug(long_a) != slug(long_b) and len(slug(long_a)) <= 120


def test_noise_keys_enter_the_config_hash_only_for_the_noisy_norm():
    base, moved = make_config(), make_config(**{"norm.noise_shift": 0.3})
    assert config_hash(base) == config_hash(moved)  # norm=batch: the noise cannot matter
    noisy = make_config(**{"norm.name": "noisy"})
    assert config_hash(noisy) != config_hash(
        make_config(**{"norm.name": "noisy", "norm.noise_shift": 0.3})
    )
