"""Cost of a checkpoint (bnexp/run/checkpoint.py) and of resuming, on this machine.

    .venv/bin/python scripts/bench_checkpoint.py

For the headline MLP (depth 10, width 100, batch norm, SGD) and a CNN (depth 3, width 32),
times `save` of a real training state (ms each, median of 20) and reports it as a share of a
run checkpointing at the default interval (CHECKPOINT_EVERY_S of wall time), plus the time to
load and restore a checkpoint (the resume overhead before the first resumed step). One JSON
line per model.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from bnexp.run.checkpoint import (
    CHECKPOINT_EVERY_S,
    Checkpointer,
    load_checkpoint,
    restore_training_state,
    training_state,
)
from bnexp.run.config import Config, config_hash
from bnexp.run.data import batch_indices
from bnexp.run.models import build_model
from bnexp.run.train import build_optimizer


def config(**overrides) -> Config:
    cfg = OmegaConf.structured(Config)
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value, merge=False)
    return OmegaConf.to_object(cfg)


def measure(name: str, cfg: Config, input_shape: tuple[int, int, int]) -> dict:
    torch.set_num_threads(1)
    model = build_model(cfg, input_shape, 10)
    optimizer = build_optimizer(cfg, model)
    x = torch.randn(cfg.batch_size, *input_shape)
    torch.nn.functional.cross_entropy(model(x), torch.zeros(len(x), dtype=torch.long)).backward()
    optimizer.step()  # optimizer state exists (momentum buffers)
    batches, generator = batch_indices(50_000, cfg.batch_size, 0), torch.Generator()
    digest = config_hash(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        rows = lambda: {"metrics_rows": 1, "layers_rows": cfg.depth}  # noqa: E731
        checkpointer = Checkpointer(Path(tmp), digest, 1, rows)
        for _ in range(20):
            state = training_state(step=1, model=model, optimizer=optimizer, batches=batches,
                                   augment_generator=generator, elapsed_s=0.0)  # fmt: skip
            checkpointer.save(state)
        size = checkpointer.path.stat().st_size
        loads = []
        for _ in range(10):
            started = time.perf_counter()
            state = load_checkpoint(Path(tmp), digest)
            restore_training_state(state, model=model, optimizer=optimizer, batches=batches,
                                   augment_generator=generator)  # fmt: skip
            loads.append((time.perf_counter() - started) * 1000)
    save_ms = statistics.median(checkpointer.costs_ms)
    return {
        "model": name,
        "checkpoint_bytes": size,
        "save_ms_median": round(save_ms, 2),
        "save_ms_max": round(max(checkpointer.costs_ms), 2),
        "share_at_default_interval_pct": round(100 * save_ms / 1000 / CHECKPOINT_EVERY_S, 4),
        "load_and_restore_ms_median": round(statistics.median(loads), 2),
    }


if __name__ == "__main__":
    mlp = config(depth=10, width=100, batch_size=60)
    cnn = config(**{"model.name": "cnn", "depth": 3, "width": 32, "batch_size": 128})
    print(json.dumps(measure("mlp depth 10 width 100", mlp, (1, 28, 28))))
    print(json.dumps(measure("cnn depth 3 width 32", cnn, (3, 32, 32))))
