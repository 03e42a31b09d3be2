"""MNIST-format datasets (MNIST, Fashion-MNIST) from their four IDX files, read by torchvision.

torchvision's readers want the four files unpacked under `<root>/<Folder>/raw/` (Folder is the
dataset class's name: `MNIST`, `FashionMNIST`); the files are published gzipped. This module
unpacks `.gz` files found there, or copies them unpacked from another directory (a system
copy such as Debian's), without ever writing to where they came from. Each file is written
to a temporary name and renamed, so that parallel jobs of a sweep never read half a file.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import shutil
import tempfile
import zlib
from pathlib import Path

from torch import Tensor

from bnexp.errors import UserError

IDX_FILES = (
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
)  # fmt: skip


def missing_files(folder: Path) -> list[str]:
    """The IDX files that `folder` holds neither unpacked nor as `<name>.gz`."""
    return [
        name
        for name in IDX_FILES
        if not (folder / name).is_file() and not (folder / f"{name}.gz").is_file()
    ]


def gunzip(source: Path, target: Path) -> None:
    """Unpacks `source` (gzip) into `target`, atomically; `source` is only read."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=".part"
        )
    except OSError as error:
        raise UserError(
            f"cannot unpack {source} into {target.parent}: the directory cannot be written "
            f"({error}). Set data.root to a writable directory."
        ) from None
    try:
        with gzip.open(source, "rb") as packed, os.fdopen(handle, "wb") as unpacked:
            shutil.copyfileobj(packed, unpacked, length=1 << 20)
        os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide it from other users of data.root
        os.replace(temporary, target)
    except (OSError, EOFError, zlib.error) as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if isinstance(error, gzip.BadGzipFile | EOFError | zlib.error):
            raise UserError(
                f"cannot unpack {source}: it is not a complete gzip file ({type(error).__name__}: "
                f"{error}). Delete it and get the file again."
            ) from None
        raise UserError(
            f"cannot unpack {source} into {target} ({type(error).__name__}: {error})."
        ) from None


def unpack_in_place(raw: Path) -> bool:
    """Unpacks every `<name>.gz` in `raw` whose `<name>` is missing. True when all four IDX
    files are then there unpacked; never creates `raw`."""
    if not raw.is_dir() or missing_files(raw):
        return False
    for name in IDX_FILES:
        if not (raw / name).is_file():
            gunzip(raw / f"{name}.gz", raw / name)
    return True


def unpack_from(source: Path, raw: Path) -> None:
    """Unpacks the four `<name>.gz` files of `source` into `raw` (created if needed)."""
    for name in IDX_FILES:
        gunzip(source / f"{name}.gz", raw / name)


def read_idx_dataset(dataset_class: str, root: Path) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(train images N×1×28×28 uint8, train labels, test images, test labels) read by
    `torchvision.datasets.<dataset_class>` from the unpacked files in `<root>/<dataset_class>/raw/`.

    A file that is not a valid IDX file (truncated, wrong type) is a UserError naming it.
    """
    import torchvision.datasets

    cls = getattr(torchvision.datasets, dataset_class)
    raw = root / dataset_class / "raw"
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            train = cls(str(root), train=True, download=False)
            test = cls(str(root), train=False, download=False)
    except (AssertionError, RuntimeError, ValueError, TypeError, KeyError, OSError) as error:
        raise UserError(
            f"the IDX files in {raw} cannot be read ({type(error).__name__}: {error}). Each of "
            f"{', '.join(IDX_FILES)} must be a complete IDX file (unpacked, or as .gz): delete "
            "the broken one and get it again."
        ) from None
    for split, images, labels in (
        ("train", train.data, train.targets),
        ("t10k", test.data, test.targets),
    ):
        if len(images) != len(labels):
            raise UserError(
                f"the IDX files in {raw} do not match: {split}-images has {len(images)} images "
                f"but {split}-labels has {len(labels)} labels."
            )
    return train.data.unsqueeze(1), train.targets, test.data.unsqueeze(1), test.targets
