"""Small synthetic datasets in the exact on-disk formats torchvision reads, for tests.

    write_cifar10(root)   <root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
                          (the pickled dicts of the published "python version" of CIFAR-10)
    write_mnist(root)     <root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte
                          (the unpacked IDX files of the published MNIST; gz=True: as .gz)
    write_idx_files(dir)  the same four files in any directory (Fashion-MNIST's layout too)
    cifar10_archive(root) <root>/cifar-10-python.tar.gz holding cifar-10-batches-py/

The images are learnable: each class has its own mean intensity/colour plus noise, so a few
optimiser steps lower the loss. torchvision's CIFAR10 verifies each file's MD5 against the
published checksums, which synthetic files cannot match: `patch_cifar10_checksums(monkeypatch,
root)` swaps the expected checksums for the synthetic files' own (so the real check still runs,
against these files), inside the test only.

Use from a test module in tests/: `from synthetic_data import write_cifar10, ...`.
"""

from __future__ import annotations

import gzip
import hashlib
import pickle
import struct
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_TRAIN_FILES = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_TEST_FILE = "test_batch"
CIFAR_META_FILE = "batches.meta"
CIFAR_LABEL_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


@dataclass
class Arrays:
    """What was written: images as N×C×H×W uint8 (the layout bnexp keeps), labels as int64."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def class_images(
    labels: np.ndarray, channels: int, size: int, rng: np.random.Generator
) -> np.ndarray:
    """uint8 N×C×size×size images whose per-channel mean depends on the label."""
    n = len(labels)
    base = 40 + 18 * labels[:, None].astype(np.float64) + 20 * np.arange(channels)[None, :]  # N×C
    noise = rng.normal(0.0, 30.0, size=(n, channels, size, size))
    return np.clip(base[:, :, None, None] + noise, 0, 255).astype(np.uint8)


def _labels(n: int, rng: np.random.Generator) -> np.ndarray:
    return (np.arange(n) % 10)[rng.permutation(n)].astype(np.int64)


def write_cifar10(root: str | Path, per_batch: int = 20, test: int = 40, seed: int = 0) -> Arrays:
    """A synthetic CIFAR-10: 5 training batches of `per_batch` images and `test` test images."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / CIFAR_FOLDER
    folder.mkdir(parents=True, exist_ok=True)

    def write_batch(name: str, n: int, label: str) -> tuple[np.ndarray, np.ndarray]:
        labels = _labels(n, rng)
        images = class_images(labels, 3, 32, rng)
        entry = {
            "batch_label": label,
            "labels": [int(v) for v in labels],
            # The published layout: one row of 3072 bytes per image, the 1024 red values
            # first (row-major 32×32), then green, then blue.
            "data": images.reshape(n, 3 * 32 * 32),
            "filenames": [f"synthetic_{name}_{i}.png" for i in range(n)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f, protocol=2)
        return images, labels

    train = [
        write_batch(name, per_batch, f"training batch {i + 1} of 5")
        for i, name in enumerate(CIFAR_TRAIN_FILES)
    ]
    x_test, y_test = write_batch(CIFAR_TEST_FILE, test, "testing batch 1 of 1")
    meta = {"num_cases_per_batch": per_batch, "label_names": CIFAR_LABEL_NAMES, "num_vis": 3072}
    with open(folder / CIFAR_META_FILE, "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return Arrays(
        np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train]), x_test, y_test
    )


def md5(path: str | Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def patch_cifar10_checksums(monkeypatch, root: str | Path) -> None:
    """Make torchvision's CIFAR10 expect the MD5s of the synthetic files under `root`."""
    from torchvision.datasets import CIFAR10

    folder = Path(root) / CIFAR_FOLDER
    monkeypatch.setattr(
        CIFAR10, "train_list", [[name, md5(folder / name)] for name in CIFAR_TRAIN_FILES]
    )
    monkeypatch.setattr(CIFAR10, "test_list", [[CIFAR_TEST_FILE, md5(folder / CIFAR_TEST_FILE)]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": md5(folder / CIFAR_META_FILE)})


def cifar10_archive(root: str | Path, monkeypatch=None, **kwargs) -> Arrays:
    """The synthetic CIFAR-10 packed as <root>/cifar-10-python.tar.gz (nothing extracted).

    With `monkeypatch`, torchvision's expected checksums (archive and files) become the
    synthetic ones.
    """
    from torchvision.datasets import CIFAR10

    root = Path(root)
    staging = root / "_staging"
    arrays = write_cifar10(staging, **kwargs)
    archive = root / CIFAR10.filename
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(staging / CIFAR_FOLDER, arcname=CIFAR_FOLDER)
    if monkeypatch is not None:
        patch_cifar10_checksums(monkeypatch, staging)
        monkeypatch.setattr(CIFAR10, "tgz_md5", md5(archive))
    for path in sorted((staging / CIFAR_FOLDER).iterdir()):
        path.unlink()
    (staging / CIFAR_FOLDER).rmdir()
    staging.rmdir()
    return arrays


def _write_idx(path: Path, array: np.ndarray) -> None:
    """IDX: 0x00 0x00, type 0x08 (ubyte), number of dims; big-endian int32 sizes; the bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}i", *array.shape
    )
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_idx_files(
    folder: str | Path, train: int = 200, test: int = 100, seed: int = 0, gz: bool | tuple = False
) -> Arrays:
    """The four IDX files of an MNIST-format dataset in `folder`: unpacked, or gzipped as
    `<name>.gz` (the published form, and Debian's) where `gz` is True or names the file."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for prefix, n in (("train", train), ("t10k", test)):
        labels = _labels(n, rng)
        images = class_images(labels, 1, 28, rng)
        for name, array in ((f"{prefix}-images-idx3-ubyte", images[:, 0]),
                            (f"{prefix}-labels-idx1-ubyte", labels.astype(np.uint8))):  # fmt: skip
            _write_idx(folder / name, array)
            if gz is True or (isinstance(gz, tuple) and name in gz):
                data = (folder / name).read_bytes()
                (folder / f"{name}.gz").write_bytes(gzip.compress(data, mtime=0))
                (folder / name).unlink()
        out += [images, labels]
    return Arrays(*out)


def write_mnist(
    root: str | Path, train: int = 200, test: int = 100, seed: int = 0, gz: bool | tuple = False
) -> Arrays:
    """A synthetic MNIST as the four IDX files under <root>/MNIST/raw/ (gz: see write_idx_files)."""
    return write_idx_files(Path(root) / "MNIST" / "raw", train, test, seed, gz)
