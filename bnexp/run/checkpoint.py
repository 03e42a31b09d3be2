"""Checkpoints: everything a run needs to continue as if it had never stopped.

A checkpoint is taken right after a logged row t was written and update t applied, so the
train-loss accumulators are empty and every CSV row up to step t is on disk. It holds:
- `step`: the next step to run (t + 1);
- the model's parameters and buffers (running statistics, batch renorm's step counter), the
  optimizer's state (momentum buffers, Adam's moments and step counts);
- the noisy norms' per-layer pass counters (`noise_steps`: each step's noise generator is
  seeded from it, bnexp/run/layers.py), which are attributes, not buffers;
- every random state the loop draws from: the batch order (its generator before the current
  epoch's permutation and the position in it, bnexp/run/data.py BatchOrder), the augmentation
  generator, torch's global generator (and CUDA's, on a GPU);
- the row counts of metrics.csv and layers.csv, to which a resumed run cuts the files back;
- `elapsed_s` so far, so the elapsed_s column goes on from where it was;
- `device` (cpu or cuda) and `device_name`: a run's numbers differ between devices, so the
  runner refuses to resume a checkpoint on another kind of device (bnexp/run/device.py);
- the config hash, so a checkpoint is only ever resumed by the same configuration.

Written to a temporary file and renamed (os.replace), so a kill at any moment leaves either
the previous checkpoint or the new one, never a torn one. Not fsync'ed: a killed process
(SIGKILL, OOM killer, preemption) loses nothing the kernel has; a machine that loses power may
leave an unreadable file, which `load_checkpoint` reports and the run then starts from step 0.

When: `checkpoint_every` steps (at the first log step that many steps after the previous
checkpoint; 0: never), or by default (null) by wall-clock time: at the first log step
CHECKPOINT_EVERY_S seconds after the previous checkpoint (or the start), and never more often
than keeps the measured cost under MAX_COST_FRACTION of the run's time. A run shorter than
CHECKPOINT_EVERY_S writes none: its checkpoint would cost more than it could save.
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bnexp.run.device import device_name
from bnexp.run.layers import NOISY_LAYERS

log = logging.getLogger("bnexp")

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_EVERY_S = 60.0  # default interval (s of wall time) between checkpoints
MAX_COST_FRACTION = 0.02  # by default a checkpoint costs at most this share of the run's time
FORMAT = 1  # bumped when the checkpoint's content changes; another format is not resumed


def noisy_layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, NOISY_LAYERS)]


def training_state(
    *, step: int, model: nn.Module, optimizer: torch.optim.Optimizer, batches, augment_generator,
    elapsed_s: float,
) -> dict[str, Any]:  # fmt: skip
    """The state of the loop before step `step` (see the module docstring)."""
    device = next(model.parameters()).device
    state = {
        "format": FORMAT,
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "noise_steps": [layer.noise_steps for layer in noisy_layers(model)],
        "batches": batches.state_dict(),
        "augment_generator": augment_generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        "elapsed_s": elapsed_s,
        "device": device.type,
        "device_name": device_name(device),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    return state


def restore_training_state(
    state: dict[str, Any], *, model: nn.Module, optimizer: torch.optim.Optimizer, batches,
    augment_generator,
) -> None:  # fmt: skip
    """Puts the loop's objects back into the state `training_state` saved."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    layers = noisy_layers(model)
    if len(layers) != len(state["noise_steps"]):
        raise ValueError("checkpoint: the model's noisy layers do not match")
    for layer, steps in zip(layers, state["noise_steps"]):
        layer.noise_steps = int(steps)
    batches.load_state_dict(state["batches"])
    augment_generator.set_state(state["augment_generator"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])


def save_atomic(state: dict[str, Any], path: Path) -> None:
    """torch.save to <path>.tmp, then renamed over `path`: never a torn file."""
    tmp = path.with_name(path.name + ".tmp")
    buffer = io.BytesIO()  # serialised in memory first: a failed write is then a plain
    torch.save(state, buffer)  # OSError with its errno (torch's own writer raises RuntimeError)
    try:
        with open(tmp, "wb") as f:
            f.write(buffer.getbuffer())
        os.replace(tmp, path)
    except BaseException:  # e.g. a full disk: the previous checkpoint stays, whole
        tmp.unlink(missing_ok=True)
        raise


def load_checkpoint(run_dir: Path, digest: str) -> dict[str, Any] | None:
    """The run directory's checkpoint if it belongs to configuration `digest`, else None (with
    a log line saying why, when there is a file)."""
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a torn or foreign file: start again, say so
        log.warning("%s cannot be read (%s): the run starts again from step 0.", path, error)
        return None
    if state.get("format") != FORMAT or state.get("config_hash") != digest:
        log.warning(
            "%s belongs to another configuration or bnexp version: the run starts again from step 0.",
            path,
        )
        return None
    return state


class Checkpointer:
    """Decides when to checkpoint and writes the file; `rows()` gives the CSV row counts."""

    def __init__(
        self, run_dir: Path, digest: str, every_steps: int | None,
        rows: Callable[[], dict[str, int]], start_step: int = 0,
    ):  # fmt: skip
        self.path = Path(run_dir) / CHECKPOINT_FILE
        self.digest, self.every_steps, self.rows = digest, every_steps, rows
        self.last_step = start_step
        self.last_time = time.perf_counter()
        self.interval_s = CHECKPOINT_EVERY_S
        self.costs_ms: list[float] = []  # each checkpoint's cost (ms), for the bench

    def due(self, step: int) -> bool:
        """Whether to checkpoint after logged step `step`."""
        if self.every_steps is not None:
            return self.every_steps > 0 and step - self.last_step >= self.every_steps
        return time.perf_counter() - self.last_time >= self.interval_s

    def save(self, state: dict[str, Any]) -> None:
        started = time.perf_counter()
        save_atomic({**state, "config_hash": self.digest, **self.rows()}, self.path)
        now = time.perf_counter()
        cost = now - started
        self.costs_ms.append(cost * 1000)
        self.last_step, self.last_time = state["step"] - 1, now
        # By default never more than MAX_COST_FRACTION of the time: a slow disk spaces them out.
        self.interval_s = max(CHECKPOINT_EVERY_S, cost / MAX_COST_FRACTION)

    def remove(self) -> None:
        """A finished run needs no checkpoint (a sweep of hundreds would keep hundreds)."""
        for path in (self.path, self.path.with_name(self.path.name + ".tmp")):
            path.unlink(missing_ok=True)
