"""Fashion-MNIST (Xiao et al. 2017): 60,000 train / 10,000 test 28×28 grey images, 10 classes.

Full size or nothing: there is no bundled subset. Where the files come from, in this order
(`data.source=auto` and `torchvision` alike):

1. `<data.root>/FashionMNIST/raw/`: the four IDX files, unpacked or `.gz` (unpacked there).
2. The copy the Debian package `dataset-fashion-mnist` installs in /usr/share/datasets/
   fashion-mnist/: unpacked into `<data.root>/FashionMNIST/raw/` once (the system files are
   only read). Debian recompressed the `.gz` files, so their MD5s differ from torchvision's
   list; the unpacked IDX content is the published one, and torchvision does not check the
   MD5 of unpacked files.
3. `data.download=true` and the server answers: torchvision downloads them (MD5-checked).
4. Otherwise: a UserError naming the package, the directory and the URL.

`meta.json`'s `data_source` says which: `debian:/usr/share/datasets/fashion-mnist` for files
unpacked from the Debian copy (a marker file next to them keeps saying so on later runs), else
`torchvision` (files you put under data.root, or torchvision's download), as for MNIST.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path

from torch import Tensor

from bnexp.errors import UserError
from bnexp.run import idx, network

FOLDER = "FashionMNIST"  # torchvision's class name, and its folder under data.root
DEBIAN_PACKAGE = "dataset-fashion-mnist"
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # where the Debian package puts the .gz
URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"  # torchvision's mirror
HOST, PORT = "fashion-mnist.s3-website.eu-central-1.amazonaws.com", 80  # plain http only
HOME = "https://github.com/zalandoresearch/fashion-mnist"
SOURCE_TORCHVISION = "torchvision"
MARKER = ".bnexp-source.json"  # in raw/: where the unpacked files came from, and their sizes


def debian_source() -> str:
    return f"debian:{SYSTEM_DIR}"


def how_to_get(root: Path) -> str:
    raw = root / FOLDER / "raw"
    return (
        f"Install the Debian package (`sudo apt-get install {DEBIAN_PACKAGE}`, or `make data`), "
        f"which puts the files in {SYSTEM_DIR}/ where bnexp finds them offline; or download the "
        f"four files ({', '.join(f'{name}.gz' for name in idx.IDX_FILES)}) from {URL} (see "
        f"{HOME}) into {raw}/."
    )


def recorded_source(raw: Path) -> str:
    """`debian:...` when the marker says the files in `raw` were unpacked from the Debian copy
    and they still have the sizes they had then; else `torchvision`."""
    try:
        marker = json.loads((raw / MARKER).read_text())
        sizes = {name: (raw / name).stat().st_size for name in idx.IDX_FILES}
    except (OSError, ValueError):
        return SOURCE_TORCHVISION
    if isinstance(marker, dict) and marker.get("sizes") == sizes and marker.get("source"):
        return str(marker["source"])
    return SOURCE_TORCHVISION


def unpack_system_copy(raw: Path) -> None:
    """Unpacks the Debian copy into `raw`, then writes the marker that names it."""
    idx.unpack_from(SYSTEM_DIR, raw)
    sizes = {name: (raw / name).stat().st_size for name in idx.IDX_FILES}
    handle, temporary = tempfile.mkstemp(dir=raw, prefix=f"{MARKER}.", suffix=".part")
    with os.fdopen(handle, "w") as f:
        json.dump({"source": debian_source(), "sizes": sizes}, f)
    os.chmod(temporary, 0o644)  # mkstemp's 0600 would hide it from the other users of data.root
    os.replace(temporary, raw / MARKER)


def download(root: Path) -> bool:
    """torchvision's download into <root>/FashionMNIST/raw/; False when it fails."""
    from torchvision.datasets import FashionMNIST

    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            FashionMNIST(str(root), train=True, download=True)
            FashionMNIST(str(root), train=False, download=True)
    except Exception:  # a download that fails half-way: reported like an offline one
        return False
    return True


def load_fashion_mnist(
    root: Path, source: str, download_allowed: bool
) -> tuple[tuple[Tensor, Tensor, Tensor, Tensor], str]:
    """The four tensors (uint8 N×1×28×28 images, int64 labels) and the data_source string."""
    if source == "bundled":
        raise UserError(
            f"data=fashion_mnist data.source=bundled is not possible: only MNIST has a bundled "
            f"subset; Fashion-MNIST is used at full size or not at all. Use data.source=auto or "
            f"data.source=torchvision (valid choices: auto, torchvision, bundled). {how_to_get(root)}"
        )
    raw = root / FOLDER / "raw"
    if idx.unpack_in_place(raw):
        return idx.read_idx_dataset(FOLDER, root), recorded_source(raw)
    if not idx.missing_files(SYSTEM_DIR):
        unpack_system_copy(raw)
        return idx.read_idx_dataset(FOLDER, root), debian_source()
    offline = "data.download=false"
    if download_allowed:
        reachable = network.network_reachable(HOST, port=PORT)
        if reachable and download(root):
            return idx.read_idx_dataset(FOLDER, root), SOURCE_TORCHVISION
        offline = (
            f"the download from {URL} failed" if reachable else f"{HOST} does not answer (offline?)"
        )
    system = (
        f"{SYSTEM_DIR} does not exist (the Debian package {DEBIAN_PACKAGE} is not installed)"
        if not SYSTEM_DIR.exists()
        else f"{SYSTEM_DIR} lacks {', '.join(f'{n}.gz' for n in idx.missing_files(SYSTEM_DIR))}"
    )
    raise UserError(
        f"data=fashion_mnist: Fashion-MNIST is not under data.root={root} (expected the four IDX "
        f"files, unpacked or .gz, in {raw}/), {system}, and it cannot be downloaded "
        f"({offline}). {how_to_get(root)} There is no bundled fallback for Fashion-MNIST."
    )
