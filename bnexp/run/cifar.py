"""CIFAR-10 through torchvision's reader, held in memory as uint8 N×3×32×32 tensors.

The files are the published `cifar-10-batches-py/` pickles under `data.root`. torchvision's
CIFAR10 class verifies every file's MD5 checksum on load; bnexp never skips that check.
What happens when the files are not there, in this order:

1. `<data.root>/cifar-10-python.tar.gz` is present (downloaded by hand): its checksum is
   verified and it is extracted in place, offline.
2. `data.download=true` and the server answers: torchvision downloads and extracts it.
3. Otherwise: a UserError that says where the files are expected and how to get them.

Every failure is a UserError with one paragraph of explanation, never a traceback or a hang.
"""

from __future__ import annotations

import contextlib
import io
import logging
import pickle
import socket
from pathlib import Path

import torch
from torch import Tensor

from bnexp.errors import UserError
from bnexp.run import network

log = logging.getLogger("bnexp")

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
HOST = "www.cs.toronto.edu"
DOWNLOAD_TIMEOUT_S = 60.0  # per socket operation: a stalled download fails instead of hanging


def expected_files() -> list[tuple[str, str | None]]:
    """(file name, MD5) of every file torchvision reads, from the CIFAR10 class itself."""
    from torchvision.datasets import CIFAR10

    files = [(name, md5) for name, md5 in CIFAR10.train_list + CIFAR10.test_list]
    return files + [(CIFAR10.meta["filename"], CIFAR10.meta["md5"])]


def how_to_get(root: Path) -> str:
    return (
        f"To get CIFAR-10: download {URL} (163 MB) and put the archive itself in {root} "
        f"(bnexp verifies and extracts it), or extract it there yourself "
        f"(`tar -xzf cifar-10-python.tar.gz -C {root}`), or set data.root to the directory that "
        "holds cifar-10-batches-py/. Only MNIST has an offline fallback (data=mnist)."
    )


def _listing(names: list[str]) -> str:
    if len(names) == len(expected_files()):
        return "all of them"
    return ", ".join(names) if names else "a file"


def _missing(folder: Path) -> list[str]:
    return [name for name, _ in expected_files() if not (folder / name).is_file()]


def _corrupted(folder: Path) -> list[str]:
    from torchvision.datasets.utils import check_integrity

    return [name for name, md5 in expected_files() if not check_integrity(str(folder / name), md5)]


def _extract(archive: Path, root: Path) -> None:
    from torchvision.datasets import CIFAR10
    from torchvision.datasets.utils import check_integrity, extract_archive

    if not check_integrity(str(archive), CIFAR10.tgz_md5):
        raise UserError(
            f"data=cifar10: the archive {archive} is corrupted: its MD5 checksum is not the "
            f"published {CIFAR10.tgz_md5} (an interrupted download?). Delete it and download "
            f"{URL} again into data.root={root}."
        )
    log.info("Extracting %s into %s", archive, root)
    try:
        extract_archive(str(archive), str(root))
    except Exception as error:  # noqa: BLE001 - any failure here is the files' or the disk's
        raise UserError(
            f"data=cifar10: could not extract {archive} into data.root={root} "
            f"({type(error).__name__}: {error}). {how_to_get(root)}"
        ) from None


def _download(root: Path) -> None:
    from torchvision.datasets import CIFAR10

    log.info("Downloading CIFAR-10 (163 MB) from %s into %s", URL, root)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        root.mkdir(parents=True, exist_ok=True)
        CIFAR10(str(root), train=True, download=True)
    except Exception as error:  # noqa: BLE001 - network, disk or checksum: all the user's to fix
        raise UserError(
            f"data=cifar10: downloading CIFAR-10 into data.root={root} failed "
            f"({type(error).__name__}: {error}). {how_to_get(root)}"
        ) from None
    finally:
        socket.setdefaulttimeout(previous)


def _obtain(root: Path, folder: Path, missing: list[str], download: bool) -> None:
    """Makes the missing files appear (extract or download), or raises UserError."""
    from torchvision.datasets import CIFAR10

    archive = root / CIFAR10.filename
    if archive.is_file():
        _extract(archive, root)
    elif download and network.network_reachable(HOST):
        _download(root)
    else:
        reason = (
            "data.download=false, so bnexp did not try to download them"
            if not download
            else f"they cannot be downloaded: {HOST} is not reachable (offline?)"
        )
        raise UserError(
            f"data=cifar10: the CIFAR-10 files are not under data.root={root}: expected the "
            f"directory {folder} with data_batch_1 ... data_batch_5, test_batch and batches.meta "
            f"({_listing(missing)} missing), and {reason}. {how_to_get(root)}"
        )
    still_missing = _missing(folder)
    if still_missing:
        raise UserError(
            f"data=cifar10: after extracting CIFAR-10 into data.root={root}, {folder} still lacks "
            f"{', '.join(still_missing)}. {how_to_get(root)}"
        )


def _to_tensors(dataset) -> tuple[Tensor, Tensor]:
    # torchvision holds N×32×32×3 (HWC) uint8; bnexp keeps N×3×32×32 like every other dataset.
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()
    return images, torch.tensor(dataset.targets, dtype=torch.int64)


def load_cifar10(root: Path, download: bool) -> tuple[tuple[Tensor, Tensor, Tensor, Tensor], str]:
    """(x_train uint8 50000×3×32×32, y_train, x_test 10000×3×32×32, y_test), "torchvision"."""
    from torchvision.datasets import CIFAR10

    root = Path(root).expanduser()
    folder = root / CIFAR10.base_folder
    missing = _missing(folder)
    if missing:
        _obtain(root, folder, missing, download)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            train = CIFAR10(str(root), train=True, download=False)
            test = CIFAR10(str(root), train=False, download=False)
    except RuntimeError:  # "Dataset not found or corrupted": the files exist, so a checksum
        bad = _corrupted(folder)
        raise UserError(
            f"data=cifar10: the CIFAR-10 files in {folder} are corrupted: "
            f"{_listing(bad)} {'does' if len(bad) == 1 else 'do'} not match the published MD5 "
            f"checksums (an interrupted download or extraction?). Delete {folder} and get them again. "
            f"{how_to_get(root)}"
        ) from None
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, OSError) as error:
        raise UserError(
            f"data=cifar10: the files in {folder} could not be read as CIFAR-10 "
            f"({type(error).__name__}: {error}). Delete {folder} and get them again. {how_to_get(root)}"
        ) from None
    x_train, y_train = _to_tensors(train)
    x_test, y_test = _to_tensors(test)
    return (x_train, y_train, x_test, y_test), "torchvision"
