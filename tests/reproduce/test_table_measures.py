"""Measures added for the findings of issue 12 (bn-backward, running-average, linear-depth,
init-scale), on small hand-made tables whose answers are computed by hand here."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from bnexp.reproduce.claims import MEASURES, Missing, Tables, evaluate


def extra(**frames: pd.DataFrame) -> Tables:
    tables = Tables.empty()
    tables.extra = dict(frames)
    return tables


BACKWARD = pd.DataFrame(
    {
        "form": ["closed_form", "closed_form", "compact", "compact"],
        "batch_size": [2, 256, 2, 256],
        "affine": [True, False, True, False],
        "max_error": [3.0e-12, 1.0e-15, 2.0e-13, float("nan")],
    }
)


def test_table_value_max_min_mean_of_the_selected_rows():
    tables = extra(bn_backward=BACKWARD)
    largest = MEASURES["table_value"](
        tables, table="bn_backward", column="max_error", where={"form": "closed_form"}
    )
    assert largest.value == pytest.approx(3.0e-12)
    assert "batch_size=2" in largest.text and "form=closed_form" in largest.text
    smallest = MEASURES["table_value"](
        tables, table="bn_backward", column="max_error", statistic="min"
    )
    assert smallest.value == pytest.approx(1.0e-15)
    # NaN cells (affine off has no dγ) are left out, not propagated.
    mean = MEASURES["table_value"](
        tables, table="bn_backward", column="max_error", where={"form": "compact"}, statistic="mean"
    )
    assert mean.value == pytest.approx(2.0e-13)


def test_table_value_missing_table_or_rows_is_inconclusive():
    with pytest.raises(Missing):
        MEASURES["table_value"](Tables.empty(), table="bn_backward", column="max_error")
    with pytest.raises(Missing):
        MEASURES["table_value"](
            extra(bn_backward=BACKWARD),
            table="bn_backward",
            column="max_error",
            where={"form": "no such form"},
        )
    spec = {
        "id": "x",
        "claim": "c",
        "published": "p",
        "measure": "table_value",
        "kind": "identity",
        "args": {"table": "bn_backward", "column": "max_error"},
        "criterion": {"op": "<=", "value": 1e-10},
    }
    assert evaluate(spec, Tables.empty()).verdict == "identity not checked"
    assert evaluate(spec, extra(bn_backward=BACKWARD)).verdict == "identity holds"
    failing = BACKWARD.assign(max_error=[1e-3, 0.0, 0.0, 0.0])
    result = evaluate(spec, extra(bn_backward=failing))
    assert result.verdict == "identity fails" and math.isclose(result.value, 1e-3)
