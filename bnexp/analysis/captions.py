"""Caption and title text for figures: which dataset, from where, how big; loud when it is the
5,000-digit fallback subset rather than the full dataset."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from bnexp.describe import dataset_title
from bnexp.rundir import BUNDLED_SOURCE, BUNDLED_TEXT


def data_source_text(meta: Mapping[str, Any], dataset: Any = None) -> str:
    """Which dataset, where its files came from, loud when it is the 5,000-digit fallback."""
    name = dataset_title(dataset)
    sizes = _sizes_text(meta.get("train_size"), meta.get("test_size"))
    source = meta.get("data_source")
    if source == BUNDLED_SOURCE:
        split = f", split {sizes}" if sizes else ""
        return f"data: {BUNDLED_TEXT}{split}; not the full MNIST, so expect other numbers than the papers"
    if source:
        return f"data: {name}" + (f" ({sizes})" if sizes else "") + f", source: {source}"
    if name != "dataset":
        return f"data: {name}, source unknown (no meta.json)"
    return "data source: unknown (no meta.json)"


def title_with_source(title: str, meta: Mapping[str, Any]) -> str:
    """The bundled subset is named in the title itself, where nobody can miss it."""
    if meta.get("data_source") == BUNDLED_SOURCE:
        return f"{title} · data: {BUNDLED_TEXT}"
    return title


def _as_float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _sizes_text(train_size: Any, test_size: Any) -> str:
    train, test = _as_float(train_size), _as_float(test_size)
    if train is None or test is None:
        return ""
    return f"{train:,.0f} train / {test:,.0f} test"
