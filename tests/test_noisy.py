"""Noisy BN (norm=noisy) and its noise without BN (norm=noise_only): Santurkar et al. 2018's
per-activation noise (arXiv 1805.11604v3, Appendix A.2.1 and Algorithm 1), its RNG convention,
its expectation in eval mode, and runs that do not depend on how often they log."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from scipy import stats as scipy_stats
from torch import nn

from bnexp.errors import UserError
from bnexp.reproduce.claims import MEASURES, Tables
from bnexp.reproduce.findings import load_findings
from bnexp.run.config import config_hash, validate
from bnexp.run.layers import (
    ActivationNoise,
    NoisyBatchNorm1d,
    NoisyBatchNorm2d,
    hidden_blocks,
    make_norm,
    noise_generator,
)
from bnexp.run.models import build_model
from bnexp.run.records import LAYERS_COLUMNS, METRICS_COLUMNS
from bnexp.run.train import train

from conftest import REPO, make_config

PAPER = {
    "noise_shift": 0.5,
    "noise_scale": 1.25,
    "noise_shift_jitter": 0.1,
    "noise_scale_jitter": 0.1,
}


def noise_only(channels: int, spatial: bool = False, seed: int = 0, layer: int = 1, **noise):
    layer_module = make_norm(
        "noise_only", channels, spatial=spatial, affine=False, **{**PAPER, **noise}
    )
    layer_module.noise_seed, layer_module.noise_layer = seed, layer
    return layer_module


def shift_and_scale(
    n: int, channels: int, steps: int, **noise
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-activation shift m and scale s of `steps` training steps, read off the real forward
    pass: with input 0 the noise layer returns m, with input 1 it returns s + m (a twin layer of
    the same seed and index draws the same noise). Shapes: steps x n x channels."""
    zeros_layer, ones_layer = noise_only(channels, **noise), noise_only(channels, **noise)
    x0, x1 = (
        torch.zeros(n, channels, requires_grad=True),
        torch.ones(n, channels, requires_grad=True),
    )
    m = torch.stack([zeros_layer(x0).detach() for _ in range(steps)])
    s = torch.stack([ones_layer(x1).detach() for _ in range(steps)]) - m
    return m.double(), s.double()


# --------------------------------------------------------------------------------------------
# The noise model
# --------------------------------------------------------------------------------------------


def test_each_sample_of_a_unit_gets_its_own_noise():
    m, s = shift_and_scale(n=200, channels=8, steps=1)
    # Per unit, the samples' shifts and scales vary around the step's mu and sigma (jitters 0.1):
    # the std of U(-0.1, 0.1) is 0.0577, of N(0, 0.1^2) 0.1.
    shift_std, scale_std = m[0].std(0), s[0].std(0)
    assert torch.allclose(shift_std, torch.full_like(shift_std, 0.2 / math.sqrt(12)), rtol=0.2)
    assert torch.allclose(scale_std, torch.full_like(scale_std, 0.1), rtol=0.2)
    assert len(torch.unique(m[0][:, 0])) == 200 and len(torch.unique(s[0][:, 0])) == 200


def test_the_per_unit_distribution_changes_every_step():
    m, s = shift_and_scale(n=400, channels=16, steps=3)
    mu, sigma = m.mean(1), s.mean(1)  # steps x channels: each step's per-unit centre
    for a, b in ((0, 1), (1, 2)):
        # Two independent U(-0.5, 0.5) draws differ by ~0.33 on average; the centre of 400
        # samples is known to 0.003, so a change below 0.01 in every unit would be a repeat.
        assert (mu[a] - mu[b]).abs().max() > 0.1 and (sigma[a] - sigma[b]).abs().max() > 0.05
    # Different units get different centres within a step.
    assert mu[0].std() > 0.1 and sigma[0].std() > 0.03


