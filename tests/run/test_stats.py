"""Statistics on hand-computable tensors."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bnexp.run.stats import (
    AFTER_BACKWARD,
    AFTER_STEP,
    BEFORE_FORWARD,
    LAYER_STATS,
    STATISTICS,
    LayerInputs,
    empty_table,
    fill,
    layer_table,
    mean_abs_of,
    moments,
    percentiles,
    saturation_fraction,
    std,
    unit_values,
    update_ratios,
    weight_gradient_stats,
)
from bnexp.rundir import LAYER_STAT_COLUMNS

NAN = float("nan")


def test_percentiles_match_linear_interpolation():
    values = torch.arange(101, dtype=torch.float32)  # 0..100: the q-th percentile is q
    got = percentiles([values])[0]
    assert got.tolist() == pytest.approx([15.0, 50.0, 85.0])
    # Same answer whether layers are stacked (equal sizes) or not.
    mixed = percentiles([values, torch.arange(11, dtype=torch.float32)])
    assert mixed[0].tolist() == pytest.approx([15.0, 50.0, 85.0])
    assert mixed[1].tolist() == pytest.approx([1.5, 5.0, 8.5])


def test_percentiles_agree_with_torch_quantile_and_keep_nan():
    torch.manual_seed(0)
    rows = torch.randn(3, 997) * torch.tensor([[1.0], [1e-3], [50.0]]) + 2.0
    expected = torch.quantile(rows, torch.tensor([0.15, 0.5, 0.85]), dim=1).T
    assert torch.allclose(percentiles(list(rows)), expected, rtol=1e-6, atol=0)
    rows[1, 500] = float("nan")  # a NaN in a layer: that layer's percentiles are NaN, not a number
    got = percentiles(list(rows))
    assert got[1].isnan().all() and not got[[0, 2]].isnan().any()


def test_std_is_the_sample_standard_deviation():
    torch.manual_seed(0)
    values = torch.randn(7, 300) * 0.01 + 5.0  # a large mean: the two-pass formula keeps precision
    assert torch.allclose(std(values, 1), values.double().std(1).float(), rtol=1e-5)
    assert std(values).item() == pytest.approx(values.double().std().item(), rel=1e-5)
    assert math.isnan(std(torch.tensor([3.0])).item())  # one value has no sample std
    # The whole float32 range: a deep sigmoid net's first-layer gradients reach ~1e-25, whose
    # squares underflow in float32; large values must not overflow either.
    for scale in (1e-25, 1e20):
        extreme = torch.tensor([1.0, -2.0, 3.0, 0.5]) * scale
        assert std(extreme).item() == pytest.approx(extreme.double().std().item(), rel=1e-5)


def test_percentiles_of_large_tensors_use_a_fixed_subsample():
    torch.manual_seed(0)
    big = torch.randn(200_000)
    first, second = percentiles([big])[0], percentiles([big])[0]
    assert torch.equal(first, second)  # same subset every call
    assert first.tolist() == pytest.approx([-1.0364, 0.0, 1.0364], abs=0.03)  # N(0,1) quantiles


def test_moments_are_exact():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    mean, std, low, high = moments([x])[0].tolist()
    assert (mean, low, high) == (2.5, 1.0, 4.0)
    assert std == pytest.approx(torch.tensor([1.0, 2, 3, 4]).std().item())


def test_saturation_fraction_per_activation():
    sig = torch.tensor([0.01, 0.5, 0.96, 0.94])
    assert saturation_fraction("sigmoid", [sig]).item() == pytest.approx(0.5)
    assert saturation_fraction(
        "tanh", [torch.tensor([-0.99, 0.0, 0.98, 0.5])]
    ).item() == pytest.approx(0.5)
    assert saturation_fraction(
        "relu", [torch.tensor([0.0, 0.0, 0.0, 2.0])]
    ).item() == pytest.approx(0.75)
    assert math.isnan(saturation_fraction("identity", [sig]).item())


def test_unit_values_takes_one_column_or_channel():
    mlp = torch.arange(12.0).view(4, 3)
    assert unit_values(mlp, 1).tolist() == [1.0, 4.0, 7.0, 10.0]
    cnn = torch.zeros(2, 3, 2, 2)
    cnn[:, 2] = 7
    assert unit_values(cnn, 2).unique().tolist() == [7.0]


def test_weight_gradient_norm_of_vanishing_gradients_is_not_zero():
    weight = nn.Parameter(torch.randn(4, 3))
    weight.grad = torch.full((4, 3), 2e-25)
    mean_abs, norm, _ = weight_gradient_stats([weight])[0].tolist()
    assert mean_abs == pytest.approx(2e-25, rel=1e-5)
    assert norm == pytest.approx(2e-25 * math.sqrt(12), rel=1e-5)  # float32 squares would give 0


def test_weight_gradient_and_update_ratio():
    weight = nn.Parameter(torch.tensor([[1.0, -1.0], [2.0, -2.0]]))
    weight.grad = torch.tensor([[0.5, -0.5], [0.5, -0.5]])
    mean_abs, norm, ratio = weight_gradient_stats([weight])[0].tolist()
    assert mean_abs == pytest.approx(0.5) and norm == pytest.approx(1.0)
    assert ratio == pytest.approx(weight.grad.std().item() / weight.detach().std().item())
    before = weight.detach().clone()
    with torch.no_grad():
        weight -= 0.1 * weight.grad
    expected = (0.1 * weight.grad).norm() / before.norm()
    assert update_ratios([weight], [before]).item() == pytest.approx(expected.item())


def test_layer_table_shape_and_missing_values():
    norm = nn.BatchNorm1d(4, affine=False)
    weight = nn.Parameter(torch.randn(4, 3))
    weight.grad = torch.randn(4, 3)
    pre = torch.randn(8, 4)
    table = layer_table(LayerInputs(
        act="sigmoid", weights=[weight, weight], pre=[pre, pre], outputs=[pre.sigmoid(), pre.sigmoid()],
        grad_outputs=[None, torch.ones(8, 4)], probe_pre=[pre, pre], unit=0, norms=[norm, nn.Identity()],
    ))  # fmt: skip
    assert table.shape == (2, len(LAYER_STATS))
    column = {name: i for i, name in enumerate(LAYER_STATS)}
    assert math.isnan(table[0, column["update_ratio"]])  # filled in after the optimiser step
    assert (
        math.isnan(table[0, column["grad_act_mean_abs"]])
        and table[1, column["grad_act_mean_abs"]] == 1
    )
    assert math.isnan(table[0, column["gamma_mean"]])  # affine=False: no gamma
    assert table[0, column["running_var_mean"]] == 1  # BN's running variance starts at 1
    assert math.isnan(table[1, column["running_var_mean"]])  # no norm: no running statistics
    assert table[0, column["unit_p50"]] == pytest.approx(torch.quantile(pre[:, 0], 0.5).item())


def test_mean_abs_of_a_large_tensor_is_accurate_to_float32_rounding():
    # A float32 sum of 16M equal values drifts by ~2% (the reference test found it on CNN maps).
    values = torch.full((16_000_000,), -0.1)
    assert abs(float(mean_abs_of(values)) - 0.1) / 0.1 < 1e-6


def test_the_statistics_table_is_the_run_directory_contract():
    """stats.STATISTICS decides what train.py writes; rundir.LAYER_STAT_COLUMNS is what every
    reader expects. A statistic added to one and not the other fails here."""
    assert LAYER_STATS == LAYER_STAT_COLUMNS
    assert len(set(LAYER_STATS)) == len(LAYER_STATS)


def _hidden_layers(shapes, seed=0):
    """Inputs of three hidden layers of the given activation shapes, with norms that have every
    kind of column (BN with running statistics moved away from 0/1, affine LayerNorm, none)."""
    gen = torch.Generator().manual_seed(seed)
    weights, pre, norms = [], [], []
    for i, shape in enumerate(shapes):
        weight = nn.Parameter(torch.randn(shape[1], 5, generator=gen))
        weight.grad = torch.randn(shape[1], 5, generator=gen) * 1e-3
        weights.append(weight)
        pre.append(torch.randn(*shape, generator=gen) * (i + 1) + i)
    bn = nn.BatchNorm2d(shapes[0][1]) if len(shapes[0]) == 4 else nn.BatchNorm1d(shapes[0][1])
    bn.running_mean.uniform_(-1, 1, generator=gen)
    bn.running_var.uniform_(0.5, 2, generator=gen)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5, generator=gen)
    layer_norm = nn.GroupNorm(1, shapes[1][1])
    with torch.no_grad():
        layer_norm.bias.uniform_(-1, 1, generator=gen)
    norms = [bn, layer_norm, nn.Identity()]
    return LayerInputs(
        norms=norms, act="tanh", weights=weights, pre=pre, outputs=[p.tanh() for p in pre],
        grad_outputs=[torch.randn(*p.shape, generator=gen) for p in pre],
        probe_pre=[p[:3] + 0.5 for p in pre], unit=1,
    )  # fmt: skip


@pytest.mark.parametrize(
    "shapes",
    [[(16, 6)] * 3, [(4, 6, 3, 3), (4, 12, 2, 2), (4, 12, 1, 1)]],
    ids=["equal-layers-batched", "feature-maps-per-layer"],
)
def test_every_column_holds_its_own_statistic(shapes):
    """Each column of the table against the same quantity computed here in float64 with plain
    torch, so a statistic in the wrong position (or of the wrong width) fails."""
    inputs = _hidden_layers(shapes)
    for columns, statistic in STATISTICS.items():
        if statistic.read != AFTER_STEP:
            assert statistic.compute(inputs).shape == (3, len(columns)), columns
    table = fill(fill(empty_table(3), BEFORE_FORWARD, inputs), AFTER_BACKWARD, inputs)
    before = [w.detach().clone() for w in inputs.weights]
    with torch.no_grad():
        for w in inputs.weights:
            w -= 0.5 * w.grad
    fill(table, AFTER_STEP, LayerInputs(weights=inputs.weights, weights_before=before))
    column = {name: table[:, i].double() for i, name in enumerate(LAYER_STATS)}

    def q(values, level):
        return torch.quantile(values.double().flatten(), level).item()

    for i in range(3):
        w, g = inputs.weights[i].detach().double(), inputs.weights[i].grad.double()
        pre, out = inputs.pre[i].double(), inputs.outputs[i].double()
        unit = inputs.probe_pre[i][:, 1].double()
        norm = inputs.norms[i]
        expected = {
            "grad_w_mean_abs": g.abs().mean(), "grad_w_norm": g.norm(),
            "grad_w_ratio": g.std() / (w + 0.5 * g).std(),
            "update_ratio": (0.5 * g).norm() / (w + 0.5 * g).norm(),
            "grad_act_mean_abs": inputs.grad_outputs[i].double().abs().mean(),
            "pre_mean": pre.mean(), "pre_std": pre.std(), "pre_min": pre.min(), "pre_max": pre.max(),
            "pre_p15": q(pre, 0.15), "pre_p50": q(pre, 0.5), "pre_p85": q(pre, 0.85),
            "act_mean": out.mean(), "act_std": out.std(), "act_min": out.min(), "act_max": out.max(),
            "act_sat_frac": (out.abs() > 0.97).double().mean(),
            "unit_p15": q(unit, 0.15), "unit_p50": q(unit, 0.5), "unit_p85": q(unit, 0.85),
        }  # fmt: skip
        for name in ("weight", "bias"):
            value = getattr(norm, name, None)
            value = value.detach().double() if value is not None else None
            mean, sd = (value.mean(), value.std()) if value is not None else (NAN, NAN)
            prefix = "gamma" if name == "weight" else "beta"
            expected[f"{prefix}_mean"], expected[f"{prefix}_std"] = mean, sd
        for name in ("running_mean", "running_var"):
            value = getattr(norm, name, None)
            expected[f"{name}_mean"] = value.double().mean() if value is not None else NAN
        assert set(expected) == set(LAYER_STATS)
        for name, value in expected.items():
            got, want = column[name][i].item(), float(value)
            if math.isnan(want):
                assert math.isnan(got), (name, i)
            else:
                assert got == pytest.approx(want, rel=1e-5, abs=1e-7), (name, i)
