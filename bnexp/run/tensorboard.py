"""logger=tensorboard: a run's logged rows, also as TensorBoard events in <run dir>/tb/.

`tensorboard --logdir results/sweeps/DATE/TIME` then shows every run of a sweep side by side,
live while they train. Nothing is measured here: the scalars are the values of the metrics.csv
and layers.csv rows the run writes anyway (the CSVs stay the source of truth), and the one
histogram per hidden layer and log step is of the tensor the layer's pre_* columns come from
(the input of its nonlinearity on that step's training batch, captured by the training loop).

    train/loss, train/acc, test/loss, test/acc     metrics.csv (test: at evaluated steps)
    grad_w_mean_abs/layer_01, grad_w_norm/...,     layers.csv, one tag per hidden layer
    act_sat_frac/..., gamma_mean/..., beta_mean/...
    pre_activation/layer_01                        histogram (HISTOGRAM_BINS equal-width bins
                                                   from the batch's min to its max)

Empty CSV cells (not measured, or no gamma without a norm) are not written; an infinite loss is.
Layer numbers are zero-padded to the depth's digits so that TensorBoard sorts them in order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from bnexp.errors import UserError
from bnexp.rundir import LAYERS_COLUMNS, METRICS_COLUMNS

TB_DIR = "tb"  # inside the run directory
EVENT_FILE_PREFIX = "events.out.tfevents."
INSTALL_HINT = "pip install bnexp[tensorboard]"

# metrics.csv column -> tag
METRIC_TAGS = {
    "train_loss": "train/loss",
    "train_acc": "train/acc",
    "test_loss": "test/loss",
    "test_acc": "test/acc",
}
# layers.csv columns written per layer, as <column>/layer_NN
LAYER_SCALARS = ("grad_w_mean_abs", "grad_w_norm", "act_sat_frac", "gamma_mean", "beta_mean")
HISTOGRAM_TAG = "pre_activation"
HISTOGRAM_BINS = 64
FLUSH_SECONDS = 10  # how stale a live TensorBoard may be (SummaryWriter's default is 120 s)

_METRIC_INDEX = {column: METRICS_COLUMNS.index(column) for column in METRIC_TAGS}
_LAYER_INDEX = {column: LAYERS_COLUMNS.index(column) for column in LAYER_SCALARS}


def summary_writer_class() -> type:
    """torch's SummaryWriter; a UserError naming the install command when tensorboard is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise UserError(
            f"logger=tensorboard needs the tensorboard package, which is not installed "
            f"({error}). Install it with `{INSTALL_HINT}` (or `pip install tensorboard`), "
            "or choose logger=none."
        ) from None
    return SummaryWriter


def layer_tag(column: str, layer: int, depth: int) -> str:
    return f"{column}/layer_{layer:0{len(str(depth))}d}"


class TensorBoardSink:
    """Writes the rows handed to the runner's on_log, and the captured pre-activations, as events."""

    def __init__(self, run_dir: str | Path, depth: int):
        writer_class = summary_writer_class()
        self.log_dir = Path(run_dir) / TB_DIR
        # A run started again in the same directory rewrites its CSVs from step 0: its old
        # events would otherwise show as a second curve over the same steps.
        if self.log_dir.is_dir():
            for old in self.log_dir.glob(EVENT_FILE_PREFIX + "*"):
                old.unlink()
        self.depth = depth
        self.writer = writer_class(log_dir=str(self.log_dir), flush_secs=FLUSH_SECONDS)

    def log(self, metrics_row: Sequence, layer_rows: Sequence[Sequence]) -> None:
        """One metrics.csv row and its layers.csv rows, as the runner writes them."""
        step = int(metrics_row[0])
        for column, tag in METRIC_TAGS.items():
            self._scalar(tag, metrics_row[_METRIC_INDEX[column]], step)
        for row in layer_rows:
            layer = int(row[1])
            for column, index in _LAYER_INDEX.items():
                self._scalar(layer_tag(column, layer, self.depth), row[index], step)

    def histograms(self, step: int, pre: Sequence[Tensor | None]) -> None:
        """One histogram per hidden layer of its nonlinearity's input (layer 1 first)."""
        for layer, values in enumerate(pre, start=1):
            if values is not None:
                self._histogram(layer_tag(HISTOGRAM_TAG, layer, self.depth), values, step)

    def close(self) -> None:
        self.writer.close()

    def _scalar(self, tag: str, value: object, step: int) -> None:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return  # an empty CSV cell: not measured at this step
        self.writer.add_scalar(tag, float(value), step)

    def _histogram(self, tag: str, values: Tensor, step: int) -> None:
        # On the CPU: torch's CUDA histc has no deterministic kernel (deterministic=true).
        flat = values.detach().reshape(-1).float().cpu()
        if flat.numel() == 0:
            return
        low, high = (float(v) for v in torch.aminmax(flat))
        if not (math.isfinite(low) and math.isfinite(high)):  # a NaN or inf shows in min/max
            flat = flat[torch.isfinite(flat)]  # (checking first would cost 6 ms per 1.5M values)
            if flat.numel() == 0:
                return
            low, high = (float(v) for v in torch.aminmax(flat))
        if high > low:
            counts = torch.histc(flat, bins=HISTOGRAM_BINS, min=low, max=high)
            edges = torch.linspace(low, high, HISTOGRAM_BINS + 1)[1:].tolist()
        else:  # every value equal: one bucket
            counts, edges = torch.tensor([float(flat.numel())]), [high]
        # TensorBoard's buckets hold (previous limit, limit]: an empty first bucket ending at the
        # minimum makes the leftmost edge part of the histogram (as torch's own add_histogram).
        self.writer.add_histogram_raw(
            tag,
            min=low,
            max=high,
            num=flat.numel(),
            sum=float(flat.sum(dtype=torch.float64)),
            sum_squares=float(torch.dot(flat, flat)),  # float32: for the display only
            bucket_limits=[low, *edges],
            bucket_counts=[0.0, *counts.tolist()],
            global_step=step,
        )


def open_logger(name: str, run_dir: str | Path, depth: int) -> TensorBoardSink | None:
    """The sink of config `logger` (None for logger=none)."""
    if name == "tensorboard":
        return TensorBoardSink(run_dir, depth)
    return None