def test_noise_follows_algorithm_1_over_many_draws():
    """The drawn shifts and scales against the declared distribution, moment by moment and by
    Kolmogorov-Smirnov tests: mu ~ U(-0.5, 0.5), sigma ~ U(1, 1.25) per unit and step,
    m - mu ~ U(-0.1, 0.1), s - sigma ~ N(0, 0.1^2) per activation."""
    m, s = shift_and_scale(n=2000, channels=50, steps=40)
    # The centres, estimated from 2,000 samples each: mu as the mid-range of its uniform shifts
    # (error ~1e-4), sigma as the mean of its normal scales (error ~0.002).
    mu, sigma = (m.amax(1) + m.amin(1)) / 2, s.mean(1)
    assert mu.abs().max() <= 0.5 + 0.01 and mu.min() < -0.45 and mu.max() > 0.45
    assert sigma.min() >= 1 - 0.01 and sigma.max() <= 1.25 + 0.01
    assert abs(mu.mean() - 0.0) < 0.02 and abs(mu.var() - 1 / 12) < 0.01
    assert abs(sigma.mean() - 1.125) < 0.005 and abs(sigma.var() - 0.25**2 / 12) < 0.001
    assert scipy_stats.kstest(mu.flatten().numpy(), "uniform", args=(-0.5, 1.0)).pvalue > 1e-3
    assert scipy_stats.kstest(sigma.flatten().numpy(), "uniform", args=(1.0, 0.25)).pvalue > 1e-3
    # Around the centres: exact bounds for the uniform shift, and the normal scale's moments.
    # (The centres are estimates, so the residual of each unit is taken around its own draws.)
    shift_residual = m - mu.unsqueeze(1)
    scale_residual = s - sigma.unsqueeze(1)
    assert shift_residual.abs().max() <= 0.1 + 0.001
    assert abs(shift_residual.var() - 0.2**2 / 12) < 1e-4
    assert abs(scale_residual.std() - 0.1) < 0.002
    sample = scale_residual.flatten()[::37].numpy()
    assert scipy_stats.kstest(sample / 0.1, "norm").pvalue > 1e-3
    assert (
        scipy_stats.kstest(
            shift_residual.flatten()[::37].numpy(), "uniform", args=(-0.1, 0.2)
        ).pvalue
        > 1e-3
    )


def test_feature_maps_get_noise_per_sample_channel_and_position():
    layer = make_norm("noisy", 3, spatial=True, affine=False, **PAPER)
    assert isinstance(layer, NoisyBatchNorm2d)
    twin = make_norm("noise_only", 3, spatial=True, affine=False, **PAPER)
    m = twin(torch.zeros(4, 3, 5, 5, requires_grad=True)).detach()
    # "treating the height and width dimensions as part of the batch": every position differs.
    assert len(torch.unique(m[0, 0])) == 25 and len(torch.unique(m[:, 0, 2, 2])) == 4
    per_channel = m.mean(dim=(0, 2, 3))
    assert per_channel.std() > 0 and (m - per_channel.view(1, 3, 1, 1)).abs().max() < 0.2 + 1e-6


def test_the_noise_follows_bn_and_its_affine_parameters():
    torch.manual_seed(0)
    noisy = make_norm("noisy", 20, spatial=False, affine=True, **PAPER)
    assert isinstance(noisy, NoisyBatchNorm1d)
    with torch.no_grad():
        noisy.weight.uniform_(0.5, 2.0)
        noisy.bias.uniform_(-1, 1)
    twin = noise_only(20)
    twin.noise_seed, twin.noise_layer = noisy.noise_seed, noisy.noise_layer
    x = torch.randn(64, 20) * 3 + 2
    bn = nn.functional.batch_norm(x, None, None, noisy.weight, noisy.bias, training=True)
    zeros, ones = torch.zeros_like(bn), torch.ones_like(bn)
    m = twin(zeros.requires_grad_())  # step 0 of the twin: the same draws as noisy's step 0
    twin.noise_steps = 0
    s = twin(ones.requires_grad_()) - m
    assert torch.allclose(noisy(x.requires_grad_()), bn * s + m, atol=1e-5)


def test_zero_jitter_gives_one_scale_and_shift_per_unit_for_the_whole_batch():
    m, s = shift_and_scale(
        n=50, channels=6, steps=2, noise_shift_jitter=0.0, noise_scale_jitter=0.0
    )
    assert torch.equal(m, m[:, :1].expand_as(m)) and torch.equal(s, s[:, :1].expand_as(s))
    assert not torch.equal(m[0], m[1])


# --------------------------------------------------------------------------------------------
# Random numbers: the convention written in _NoisyAfter's docstring
# --------------------------------------------------------------------------------------------


