"""Student's t quantiles and intervals (bnexp.analysis.intervals), against independent values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bnexp.analysis.intervals import (
    mean_ci95,
    regularized_incomplete_beta,
    t_cdf,
    t_interval,
    t_quantile,
    t_quantile_975,
)
from bnexp.reproduce.claims import t_interval as claims_t_interval

# t(0.975, df) to 10 significant digits, from printed tables (e.g. NIST/SEMATECH e-Handbook
# 1.3.6.7.2) and the closed forms for df = 1 (tan) and df = 2.
KNOWN_975 = {
    1: 12.70620474,
    2: 4.302652730,
    3: 3.182446305,
    4: 2.776445105,
    5: 2.570581836,
    10: 2.228138852,
    30: 2.042272456,
    60: 2.000297822,
    100: 1.983971519,
    math.inf: 1.959963985,
}


@pytest.mark.parametrize("df", sorted(KNOWN_975))
def test_t_quantile_975_matches_printed_tables(df):
    assert t_quantile_975(df) == pytest.approx(KNOWN_975[df], rel=1e-9)


def test_t_quantile_975_to_three_decimals_as_the_brief_lists_them():
    listed = {
        1: 12.706,
        2: 4.303,
        4: 2.776,
        10: 2.228,
        30: 2.042,
        60: 2.000,
        100: 1.984,
        math.inf: 1.960,
    }
    for df, value in listed.items():
        assert round(t_quantile_975(df), 3) == value, df


@pytest.mark.parametrize("p", [0.6, 0.9, 0.975, 0.995, 0.9999])
def test_closed_forms_for_one_and_two_degrees_of_freedom(p):
    # df = 1 is the Cauchy distribution; df = 2 has the closed form (2p - 1) / sqrt(2p(1 - p)).
    assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-10)
    assert t_quantile(p, 2) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-10)
    # df = 4: t = sign * sqrt(4/sqrt(alpha) * cos(acos(sqrt(alpha))/3) - 4), alpha = 4p(1-p).
    alpha = 4 * p * (1 - p)
    four = math.sqrt(4 / math.sqrt(alpha) * math.cos(math.acos(math.sqrt(alpha)) / 3) - 4)
    assert t_quantile(p, 4) == pytest.approx(four, rel=1e-9)


def test_cdf_and_quantile_are_inverse_and_symmetric():
    for df in (1, 2.5, 7, 31, 250, 999, 1001, 5000):
        for p in (0.01, 0.3, 0.7, 0.975):
            q = t_quantile(p, df)
            assert t_cdf(q, df) == pytest.approx(p, abs=1e-11)
            assert t_quantile(1 - p, df) == pytest.approx(-q, rel=1e-9)
    assert t_cdf(1.0, 1) == pytest.approx(0.5 + math.atan(1.0) / math.pi, abs=1e-14)


def test_quantile_falls_with_df_towards_the_normal_one():
    values = [t_quantile_975(df) for df in (1, 2, 5, 10, 31, 32, 100, 1000, 1001, 10**6)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    z = 1.959963984540054  # the normal 97.5% quantile; to first order t = z + (z^3 + z) / (4 df)
    assert values[-1] == pytest.approx(z + (z**3 + z) / 4e6, abs=1e-11)


def test_incomplete_beta_against_closed_forms():
    # I_x(1, 1) = x; I_x(a, 1) = x^a; I_x(1, b) = 1 - (1 - x)^b.
    for x in (0.0, 0.1, 0.5, 0.93, 1.0):
        assert regularized_incomplete_beta(1, 1, x) == pytest.approx(x, abs=1e-14)
        assert regularized_incomplete_beta(3.5, 1, x) == pytest.approx(x**3.5, abs=1e-13)
        assert regularized_incomplete_beta(1, 2.5, x) == pytest.approx(
            1 - (1 - x) ** 2.5, abs=1e-13
        )


def test_bad_arguments_raise():
    for df in (0, -1, math.nan):
        with pytest.raises(ValueError):
            t_quantile(0.975, df)
    for p in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError):
            t_quantile(p, 3)
    assert math.isnan(t_quantile_975(0))


def test_t_interval_by_hand():
    mean, low, high = t_interval([1.0, 2.0, 3.0])
    # mean 2, sample sd 1, n 3: half-width t(0.975, 2) / sqrt(3)
    assert mean == 2.0
    assert high - mean == pytest.approx(4.302652730 / math.sqrt(3), rel=1e-9)
    assert mean - low == pytest.approx(high - mean, rel=1e-12)
    assert t_interval([5.0]) == (5.0, -math.inf, math.inf)
    with pytest.raises(ValueError):
        t_interval([])


def test_figures_and_claims_share_one_quantile_beyond_31_samples():
    """They once differed: figures used a Cornish-Fisher formula past 30 df, claims used 1.96."""
    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 31, 32, 40, 200):
        values = rng.normal(size=n)
        mean, low, high = claims_t_interval(values)
        fig_mean, fig_half, fig_n = mean_ci95(values)
        assert fig_n == n and fig_mean == pytest.approx(mean, rel=1e-12)
        assert fig_half == pytest.approx(high - mean, rel=1e-12)
        # Figures leave out what was not measured (NaN, an exploded inf) and nothing else.
        padded = [*values, math.nan, math.inf, None]
        assert mean_ci95(padded) == pytest.approx((fig_mean, fig_half, n), rel=1e-12)
