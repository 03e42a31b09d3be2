"""The training loop: one function that reads top to bottom.

Every `log_every` steps it measures each hidden layer (stats.py) on the current batch, the
tracked unit on the fixed probe batch, and hands the rows to `on_log`; the rest of the steps
run the bare model. No files, no printing: the caller decides where rows go.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from bnexp.run.checkpoint import Checkpointer, restore_training_state, training_state
from bnexp.run.config import Config, eval_interval, log_interval, measure_interval
from bnexp.run.data import InMemoryData, batch_indices, probe_sample
from bnexp.run.device import configure_device, data_on, resolve_device
from bnexp.run.layers import hidden_blocks
from bnexp.run.losses import loss_spec, uses_accuracy
from bnexp.run.measure import optimisation_cells
from bnexp.run.models import build_model
from bnexp.run.probes import capture, frozen_running_stats, probe_pre_activations
from bnexp.run.stats import (
    AFTER_BACKWARD,
    AFTER_STEP,
    BEFORE_FORWARD,
    LayerInputs,
    empty_table,
    fill,
)
from bnexp.run.tally import StepTally

# on_log(metrics_row, layer_rows): metrics_row follows rundir.METRICS_COLUMNS; layer_rows are
# [step, layer, *stats.LAYER_STATS, *rundir.LAYER_MEASURE_COLUMNS] lists, one per hidden layer.
LogSink = Callable[[list, list[list]], None]


@dataclass
class Outcome:
    status: str  # "completed" or "diverged"
    steps_done: int  # optimiser steps taken
    diverged_at_step: int | None
    wall_seconds: float  # training loop only, data loading excluded
    steps_per_second: float
    # The trained network (in train mode), for measurements after training: its weights and
    # its norms' running statistics come from exactly `steps_done` updates and batches.
    model: nn.Module


def build_optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    opt = cfg.optim
    if opt.name.value == "adam":
        return torch.optim.Adam(model.parameters(), lr=opt.lr, weight_decay=opt.weight_decay)
    momentum = opt.momentum if opt.name.value == "momentum" else 0.0
    return torch.optim.SGD(
        model.parameters(), lr=opt.lr, momentum=momentum, weight_decay=opt.weight_decay
    )


@torch.no_grad()
def evaluate(
    model: nn.Module, data: InMemoryData, chunk: int = 2000, loss: str = "cross_entropy"
) -> tuple[float, float | None]:
    """Test loss (the training loss's mean, bnexp/run/losses.py) and accuracy (None for a loss
    without classes) in eval mode, i.e. with the norms' running statistics."""
    was_training = model.training
    model.eval()
    spec, with_accuracy = loss_spec(loss), uses_accuracy(loss)
    sums, corrects, terms = [], [], 0  # per chunk, read from the device at the end, at once
    for start in range(0, len(data.y_test), chunk):
        x = data.test_inputs[start : start + chunk]
        y = data.y_test[start : start + chunk]
        outputs = model(x)
        sums.append(spec.fn(outputs, y, reduction="sum"))  # the chunk's summed loss, unread
        terms += spec.elements(y)
        if with_accuracy:
            corrects.append((outputs.argmax(1) == y).sum())
    model.train(was_training)
    loss_sum = 0.0
    for value in torch.stack(sums).tolist():  # in chunk order: float32 sums added in float64
        loss_sum += value
    if not with_accuracy:
        return loss_sum / terms, None
    return loss_sum / terms, sum(torch.stack(corrects).tolist()) / len(data.y_test)


def measure_layers(
    cfg: Config, model: nn.Module, blocks, seen, probe_x: Tensor, table: Tensor | None = None
) -> Tensor:
    """The statistics read after this step's backward pass (stats.AFTER_BACKWARD: gradients,
    activations, the probe batch) into `table` (layers × stats), which holds the columns read
    before the forward pass (None: a new table, those read now)."""
    inputs = LayerInputs(
        norms=[block.norm for block in blocks],
        act=cfg.act.value,
        weights=[block.weight_layer.weight for block in blocks],
        pre=seen.pre,
        outputs=seen.act,
        grad_outputs=seen.grad_act,
        probe_pre=probe_pre_activations(model, blocks, probe_x),
        unit=cfg.track_unit,
    )
    if table is None:
        table = fill(empty_table(len(blocks), probe_x.device), BEFORE_FORWARD, inputs)
    return fill(table, AFTER_BACKWARD, inputs)


