"""The default evaluation schedule (config.eval_interval): about 20 evaluations per run, fewer
where their estimated cost would pass EVAL_SHARE of the training steps' time."""

from __future__ import annotations

import math

import pytest

from bnexp.run.config import EVAL_SHARE, eval_interval, evaluation_steps, log_interval
from bnexp.run.train import train
from bnexp.rundir import METRICS_COLUMNS

from conftest import make_config

BUNDLED_TEST, FASHION_TEST = 1_000, 10_000


def evaluations(steps: int, every: int) -> int:
    """Steps 0, every, 2 every, ... and the final step (train.py)."""
    return steps // every + 1 + (steps % every != 0)


def test_default_run_on_the_bundled_subset_keeps_its_20_evaluations():
    cfg = make_config()  # 5,000 steps, batch 60, log every 50
    assert eval_interval(cfg, BUNDLED_TEST) == 250


def test_default_run_on_fashion_mnist_evaluates_less_often():
    cfg = make_config()
    every = eval_interval(cfg, FASHION_TEST)
    # 10,000 images x 0.5 / (60 + 50) = 45.5 steps each: 5 evaluations fit in 5% of 5,000 steps.
    assert evaluation_steps(cfg, FASHION_TEST) == pytest.approx(45.45, abs=0.01)
    assert every == 1250
    assert evaluations(cfg.steps, every) * evaluation_steps(cfg, FASHION_TEST) <= 0.05 * cfg.steps


@pytest.mark.parametrize("model", ["mlp", "cnn"])
@pytest.mark.parametrize("steps", [1, 40, 125, 1000, 5000, 18750, 50000])
@pytest.mark.parametrize("batch_size", [2, 32, 60, 256])
@pytest.mark.parametrize("test_size", [100, BUNDLED_TEST, FASHION_TEST])
def test_rule_on_a_grid(model, steps, batch_size, test_size):
    cfg = make_config(steps=steps, batch_size=batch_size, **{"model.name": model})
    every, log_every = eval_interval(cfg, test_size), log_interval(cfg)
    old = log_every * max(1, round(steps / 20 / log_every))
    assert every % log_every == 0  # every evaluation lands on a logged row
    assert every >= old  # never more often than the ~20-evaluation rule
    cost = evaluations(steps, every) * evaluation_steps(cfg, test_size)
    if every < steps:  # more than step 0 and the final step: within the share
        assert cost <= EVAL_SHARE * steps
    if every > old:  # it moved only because ~20 would have cost too much
        assert evaluations(steps, old) * evaluation_steps(cfg, test_size) > EVAL_SHARE * steps


def test_an_explicit_eval_every_always_wins():
    for every in (1, 7, 250, 10**6):
        assert eval_interval(make_config(eval_every=every), 10**7) == every


def test_conv_models_are_estimated_dearer_than_the_mlp():
    mlp, cnn = make_config(), make_config(**{"model.name": "cnn"})
    assert evaluation_steps(cnn, FASHION_TEST) > evaluation_steps(mlp, FASHION_TEST)
    assert eval_interval(cnn, FASHION_TEST) > eval_interval(mlp, FASHION_TEST)


def test_the_final_step_is_evaluated_when_the_interval_passes_it(bundled_data):
    # 47 steps: 1,000 test images (4.5 steps each) do not fit in 5% (2.35 steps), so the
    # interval (50) passes the run's end: step 0 and the final step alone are evaluated.
    cfg = make_config(steps=47, log_every=5)
    assert eval_interval(cfg, len(bundled_data.y_test)) == 50
    rows = []
    train(cfg, bundled_data, lambda metrics, layers: rows.append(metrics))
    step, test_loss = METRICS_COLUMNS.index("step"), METRICS_COLUMNS.index("test_loss")
    assert [r[step] for r in rows] == [*range(0, 47, 5), 47]
    evaluated = [r[step] for r in rows if r[test_loss] is not None]
    assert evaluated == [0, 47] and all(
        math.isfinite(r[test_loss]) for r in rows if r[step] in (0, 47)
    )