def test_draws_follow_the_documented_rng_convention_exactly():
    """Re-derives the output of step t and of a probe pass at step t from the docstring's
    recipe (hashlib + torch's CPU generator), without the layer's own drawing code."""

    def generator(seed, layer, step, stream):
        digest = hashlib.sha256(f"bnexp-noise:{seed}:{layer}:{step}:{stream}".encode()).digest()
        return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)

    def expected(a, seed, layer, step, stream):
        c = a.shape[1]
        g = generator(seed, layer, step, "train")
        mu = 0.5 * (2 * torch.rand(c, generator=g) - 1)
        sigma = 1 + 0.25 * torch.rand(c, generator=g)
        if stream == "probe":
            g = generator(seed, layer, step, "probe")
        u, z = torch.rand(a.shape, generator=g), torch.randn(a.shape, generator=g)
        return a * (sigma + 0.1 * z) + (mu + 0.1 * (2 * u - 1))

    layer = noise_only(7, seed=11, layer=3)
    batch, probe = torch.randn(5, 7, requires_grad=True), torch.randn(9, 7)
    for step in range(3):
        assert torch.equal(layer(batch).detach(), expected(batch.detach(), 11, 3, step, "train"))
        with torch.no_grad():  # the probe pass: step `step`'s distribution, its own draws
            assert torch.equal(layer(probe), expected(probe, 11, 3, step, "probe"))
    assert layer.noise_steps == 3
    fresh = noise_only(7, seed=11, layer=3)
    with torch.no_grad():  # a probe before any training pass sees step 0
        assert torch.equal(fresh(probe), expected(probe, 11, 3, 0, "probe"))
    assert fresh.noise_steps == 0


def test_noise_never_touches_the_global_generator_and_is_seeded_per_run_and_layer():
    state = torch.get_rng_state()
    x = torch.randn(10, 4, requires_grad=True)
    state = torch.get_rng_state()
    out = noise_only(4, seed=1, layer=1)(x)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(out, noise_only(4, seed=1, layer=1)(x))
    assert not torch.equal(out, noise_only(4, seed=2, layer=1)(x))
    assert not torch.equal(out, noise_only(4, seed=1, layer=2)(x))
    assert (
        noise_generator(1, 1, 0, "train").initial_seed()
        != noise_generator(1, 1, 0, "probe").initial_seed()
    )


def test_build_model_numbers_the_noise_layers_like_layers_csv():
    for norm in ("noisy", "noise_only"):
        cfg = make_config(depth=3, width=8, seed=5, **{"norm.name": norm})
        blocks = hidden_blocks(build_model(cfg, (1, 28, 28), 10))
        assert [(b.norm.noise_seed, b.norm.noise_layer) for b in blocks] == [(5, 1), (5, 2), (5, 3)]
    cnn = make_config(depth=2, width=4, seed=7, **{"model.name": "cnn", "norm.name": "noisy"})
    blocks = hidden_blocks(build_model(cnn, (1, 28, 28), 10))
    assert [(b.norm.noise_seed, b.norm.noise_layer) for b in blocks] == [(7, 1), (7, 2)]


def test_probe_pass_keeps_the_step_count_and_repeats_its_noise():
    layer = make_norm("noisy", 10, spatial=False, affine=True, **PAPER)
    batch = torch.randn(30, 10, requires_grad=True)
    probe = torch.randn(50, 10)
    layer(batch)
    with torch.no_grad():
        first, second = layer(probe), layer(probe)
    assert torch.equal(first, second) and layer.noise_steps == 1
    # The probe sees this step's per-unit centres: its shift around them stays within r_mu.
    twin = noise_only(10)
    twin.noise_seed, twin.noise_layer = layer.noise_seed, layer.noise_layer
    twin(torch.zeros(1, 10, requires_grad=True))  # step 0, as the training pass
    with torch.no_grad():
        probe_shift = twin(torch.zeros(50, 10))
        scale, shift = twin.draw((2000, 10), torch.float32, 0, "train")
    mu = shift.mean(0)
    assert (probe_shift - mu).abs().max() < 0.1 + 0.01
    assert not torch.equal(probe_shift[:30], twin.draw((30, 10), torch.float32, 0, "train")[1])


# --------------------------------------------------------------------------------------------
# Eval mode
# --------------------------------------------------------------------------------------------