def train(
    cfg: Config,
    data: InMemoryData,
    on_log: LogSink,
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None,
    progress: Callable[[int, float], None] | None = None,
    on_capture: Callable[[int, list[Tensor]], None] | None = None,
    checkpointer: Checkpointer | None = None,
    resume: dict | None = None,
) -> Outcome:
    """Trains the network `cfg` describes for cfg.steps optimiser steps.

    on_capture(step, pre), if given, gets at every logged row the tensors its pre_* columns come
    from (each hidden layer's nonlinearity input on batch `step`), read-only: e.g. for
    TensorBoard's histograms (bnexp/run/tensorboard.py), with no extra forward pass.

    checkpointer, if given, saves the loop's state after logged steps it finds due; resume, a
    state it saved (bnexp/run/checkpoint.py), continues the run from there: the rows that follow
    are those an uninterrupted run writes (elapsed_s aside).

    Row t (a logged step t = 0, log_every, ..., and t = cfg.steps) describes the network after
    t updates, i.e. trained on batches 0 .. t-1:
    - test_loss/test_acc (eval mode, the norms' running statistics) and the norm columns
      (gamma_*, beta_*, running_mean_mean, running_var_mean) are read BEFORE the forward pass
      of batch t, so the running statistics are those of batches 0 .. t-1 (row 0: the initial
      buffers, mean 0 and variance 1);
    - the gradient, pre_*, act_* and grad_act columns come from the forward and backward pass
      of batch t on those weights (train mode: batch statistics), and the unit_* columns from
      the probe batch on those weights (train mode, running statistics left untouched);
    - update_ratio is ||ΔW|| / ||W|| of update t, the one that follows (empty on the final row);
    - train_loss/train_acc average batches s+1 .. t, each measured before its own update,
      where s is the previous logged step (row 0: batch 0 alone).
    The final row's forward pass (t = cfg.steps: no update follows) leaves the running
    statistics untouched, so the returned model has seen exactly cfg.steps batches, like the
    network of row t = cfg.steps.
    """
    device = resolve_device(cfg.device.value)  # bnexp/run/device.py
    configure_device(device, cfg.deterministic)
    torch.manual_seed(cfg.seed)
    # Built and initialised on the CPU, then moved: the same initial weights on any device.
    model = build_model(cfg, data.input_shape, data.num_outputs).to(device)
    model.train()
    blocks = hidden_blocks(model)
    optimizer = build_optimizer(cfg, model)
    lr = optimizer.param_groups[0]["lr"]
    # Batch order, augmentation and probe are drawn on the CPU (the same on any device); the
    # batch indices reach the device once per epoch (data.BatchOrder).
    batches = batch_indices(
        len(data.y_train), cfg.batch_size, cfg.seed, data.y_train, cfg.data.batch_classes,
        device=device,
    )  # fmt: skip
    augment_generator = torch.Generator().manual_seed(cfg.seed + 1)
    # A fixed class-balanced sample of the held-out set, the same for every run of a dataset.
    probe = probe_sample(data, cfg.probe_size)
    data = data_on(data, device)
    probe_x = data.test_inputs[probe.to(device)]
    loss_name = cfg.loss.value
    loss_fn, with_accuracy = loss_spec(loss_name).fn, uses_accuracy(loss_name)
    norms = [block.norm for block in blocks]
    log_every, eval_every = log_interval(cfg), eval_interval(cfg, len(data.y_test))
    measure_every = measure_interval(cfg)  # None: measure.ics and measure.landscape are off
    no_layer_cells, no_metric_cells = [[None, None] for _ in blocks], [None, None, None]
    first_step, elapsed_before = 0, 0.0  # a resumed run: from its checkpoint
    if resume is not None:
        restore_training_state(resume, model=model, optimizer=optimizer, batches=batches,
                               augment_generator=augment_generator)  # fmt: skip
        first_step, elapsed_before = resume["step"], resume["elapsed_s"]

    def elapsed() -> float:  # s of training, the sessions before a resume included
        return time.perf_counter() - start + elapsed_before

    def rate(steps: int) -> float:  # steps/s of this session
        return (steps - first_step) / max(elapsed() - elapsed_before, 1e-9)

    # Train loss and accuracy are averaged over the steps since the previous row.
    tally = StepTally(device, log_every + 1, with_accuracy)
    start = time.perf_counter()
    for step in range(first_step, cfg.steps + 1):
        index = next(batches)
        x, y = data.train_batch(index)
        if augment is not None:
            x = augment(x, augment_generator)
        final = step == cfg.steps
        logged = step % log_every == 0 or final
        test_loss, test_acc, table = None, None, None
        if logged:  # the network after `step` updates, before batch `step` moves the running stats
            if step % eval_every == 0 or final:
                test_loss, test_acc = evaluate(model, data, loss=loss_name)
            table = fill(empty_table(len(blocks), device), BEFORE_FORWARD, LayerInputs(norms=norms))
        layer_cells, metric_cells = no_layer_cells, no_metric_cells
        if logged and not final and measure_every is not None and step % measure_every == 0:
            # Before the forward pass, outside capture(): they leave model, optimizer and RNG as
            # they were (bnexp/run/sandbox.py), so the run trains as it would without them.
            layer_cells, metric_cells = optimisation_cells(cfg, model, blocks, x, y, optimizer)

        with (
            capture(blocks) if logged else contextlib.nullcontext() as seen,
            frozen_running_stats(model) if final else contextlib.nullcontext(),
        ):
            logits = model(x)
            loss = loss_fn(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()

        # On a GPU the loss is read at log steps only (bnexp/run/tally.py): a divergence
        # between two log steps is found at the next one, and reported at its own step.
        diverged = tally.add(step, loss, logits, y)
        if diverged is None and logged and not tally.immediate:
            diverged = tally.check()
        if diverged is not None:  # a divergence is a result: record it and stop
            here = diverged.step == step  # else an unlogged step: nothing was evaluated there
            on_log([diverged.step, diverged.loss, None, test_loss if here else None,
                    test_acc if here else None, lr, *(metric_cells if here else no_metric_cells),
                    round(elapsed(), 3)], [])  # fmt: skip
            return Outcome("diverged", diverged.step, diverged.step, elapsed(), rate(step), model)

        if not logged:
            optimizer.step()
            continue

        stats = measure_layers(cfg, model, blocks, seen, probe_x, table)
        if not final:
            weights = [block.weight_layer.weight for block in blocks]
            weights_before = [w.detach().clone() for w in weights]
            optimizer.step()
            fill(stats, AFTER_STEP, LayerInputs(weights=weights, weights_before=weights_before))
        train_loss, train_acc = tally.read()  # train_acc None for regression: no classes
        on_log(
            [step, train_loss, train_acc, test_loss, test_acc, lr, *metric_cells,
             round(elapsed(), 3)],
            [[step, layer, *values, *cells]
             for layer, (values, cells) in enumerate(zip(stats.tolist(), layer_cells, strict=True), start=1)],
        )  # fmt: skip
        if on_capture is not None:
            on_capture(step, seen.pre)
        if progress is not None:
            progress(step, train_loss)
        if checkpointer is not None and not final and checkpointer.due(step):
            checkpointer.save(
                training_state(step=step + 1, model=model, optimizer=optimizer, batches=batches,
                               augment_generator=augment_generator, elapsed_s=elapsed())
            )  # fmt: skip

    return Outcome("completed", cfg.steps, None, elapsed(), rate(cfg.steps), model)
