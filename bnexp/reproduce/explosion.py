"""The `explosion` finding's in-process measurement (Yang et al. 2019, ICLR, Sec. 3.1.2 and 4).

For every config: the layers.csv statistics of step 0 (the forward and backward pass of the
first training batch on the initial weights, exactly as `bnexp run` logs them), from a run of
one step. The configs that match TRAINABILITY are also trained for their own `steps` and
`optim.lr`, and their final test accuracy is kept: Yang et al.'s trainable-depth slice.
"""

from __future__ import annotations

import copy
import math

import pandas as pd

from bnexp.reproduce.procedure_base import ProcedureResult, _load
from bnexp.run.config import Config
from bnexp.run.train import train
from bnexp.rundir import LAYERS_COLUMNS, METRICS_COLUMNS

# The configs that are also trained (declared in bnexp/reproduce/findings/explosion.yaml): the
# ReLU networks at one batch size. The others only need their step-0 row.
TRAINABILITY = {"act": "relu", "batch_size": 32}
STEP0_COLUMNS = ("grad_w_norm", "grad_act_mean_abs", "act_std", "pre_std")
TRAINED_COLUMNS = (
    "act", "norm", "batch_size", "depth", "width", "seed", "steps", "lr", "status",
    "diverged_at_step", "final_test_acc", "final_train_acc",
)  # fmt: skip
FINAL_EVALS = 3  # final accuracy: the mean of the last 3 evaluations, as the other claims


def _keys(cfg: Config) -> dict:
    return {
        "act": cfg.act.value,
        "norm": cfg.norm.name.value,
        "batch_size": cfg.batch_size,
        "depth": cfg.depth,
        "width": cfg.width,
        "seed": cfg.seed,
    }


def step0_rows(cfg: Config, data) -> tuple[list[dict], str]:
    """The step-0 layers.csv rows of `cfg` (from a one-step run), and the run's status."""
    one_step = copy.deepcopy(cfg)
    one_step.steps = 1
    one_step.log_every = one_step.eval_every = 1
    logged: list[list] = []
    outcome = train(one_step, data, on_log=lambda _metrics, layers: logged.extend(layers))
    columns = {name: LAYERS_COLUMNS.index(name) for name in ("step", "layer", *STEP0_COLUMNS)}
    rows = []
    for row in logged:
        if row[columns["step"]] != 0:
            continue
        rows.append(
            {
                **_keys(cfg),
                "layer": int(row[columns["layer"]]),
                **{name: row[columns[name]] for name in STEP0_COLUMNS},
            }
        )
    return rows, outcome.status


def trained_accuracy(cfg: Config, data) -> dict:
    """Train `cfg` as it is; its final test and train accuracy (mean of the last evaluations)."""
    metrics: list[list] = []
    outcome = train(cfg, data, on_log=lambda row, _layers: metrics.append(row))
    test = [r[METRICS_COLUMNS.index("test_acc")] for r in metrics]
    train_acc = [r[METRICS_COLUMNS.index("train_acc")] for r in metrics]
    test = [v for v in test if v is not None and math.isfinite(v)]
    train_acc = [v for v in train_acc if v is not None and math.isfinite(v)]
    return {
        **_keys(cfg),
        "steps": cfg.steps,
        "lr": cfg.optim.lr,
        "status": outcome.status,
        "diverged_at_step": outcome.diverged_at_step,
        # A diverged run counts at chance (10%), as init-scale counts it.
        "final_test_acc": 0.1
        if outcome.status != "completed"
        else sum(test[-FINAL_EVALS:]) / len(test[-FINAL_EVALS:]),
        "final_train_acc": sum(train_acc[-FINAL_EVALS:]) / max(1, len(train_acc[-FINAL_EVALS:])),
    }


def explosion(configs: list[Config]) -> ProcedureResult:
    cache: dict = {}
    step0, trained, notes = [], [], []
    data = None
    for cfg in configs:
        data = _load(cfg, cache)
        rows, status = step0_rows(cfg, data)
        if not rows:
            notes.append(f"{_keys(cfg)}: no step-0 row ({status})")
        step0 += rows
        keys = _keys(cfg)
        if all(keys[k] == v for k, v in TRAINABILITY.items()):
            trained.append(trained_accuracy(cfg, data))
    step0_table = pd.DataFrame(step0, columns=[*TRAINED_COLUMNS[:6], "layer", *STEP0_COLUMNS])
    trained_table = pd.DataFrame(trained, columns=TRAINED_COLUMNS)
    return ProcedureResult.of_data(
        {"step0_layers": step0_table, "trainability": trained_table}, data, notes
    )