def test_eval_mode_replaces_the_noise_by_its_expectation():
    torch.manual_seed(0)
    noisy = make_norm("noisy", 12, spatial=False, affine=True, **PAPER)
    x = torch.randn(256, 12) * 2 + 1
    noisy(x.requires_grad_())  # one training step moves the running statistics
    noisy.eval()
    clean = nn.functional.batch_norm(
        x, noisy.running_mean, noisy.running_var, noisy.weight, noisy.bias, training=False
    )
    assert torch.allclose(noisy(x), clean * 1.125, atol=1e-6)
    assert noisy.noise_steps == 1  # eval passes are not steps
    # The expectation is the average of the training-mode outputs: E[s a + m] = 1.125 a.
    layer = noise_only(5)
    a = torch.tensor([[-2.0, -0.5, 0.0, 0.7, 3.0]], requires_grad=True)
    average = torch.stack([layer(a).detach() for _ in range(4000)]).double().mean(0)
    # std of one output <= 0.1*3 + 0.3 (scale) + 0.29 (shift), so the mean of 4,000 is within ~0.04.
    assert torch.allclose(average, 1.125 * a.detach().double(), atol=0.04)
    layer.eval()
    assert torch.allclose(layer(a), 1.125 * a)


# --------------------------------------------------------------------------------------------
# Runs: determinism, no dependence on log_every, the plain network's bias
# --------------------------------------------------------------------------------------------


def collect(cfg, data):
    metrics, layers = [], []
    train(cfg, data, lambda m, rows: (metrics.append(m), layers.extend(rows)))
    return metrics, layers


@pytest.mark.parametrize("norm", ["noisy", "noise_only"])
def test_training_does_not_depend_on_how_often_it_logs(bundled_data, norm):
    def run(log_every):
        cfg = make_config(depth=2, width=12, steps=20, log_every=log_every, eval_every=5,
                          probe_size=40, **{"norm.name": norm})  # fmt: skip
        return collect(cfg, bundled_data)

    (m1, l1), (m5, l5) = run(1), run(5)
    shared = {0, 5, 10, 15, 20}
    rows1 = {(r[0], r[1]): r for r in l1 if r[0] in shared}
    rows5 = {(r[0], r[1]): r for r in l5}
    assert set(rows5) == set(rows1) and len(rows5) == 10
    # Every column at a shared step (the probe's too: its noise depends on the step alone).
    assert all(str(rows1[k]) == str(rows5[k]) for k in rows5)
    test_cols = [METRICS_COLUMNS.index(c) for c in ("step", "test_loss", "test_acc")]
    evals1 = [[m[i] for i in test_cols] for m in m1 if m[0] in shared]
    assert evals1 == [[m[i] for i in test_cols] for m in m5]
    assert LAYERS_COLUMNS.index("unit_p50") < len(rows5[(5, 1)])


def test_same_seed_same_numbers_other_seed_other_noise(bundled_data):
    def run(seed):
        return collect(make_config(depth=2, width=12, steps=10, log_every=5, probe_size=40, seed=seed,
                                   **{"norm.name": "noisy"}), bundled_data)  # fmt: skip

    (m1, l1), (m2, l2), (_, l3) = run(0), run(0), run(1)
    assert [m[:-1] for m in m1] == [m[:-1] for m in m2] and str(l1) == str(l2)
    assert str(l1) != str(l3)


def test_noise_without_bn_keeps_the_linear_bias_and_has_no_norm_parameters():
    cfg = make_config(depth=2, width=8, **{"norm.name": "noise_only"})
    blocks = hidden_blocks(build_model(cfg, (1, 28, 28), 10))
    assert all(isinstance(b.norm, ActivationNoise) for b in blocks)
    assert all(b.weight_layer.bias is not None for b in blocks)
    assert not any(isinstance(p, nn.Parameter) for b in blocks for p in b.norm.parameters())
    noisy = hidden_blocks(
        build_model(make_config(depth=2, width=8, **{"norm.name": "noisy"}), (1, 28, 28), 10)
    )
    assert all(b.weight_layer.bias is None for b in noisy)


