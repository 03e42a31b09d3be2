"""Student's t quantiles and 95% intervals over seeds: one implementation for figures and claims
(bnexp.analysis figures call mean_ci95, bnexp.reproduce.claims calls t_interval; both are
t_interval).

Pure Python (no torch, no SciPy): the t distribution's CDF is written with the regularized
incomplete beta function, evaluated by its continued fraction (Lentz's method, as in Numerical
Recipes' `betacf`), and the quantile is found by bisection on that CDF. Above 1,000 degrees of
freedom, where the incomplete beta loses digits to cancellation, the Cornish-Fisher expansion
of the quantile around the normal one (Abramowitz & Stegun 26.7.5, four terms) takes over: its
error there is below 1e-13. Infinite degrees of freedom give the normal quantile. Accurate to
~1e-10 or better for any df (integer or not).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from statistics import NormalDist

_TINY = 1e-300
_MAX_TERMS = 500
_EXPANSION_ABOVE_DF = 1000.0


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (converges fast for x < (a + 1) / (a + b + 2))."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_TERMS + 1):
        m2 = 2 * m
        for numerator in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            return h
    return h  # 500 terms: more than any df used here needs


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b) = B(x; a, b) / B(a, b), for a, b > 0 and 0 <= x <= 1."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x={x} must lie in [0, 1]")
    if x in (0.0, 1.0):
        return x
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_cdf(x: float, df: float) -> float:
    """P(T <= x) for Student's t with `df` degrees of freedom (df = inf: the normal CDF)."""
    _check_df(df)
    if math.isinf(df):
        return NormalDist().cdf(x)
    tail = 0.5 * regularized_incomplete_beta(df / 2.0, 0.5, df / (df + x * x))
    return 1.0 - tail if x >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with `df` degrees of freedom (df = inf: normal)."""
    _check_df(df)
    if not 0.0 < p < 1.0:
        raise ValueError(f"p={p} must lie strictly between 0 and 1")
    if math.isinf(df):
        return NormalDist().inv_cdf(p)
    if df > _EXPANSION_ABOVE_DF:
        return _cornish_fisher(p, df)
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:  # the quantile is finite: double until it is bracketed
        low, high = high, 2.0 * high
    for _ in range(200):
        middle = 0.5 * (low + high)
        if middle in (low, high):
            break
        if t_cdf(middle, df) < p:
            low = middle
        else:
            high = middle
        if high - low <= 1e-14 * high:
            break
    return 0.5 * (low + high)


def _cornish_fisher(p: float, df: float) -> float:
    """t quantile as the normal quantile z plus powers of 1/df (Abramowitz & Stegun 26.7.5)."""
    z = NormalDist().inv_cdf(p)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


def t_quantile_975(df: float) -> float:
    """t(0.975, df), the multiplier of a two-sided 95% interval; NaN for df < 1."""
    if df < 1 or math.isnan(df):
        return math.nan
    return t_quantile(0.975, df)


def _check_df(df: float) -> None:
    if not df > 0:  # also catches NaN
        raise ValueError(f"degrees of freedom must be > 0, got {df}")


def t_interval(values: Iterable[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the mean of the values and its two-sided t-interval.

    Fewer than two values give an infinitely wide interval (nothing is known of the spread).
    """
    data = [float(v) for v in values]
    if not data:
        raise ValueError("t_interval needs at least one value")
    n = len(data)
    mean = math.fsum(data) / n
    if n < 2:
        return mean, -math.inf, math.inf
    variance = math.fsum((v - mean) ** 2 for v in data) / (n - 1)
    half = t_quantile(0.5 + level / 2.0, n - 1) * math.sqrt(variance / n)
    return mean, mean - half, mean + half


def mean_ci95(values: Iterable[float | None]) -> tuple[float, float, int]:
    """(mean, half-width of the 95% t-interval, n) of the finite values, as figures draw them:
    the half-width is NaN (no bar) for a single value, and everything NaN for none."""
    finite_values = [float(v) for v in values if v is not None and math.isfinite(v)]
    n = len(finite_values)
    if n == 0:
        return math.nan, math.nan, 0
    mean, low, high = t_interval(finite_values)
    return mean, (high - low) / 2 if n > 1 else math.nan, n
