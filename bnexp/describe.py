"""How bnexp writes a run's configuration for people: flat dotted keys and one summary line.

Kept apart from plots.py so that the training side (the runner's log line) can use it without
importing matplotlib.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

GROUP_KEYS: tuple[str, ...] = ("data", "model", "norm", "optim", "logger")

SUMMARY_FIELDS: tuple[tuple[str, str], ...] = (
    ("data", "{}"),
    ("model", "{}"),
    ("depth", "depth={}"),
    ("width", "width={}"),
    ("act", "act={}"),
    ("norm", "norm={}"),
    ("placement", "placement={}"),
    ("affine", "affine={}"),
    ("init", "init={}"),
    ("batch_size", "bs={}"),
    ("optim", "{}"),
    ("optim.lr", "lr={}"),
    ("steps", "steps={}"),
)


def flatten_config(nested: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'norm': {'name': 'batch', 'eps': 1e-5}, 'depth': 3} -> {'norm': 'batch',
    'norm.eps': 1e-5, 'depth': 3}: dotted keys, group choices under the group's own name."""
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, prefix=f"{dotted}."))
        elif isinstance(value, list | tuple):
            flat[dotted] = str(list(value))  # hashable, so it can be compared across runs
        else:
            flat[dotted] = value
    if not prefix:
        for group in GROUP_KEYS:
            if f"{group}.name" in flat:
                flat[group] = flat.pop(f"{group}.name")
    return flat


def is_missing(value: Any) -> bool:
    """None or NaN: an empty cell or a null config value."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def format_value(value: Any) -> str:
    """A config value as a user would type it: 0.1, 1e-05, True, batch."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "null"
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, float | np.floating):
        return f"{float(value):g}"
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value)


def config_summary(
    config: Mapping[str, Any], varying: Mapping[str, Sequence[Any]] | None = None
) -> str:
    """'mnist mlp depth=10 width=100 act=sigmoid norm=batch ... bs=60 sgd lr=0.1 steps=5000'.

    Keys in `varying` are written with the set of values they take, e.g. `norm={batch,none}`,
    so one line describes a whole sweep.
    """
    varying = varying or {}
    parts = []
    for key, template in SUMMARY_FIELDS:
        if key in varying:
            values = ",".join(format_value(v) for v in varying[key])
            parts.append(template.format("{" + values + "}"))
            continue
        if key not in config or is_missing(config[key]):
            continue
        text = format_value(config[key])
        if key == "init" and text == "default":
            continue  # PyTorch's default init is what nobody needs to be told
        if key == "init" and text == "gaussian" and "init_std" in config:
            text += f"(std={format_value(config['init_std'])})"
        if key == "data" and config.get("data.binarize") is True:
            text += "(binary)"
        parts.append(template.format(text))
    return " ".join(parts)


DATASET_TITLES: dict[str, str] = {
    "mnist": "MNIST", "fashion_mnist": "Fashion-MNIST", "cifar10": "CIFAR-10",
    "gaussian_regression": "synthetic Gaussian regression",
}  # fmt: skip


def dataset_title(name: Any) -> str:
    """How a dataset (`data=` choice) is named in captions: fashion_mnist -> 'Fashion-MNIST'."""
    if name is None or is_missing(name) or str(name) == "":
        return "dataset"
    return DATASET_TITLES.get(str(name), str(name))