# --------------------------------------------------------------------------------------------
# Config keys
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"norm.noise_shift": -0.1}, ["norm.noise_shift=-0.1", ">= 0"]),
        ({"norm.noise_scale": 0.9}, ["norm.noise_scale=0.9", ">= 1", "U(1, noise_scale)"]),
        ({"norm.noise_shift_jitter": -1.0}, ["norm.noise_shift_jitter=-1.0", ">= 0"]),
        ({"norm.noise_scale_jitter": -0.5}, ["norm.noise_scale_jitter=-0.5", ">= 0"]),
        ({"norm.noise_scale_jitter": float("nan")}, ["norm.noise_scale_jitter=nan", "finite"]),
        ({"norm.noise_shift_jitter": float("inf")}, ["norm.noise_shift_jitter=inf", "finite"]),
    ],
)
def test_noise_keys_are_validated(overrides, words):
    with pytest.raises(UserError) as error:
        validate(make_config(**{"norm.name": "noisy", **overrides}))
    assert all(w in str(error.value) for w in words), str(error.value)


def test_noise_keys_enter_the_hash_of_noisy_runs_only():
    for key in ("norm.noise_shift_jitter", "norm.noise_scale_jitter"):
        for norm, differs in (
            ("noisy", True),
            ("noise_only", True),
            ("batch", False),
            ("none", False),
        ):
            a = config_hash(make_config(**{"norm.name": norm}))
            b = config_hash(make_config(**{"norm.name": norm, key: 0.0}))
            assert (a != b) == differs, (key, norm)


def test_defaults_are_the_papers_constants():
    cfg = make_config()
    assert (cfg.norm.noise_shift, cfg.norm.noise_scale) == (0.5, 1.25)
    assert (cfg.norm.noise_shift_jitter, cfg.norm.noise_scale_jitter) == (0.1, 0.1)
    assert np.isclose(make_norm("noisy", 3, spatial=False, affine=True).noise_scale, 1.25)


# --------------------------------------------------------------------------------------------
# The measures the noisy-bn claims use (synthetic tables; values computed here by hand)
# --------------------------------------------------------------------------------------------


def noisy_bn_tables(runs: dict[tuple[str, int], dict]) -> Tables:
    """runs: {(norm, seed): {"train": [...], "test": [...], "p50": [...], "p15": [...], "p85": [...]}}
    with one value per step 0, 100, 200, ... (layer 3 = last)."""
    run_rows, metrics, layers = [], [], []
    for (norm, seed), spec in runs.items():
        run_id = f"{norm}-{seed}"
        run_rows.append({"run_id": run_id, "status": "completed", "norm": norm, "seed": seed})
        for i, (train_acc, test_acc) in enumerate(zip(spec["train"], spec["test"], strict=True)):
            metrics.append(
                {"run_id": run_id, "step": 100 * i, "train_acc": train_acc, "test_acc": test_acc}
            )
        for i, p50 in enumerate(spec.get("p50", [])):
            row = {"run_id": run_id, "step": 100 * i, "layer": 3, "unit_p50": p50}
            row["unit_p15"], row["unit_p85"] = spec["p15"][i], spec["p85"][i]
            layers.append(row)
    return Tables(pd.DataFrame(run_rows), pd.DataFrame(metrics), pd.DataFrame(layers))


def t95(values: list[float]) -> tuple[float, float]:
    mean, sem = float(np.mean(values)), float(np.std(values, ddof=1) / math.sqrt(len(values)))
    half = scipy_stats.t.ppf(0.975, len(values) - 1) * sem
    return mean - half, mean + half


