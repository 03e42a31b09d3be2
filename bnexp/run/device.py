"""Where a run computes: `device=auto|cpu|cuda` and `deterministic`, resolved once per run.

The run's model, its in-memory dataset tensors, the probe batch, the augmentation and the
per-layer statistics live on the resolved device; values reach the host once per log step
(bnexp/run/tally.py, bnexp/run/stats.py). What stays on the CPU whatever the device: every random
draw that decides *which* samples a run sees (the batch order, the augmentation's crops and
flips, the probe batch, the weights' initial values), so a CUDA run and a CPU run of one seed
train on the same batches from the same initial weights; their numbers then differ only by
float32 arithmetic done in another order (docs/design.md §6).

`mps` is not offered: the statistics sum squares in float64 (bnexp/run/stats.py l2_norm), which
Apple's MPS backend does not implement, and there is no machine here to find out what else
would differ.
"""

from __future__ import annotations

import logging
import os
import platform
from pathlib import Path

import torch

from bnexp.errors import UserError

log = logging.getLogger("bnexp")

DEVICE_CHOICES = ("auto", "cpu", "cuda")
# cuBLAS picks its reduction split by workspace; a fixed configuration makes its GEMMs
# deterministic (CUDA >= 10.2; PyTorch's reproducibility notes). Read when cuBLAS first
# allocates its workspace, so it must be in the environment before the first CUDA matmul.
CUBLAS_WORKSPACE_ENV = "CUBLAS_WORKSPACE_CONFIG"
CUBLAS_WORKSPACE_VALUE = ":4096:8"


def cuda_available() -> bool:
    return torch.cuda.is_available()


def resolve_device(requested: str) -> torch.device:
    """The device a run uses: `auto` is cuda when a CUDA device is usable, else cpu. A request
    this machine cannot serve is a UserError (key, value, the valid choices here)."""
    if requested not in DEVICE_CHOICES:
        raise UserError(
            f"device={requested} is not allowed: choose one of {', '.join(DEVICE_CHOICES)}."
        )
    if requested == "auto":
        requested = "cuda" if cuda_available() else "cpu"
    if requested == "cuda" and not cuda_available():
        raise UserError(
            f"device=cuda is not possible here: torch {torch.__version__} sees no CUDA device "
            "(torch.cuda.is_available() is False). Valid choices on this machine: device=cpu "
            "or device=auto (cuda when there is one, else cpu)."
        )
    # No index: naming one would initialise CUDA, which configure_device must precede.
    return torch.device(requested)


def device_label(device: torch.device) -> str:
    """meta.json's `device`: `cpu`, or `cuda:N` with the index of the GPU in use."""
    if device.type == "cuda":
        return f"cuda:{device.index if device.index is not None else torch.cuda.current_device()}"
    return device.type


def cpu_name() -> str:
    """The processor's model name (Linux: /proc/cpuinfo), else what platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_name(device: torch.device) -> str:
    """What meta.json's `device_name` says: the GPU's or the CPU's model name."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


def configure_device(device: torch.device, deterministic: bool) -> None:
    """Sets PyTorch's switches for a run on `device`. On the CPU nothing is touched: bnexp's
    CPU runs are bit-reproducible as they are (same seed, same machine and torch build), and
    leaving the switches alone keeps their numbers what they were before the key existed.

    On CUDA, matrix products and convolutions compute in full float32: TF32 (on by default
    for cuDNN's convolutions on Ampere and later) keeps 10 mantissa bits, so it would move
    every number by ~1e-3 relative, 10^4 times float32's rounding, and a GPU run would no
    longer measure what a CPU run measures (gradients of 1e-25 included).

    deterministic=true sets the cuBLAS workspace variable (unless already set),
    torch.use_deterministic_algorithms(True, warn_only=True) and cudnn.deterministic; false
    sets them back, since a sweep worker process runs one job after another. warn_only: an op
    with no deterministic CUDA kernel (PyTorch lists e.g. some of nll_loss's and histc) warns,
    naming itself, instead of stopping the run; its sums may then still vary between reruns
    (scripts/gpu_check.py reruns each model twice to find out). cudnn.benchmark is off either way:
    it times candidate convolution algorithms and keeps the fastest, which may differ between
    runs."""
    if device.type != "cuda":
        return
    if deterministic:
        if os.environ.get(CUBLAS_WORKSPACE_ENV) is None:
            if torch.cuda.is_initialized():  # a previous job in this process used CUDA
                log.warning(
                    "deterministic=true: CUDA was already used in this process before %s was "
                    "set; cuBLAS may not honour it. Set %s=%s in the environment to be sure.",
                    CUBLAS_WORKSPACE_ENV, CUBLAS_WORKSPACE_ENV, CUBLAS_WORKSPACE_VALUE,
                )  # fmt: skip
            os.environ[CUBLAS_WORKSPACE_ENV] = CUBLAS_WORKSPACE_VALUE
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = False


def data_on(data, device: torch.device):
    """The dataset's tensors that training reads (inputs and targets of both splits) on
    `device`: a shallow copy with those moved; the data itself on the CPU."""
    if device.type == "cpu":
        return data
    import copy

    moved = copy.copy(data)
    for name in ("train_inputs", "y_train", "test_inputs", "y_test"):
        setattr(moved, name, getattr(data, name).to(device))
    return moved


def check_resume_device(checkpoint: dict, device: torch.device, checkpoint_path: Path) -> None:
    """A run's numbers differ between devices, so a checkpoint is only resumed on the kind of
    device that wrote it (a checkpoint from before the key existed was written on the CPU)."""
    written_on = checkpoint.get("device", "cpu")
    if written_on != device.type:
        raise UserError(
            f"device={device.type} cannot resume {checkpoint_path}: it was written by a run on "
            f"{written_on} ({checkpoint.get('device_name') or 'unknown model'}), and a run's "
            f"numbers differ between devices. Run the same command with device={written_on} "
            f"to resume it, or delete {checkpoint_path} to start this run again from step 0 on "
            f"{device.type}."
        )


__all__ = [
    "DEVICE_CHOICES",
    "configure_device",
    "check_resume_device",
    "data_on",
    "device_label",
    "device_name",
    "resolve_device",
]
