"""The training loss and accuracy of the steps between two log rows, and the first non-finite
loss among them, read from the device once per log step.

On the CPU every step's loss is read at once (`loss.item()` costs nothing there) and a
non-finite loss stops the run at its own step. On a GPU reading a value waits for every queued
kernel, so each step's loss goes into a slot of a device buffer and its correct predictions into
a device counter; the buffer is read at the log step (one transfer). A run that diverges
between two log steps then trains on (with NaN weights) until the log step, and reports the
first non-finite step as the CPU does: the CSV rows are the same, only `Outcome.model` has taken
more (NaN) updates. Losses are summed on the host in step order in both cases, so the averages
are the same numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

# Device types whose values are read every step (no synchronisation to avoid).
IMMEDIATE_DEVICES = frozenset({"cpu"})


@dataclass(frozen=True)
class Divergence:
    step: int
    loss: float  # the non-finite training loss of that step


class StepTally:
    """Accumulates the steps since the last row; `read()` returns their averages."""

    def __init__(self, device: torch.device, capacity: int, with_accuracy: bool):
        self.immediate = device.type in IMMEDIATE_DEVICES
        self.with_accuracy = with_accuracy
        self.first_step: int | None = None
        self.steps = 0
        self.samples = 0
        self.loss_values: list[float] = []  # immediate: the steps' losses
        self.correct = 0  # immediate: correct predictions so far
        if not self.immediate:
            self.buffer = torch.empty(capacity, dtype=torch.float32, device=device)
            self.correct_dev = torch.zeros((), dtype=torch.int64, device=device)

    def add(self, step: int, loss: Tensor, logits: Tensor, y: Tensor) -> Divergence | None:
        """One training step's loss (a 0-d tensor) and outputs. Immediate: returns the step's
        Divergence if its loss is not finite; deferred: always None (see `check`)."""
        if self.first_step is None:
            self.first_step = step
        self.steps += 1
        self.samples += len(y)
        if self.immediate:
            value = loss.item()
            self.loss_values.append(value)
            if not math.isfinite(value):
                return Divergence(step, value)
            if self.with_accuracy:
                # Counted in numpy: a third of the cost of the same ops in torch (3 vs 6-25 µs).
                predicted = logits.detach().numpy().argmax(1)
                self.correct += int(np.count_nonzero(predicted == y.numpy()))
            return None
        if self.steps > self.buffer.numel():  # a longer window than the caller announced
            self.buffer = torch.cat([self.buffer, torch.empty_like(self.buffer)])
        self.buffer[self.steps - 1] = loss.detach()
        if self.with_accuracy:
            self.correct_dev += (logits.detach().argmax(1) == y).sum()
        return None

    def check(self) -> Divergence | None:
        """The first non-finite loss since the last row (reads a deferred buffer: call it at
        log steps only)."""
        self._fetch()
        for offset, value in enumerate(self.loss_values):
            if not math.isfinite(value):
                return Divergence(self.first_step + offset, value)
        return None

    def read(self) -> tuple[float, float | None]:
        """(mean training loss, accuracy or None) of the steps since the last row; resets."""
        self._fetch()
        total = 0.0
        for value in self.loss_values:  # in step order, as the losses were produced
            total += value
        train_loss = total / self.steps
        train_acc = self.correct / self.samples if self.with_accuracy else None
        self.first_step, self.steps, self.samples = None, 0, 0
        self.loss_values, self.correct = [], 0
        if not self.immediate:
            self.correct_dev.zero_()
        return train_loss, train_acc

    def _fetch(self) -> None:
        """Deferred: the buffered losses and the correct count to the host, one transfer."""
        if self.immediate or len(self.loss_values) == self.steps:
            return
        values = torch.cat([self.buffer[: self.steps].double(), self.correct_dev.double()[None]])
        *losses, correct = values.tolist()  # float32 -> float64 is exact, as in loss.item()
        self.loss_values, self.correct = losses, int(correct)