def test_accuracy_measures_read_training_accuracy_when_asked():
    tables = noisy_bn_tables({
        ("noisy", 0): {"train": [0.1, 0.5, 0.90, 0.92, 0.94], "test": [0.1, 0.3, 0.5, 0.5, 0.5]},
        ("noisy", 1): {"train": [0.1, 0.6, 0.91, 0.93, 0.97], "test": [0.1, 0.3, 0.5, 0.5, 0.5]},
        ("batch", 0): {"train": [0.1, 0.7, 0.95, 0.95, 0.95], "test": [0.1, 0.6, 0.8, 0.8, 0.8]},
        ("batch", 1): {"train": [0.1, 0.7, 0.96, 0.96, 0.96], "test": [0.1, 0.6, 0.8, 0.8, 0.8]},
    })  # fmt: skip
    train = MEASURES["final_accuracy_difference"](
        tables, a={"norm": "noisy"}, b={"norm": "batch"}, accuracy="train"
    )
    diffs = [100 * (np.mean([0.90, 0.92, 0.94]) - 0.95), 100 * (np.mean([0.91, 0.93, 0.97]) - 0.96)]
    assert train.value == pytest.approx(np.mean(diffs))
    assert train.interval == pytest.approx(t95(diffs))
    assert "train accuracy" in train.text
    test = MEASURES["final_accuracy_difference"](tables, a={"norm": "noisy"}, b={"norm": "batch"})
    assert test.value == pytest.approx(-30.0)  # the default is still test accuracy
    single = MEASURES["final_accuracy_mean"](tables, where={"norm": "noisy"}, accuracy="train")
    finals = [100 * np.mean([0.90, 0.92, 0.94]), 100 * np.mean([0.91, 0.93, 0.97])]
    assert single.value == pytest.approx(np.mean(finals))
    assert single.interval == pytest.approx(t95(finals))
    # Steps to reach the slow variant's final training accuracy, on seed-mean training curves.
    ratio = MEASURES["steps_to_reach_ratio"](
        tables, fast={"norm": "batch"}, slow={"norm": "noisy"}, accuracy="train"
    )
    # Target 92.83%; noisy's seed mean is 92.5% at step 300 and 95.5% at 400, batch's 95.5% at 200.
    target = np.mean(finals) / 100
    assert "92.8%" in ratio.text and ratio.value == pytest.approx(400 / 200)
    with pytest.raises(ValueError, match="accuracy='dev'"):
        MEASURES["final_accuracy_mean"](tables, where={"norm": "noisy"}, accuracy="dev")
    assert target == pytest.approx(0.92833, abs=1e-5)


def test_step_change_and_range_rank_a_jumpy_unit_and_a_drifting_one_differently():
    steps = 11
    jumpy = [0.5 * (-1) ** i for i in range(steps)]  # jumps by 1.0 every row around 0
    drifting = [-0.4 * i for i in range(steps)]  # moves 0.4 a row, 4.0 in all
    spread_jumpy = [2 + 0.3 * (i % 2) for i in range(steps)]
    spread_drifting = [0.1 * i for i in range(steps)]
    tables = noisy_bn_tables({
        ("noisy", 0): {"train": [0.5] * steps, "test": [0.5] * steps, "p50": jumpy,
                       "p15": [m - s / 2 for m, s in zip(jumpy, spread_jumpy)],
                       "p85": [m + s / 2 for m, s in zip(jumpy, spread_jumpy)]},
        ("none", 0): {"train": [0.5] * steps, "test": [0.5] * steps, "p50": drifting,
                      "p15": [m - s / 2 for m, s in zip(drifting, spread_drifting)],
                      "p85": [m + s / 2 for m, s in zip(drifting, spread_drifting)]},
    })  # fmt: skip
    args = {"high": {"norm": "noisy"}, "low": {"norm": "none"}, "layer": "last"}
    drift = MEASURES["drift_ratio"]
    assert drift(tables, **args, quantity="median").value == pytest.approx(1.0 / 4.0)
    step = drift(tables, **args, quantity="median", statistic="step_change")
    assert step.value == pytest.approx(1.0 / 0.4)
    assert "mean change between successive logged steps" in step.text
    spread = drift(tables, **args, quantity="spread", statistic="step_change")
    assert spread.value == pytest.approx(0.3 / 0.1)
    with pytest.raises(ValueError, match="statistic 'jumps'"):
        drift(tables, **args, statistic="jumps")


def test_the_noisy_bn_declaration_names_its_variants_and_history():
    finding = load_findings()["noisy-bn"]
    assert not finding.declared_blind  # a pilot and a first version were seen before
    assert [e.seen_before_claims for e in finding.history] == [True, True, False]
    variants = {
        str(where.get("norm"))
        for claim in finding.claims
        for where in (claim["args"].values())
        if isinstance(where, dict)
    }
    assert variants == {"noisy", "batch", "none", "noise_only"}
    sweep = yaml.safe_load((REPO / "configs/experiment/noisy-bn.yaml").read_text())
    assert set(sweep["hydra"]["sweeper"]["params"]["norm"].split(",")) == variants
