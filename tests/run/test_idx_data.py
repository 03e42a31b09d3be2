"""MNIST-format datasets from IDX files: full MNIST from files (unpacked or .gz), Fashion-MNIST
from data.root, the Debian copy or a download, and the real Fashion-MNIST files when installed."""

from __future__ import annotations

import gzip
import json
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from bnexp.errors import UserError
from bnexp.run import data as data_module
from bnexp.run import fashion, idx, network
from bnexp.run.data import load_data

from conftest import run_cli
from synthetic_data import write_idx_files, write_mnist

REAL_DIR = Path("/usr/share/datasets/fashion-mnist")
HAVE_REAL = all((REAL_DIR / f"{name}.gz").is_file() for name in idx.IDX_FILES)
needs_real_files = pytest.mark.skipif(
    not HAVE_REAL,
    reason=f"the real Fashion-MNIST files are not in {REAL_DIR}: install them with "
    "`sudo apt-get install dataset-fashion-mnist` (or `make data`)",
)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Never touch the network, whatever machine the tests run on."""
    monkeypatch.setattr(network, "network_reachable", lambda *a, **k: False)


@pytest.fixture
def system_copy(tmp_path, monkeypatch):
    """A synthetic Debian copy (four .gz files) where bnexp looks for the system copy."""
    folder = tmp_path / "system" / "fashion-mnist"
    arrays = write_idx_files(folder, train=60, test=20, seed=3, gz=True)
    monkeypatch.setattr(fashion, "SYSTEM_DIR", folder)
    return folder, arrays


@pytest.fixture
def no_system_copy(tmp_path, monkeypatch):
    monkeypatch.setattr(fashion, "SYSTEM_DIR", tmp_path / "not-installed")


def read_idx_gz(path: Path) -> np.ndarray:
    """An IDX file read with numpy alone (not torchvision): the independent check."""
    data = gzip.decompress(path.read_bytes())
    zero, kind, dims = struct.unpack(">HBB", data[:4])
    assert zero == 0 and kind == 0x08  # unsigned bytes
    shape = struct.unpack(f">{dims}I", data[4 : 4 + 4 * dims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


# --- full MNIST from files ---------------------------------------------------------------------


def test_mnist_gz_files_under_root_are_unpacked_and_read_in_full(tmp_path):
    arrays = write_mnist(tmp_path, train=120, test=30, gz=True)
    raw = tmp_path / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(f"{n}.gz" for n in idx.IDX_FILES)
    data = load_data("mnist", tmp_path, "auto", False, False)
    assert data.source == "torchvision"  # not the bundled fallback
    assert (len(data.y_train), len(data.y_test)) == (120, 30)
    assert np.array_equal(data.x_train.numpy(), arrays.x_train)
    assert np.array_equal(data.y_test.numpy(), arrays.y_test)
    for name in idx.IDX_FILES:  # unpacked next to the .gz, which stay
        assert (raw / name).is_file() and (raw / f"{name}.gz").is_file()
    again = load_data("mnist", tmp_path, "torchvision", False, False)  # from the unpacked files
    assert torch.equal(again.x_test, data.x_test)


def test_mnist_mixed_unpacked_and_gz_files_are_read(tmp_path):
    arrays = write_mnist(
        tmp_path, train=50, test=20, gz=("train-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    )
    data = load_data("mnist", tmp_path, "torchvision", False, False)
    assert np.array_equal(data.x_train.numpy(), arrays.x_train)
    assert np.array_equal(data.y_test.numpy(), arrays.y_test)


def test_mnist_with_a_file_missing_falls_back_and_torchvision_source_refuses(tmp_path):
    write_mnist(tmp_path, train=50, test=20, gz=True)
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()
    assert load_data("mnist", tmp_path, "auto", False, False).source == data_module.BUNDLED_SOURCE
    with pytest.raises(UserError, match="data.source=torchvision"):
        load_data("mnist", tmp_path, "torchvision", False, False)


def test_a_broken_gz_or_truncated_idx_file_is_a_user_error_naming_it(tmp_path):
    write_mnist(tmp_path, train=50, test=20, gz=True)
    raw = tmp_path / "MNIST" / "raw"
    packed = raw / "train-images-idx3-ubyte.gz"
    packed.write_bytes(packed.read_bytes()[:500])  # an interrupted download
    with pytest.raises(UserError) as error:
        load_data("mnist", tmp_path, "auto", False, False)
    assert str(packed) in str(error.value) and "gzip" in str(error.value)
    assert not list(raw.glob(".*.part"))  # no half-written file left behind

    write_mnist(tmp_path / "b", train=50, test=20)
    image_file = tmp_path / "b" / "MNIST" / "raw" / "train-images-idx3-ubyte"
    image_file.write_bytes(image_file.read_bytes()[:5000])
    with pytest.raises(UserError) as error:
        load_data("mnist", tmp_path / "b", "auto", False, False)
    assert str(image_file.parent) in str(error.value) and "cannot be read" in str(error.value)


def test_images_and_labels_of_different_lengths_are_a_user_error(tmp_path):
    write_mnist(tmp_path, train=50, test=20)
    write_idx_files(tmp_path / "other", train=40, test=20)
    raw = tmp_path / "MNIST" / "raw"
    (raw / "train-labels-idx1-ubyte").write_bytes(
        (tmp_path / "other" / "train-labels-idx1-ubyte").read_bytes()
    )
    with pytest.raises(
        UserError, match="train-images has 50 images but train-labels has 40 labels"
    ):
        load_data("mnist", tmp_path, "auto", False, False)


# --- Fashion-MNIST: where the files come from ----------------------------------------------------


def test_fashion_files_under_root_come_first(tmp_path, system_copy):
    arrays = write_idx_files(
        tmp_path / "root" / "FashionMNIST" / "raw", train=40, test=20, seed=9, gz=True
    )
    data = load_data("fashion_mnist", tmp_path / "root", "auto", False, False)
    assert data.source == "torchvision" and data.name == "fashion_mnist"
    assert np.array_equal(data.x_train.numpy(), arrays.x_train)  # not the system copy's 60


def test_fashion_system_copy_is_unpacked_into_root_once_and_left_untouched(tmp_path, system_copy):
    folder, arrays = system_copy
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()}
    root = tmp_path / "root"
    data = load_data("fashion_mnist", root, "auto", True, False)
    assert data.source == f"debian:{folder}"
    assert (len(data.y_train), len(data.y_test)) == (60, 20)
    assert np.array_equal(data.x_train.numpy(), arrays.x_train)
    assert np.array_equal(data.y_test.numpy(), arrays.y_test)
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir()} == before
    raw = root / "FashionMNIST" / "raw"
    assert all((raw / name).is_file() for name in idx.IDX_FILES)

    # A later run reads data.root (no second unpacking) and still names the Debian copy.
    stamps = {name: (raw / name).stat().st_mtime_ns for name in idx.IDX_FILES}
    assert load_data("fashion_mnist", root, "torchvision", True, False).source == f"debian:{folder}"
    assert {name: (raw / name).stat().st_mtime_ns for name in idx.IDX_FILES} == stamps

    # Files replaced by others (other sizes) are no longer called Debian's.
    write_idx_files(raw, train=30, test=10, seed=5)
    assert load_data("fashion_mnist", root, "auto", True, False).source == "torchvision"


def test_fashion_download_when_nothing_is_installed(tmp_path, no_system_copy, monkeypatch):
    calls = []

    def fake_download(root):  # what torchvision's download leaves: .gz and unpacked files
        calls.append(root)
        write_idx_files(root / "FashionMNIST" / "raw", train=30, test=10)
        return True

    monkeypatch.setattr(network, "network_reachable", lambda *a, **k: True)
    monkeypatch.setattr(fashion, "download", fake_download)
    data = load_data("fashion_mnist", tmp_path / "root", "auto", True, False)
    assert data.source == "torchvision" and len(data.y_train) == 30 and calls == [tmp_path / "root"]
    with pytest.raises(UserError, match="data.download=false"):
        load_data("fashion_mnist", tmp_path / "other", "auto", False, False)


def test_fashion_absent_offline_says_package_directory_and_url(tmp_path, no_system_copy):
    root = tmp_path / "root"
    for source in ("auto", "torchvision"):
        with pytest.raises(UserError) as error:
            load_data("fashion_mnist", root, source, True, False)
        message = str(error.value)
        for text in ("apt-get install dataset-fashion-mnist", str(root / "FashionMNIST" / "raw"),
                     fashion.URL, "does not answer", "no bundled fallback", "data.root"):  # fmt: skip
            assert text in message, text
    assert not root.exists()  # nothing created when nothing was found


def test_fashion_has_no_bundled_subset(tmp_path, system_copy):
    with pytest.raises(UserError) as error:
        load_data("fashion_mnist", tmp_path, "bundled", True, False)
    for text in (
        "data=fashion_mnist",
        "data.source=bundled",
        "auto",
        "torchvision",
        "dataset-fashion-mnist",
    ):
        assert text in str(error.value)


# --- the real Fashion-MNIST (Debian package dataset-fashion-mnist) -----------------------------


@pytest.fixture(scope="module")
def real_fashion(tmp_path_factory):
    if not HAVE_REAL:
        pytest.skip(needs_real_files.kwargs["reason"])
    root = tmp_path_factory.mktemp("fashion-root")
    start = time.perf_counter()
    first = load_data("fashion_mnist", root, "auto", False, False)
    first_s = time.perf_counter() - start
    start = time.perf_counter()
    data = load_data("fashion_mnist", root, "auto", False, False)
    print(
        f"Fashion-MNIST: first load (unpacking) {first_s:.2f} s, later load {time.perf_counter() - start:.2f} s"
    )
    assert torch.equal(first.x_train, data.x_train)
    return data


@needs_real_files
def test_real_fashion_mnist_sizes_classes_and_pixel_mean(real_fashion):
    data = real_fashion
    assert data.source == "debian:/usr/share/datasets/fashion-mnist"
    assert data.x_train.shape == (60_000, 1, 28, 28) and data.x_test.shape == (10_000, 1, 28, 28)
    assert torch.bincount(data.y_train).tolist() == [6000] * 10
    assert torch.bincount(data.y_test).tolist() == [1000] * 10
    # Xiao et al.'s published training-pixel mean, in [0, 1] units: 0.2860.
    assert data.mean.item() == pytest.approx(0.2860, abs=5e-5)
    # Independently: the same pixels and labels as the Debian files read with numpy alone.
    x_train = read_idx_gz(REAL_DIR / "train-images-idx3-ubyte.gz")
    assert np.array_equal(data.x_train[:, 0].numpy(), x_train)
    assert x_train.mean() / 255 == pytest.approx(data.mean.item(), abs=1e-6)
    assert np.array_equal(data.y_test.numpy(), read_idx_gz(REAL_DIR / "t10k-labels-idx1-ubyte.gz"))


@needs_real_files
@pytest.mark.slow
def test_real_fashion_mnist_run_end_to_end(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(
        ["run", "data=fashion_mnist", "norm=batch", "act=sigmoid", "depth=3", "steps=30", "log_every=10",
         "eval_every=30", "width=16", "probe_size=32", "data.download=false", f"data.root={tmp_path / 'data'}",
         f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["status"] == "completed"
    assert (meta["train_size"], meta["test_size"]) == (60_000, 10_000)
    assert meta["data_source"] == "debian:/usr/share/datasets/fashion-mnist"
    assert "BUNDLED" not in result.stderr + result.stdout


@pytest.mark.slow
def test_cli_fashion_bundled_is_a_user_error(tmp_path):
    result = run_cli(
        [
            "run",
            "data=fashion_mnist",
            "data.source=bundled",
            "steps=2",
            f"hydra.run.dir={tmp_path}/run",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert "bnexp: error:" in result.stderr and "data.source=bundled" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


# --- captions name the dataset ------------------------------------------------------------------


def test_captions_and_reports_name_the_dataset_and_its_source():
    from bnexp.analysis.captions import data_source_text
    from bnexp.reproduce.report import data_text

    meta = {
        "data_source": "debian:/usr/share/datasets/fashion-mnist",
        "train_size": 60000,
        "test_size": 10000,
    }
    text = data_source_text(meta, "fashion_mnist")
    assert (
        text
        == "data: Fashion-MNIST (60,000 train / 10,000 test), source: debian:/usr/share/datasets/fashion-mnist"
    )
    assert data_source_text({**meta, "data_source": "torchvision"}, "mnist").startswith(
        "data: MNIST (60,000"
    )
    assert data_source_text({}, "cifar10") == "data: CIFAR-10, source unknown (no meta.json)"
    report = data_text([{"data": "fashion_mnist", **meta}])
    assert (
        report
        == "Fashion-MNIST: 60,000 train / 10,000 test (source: debian:/usr/share/datasets/fashion-mnist)"
    )
    # a procedure that reads no dataset (bn-backward's random inputs) is not called Fashion-MNIST
    assert (
        data_text([{"data": "fashion_mnist", "data_source": "none (random inputs)"}])
        == "no dataset (random inputs)"
    )
    assert "BUNDLED MNIST SUBSET" in data_text(
        [
            {
                "data": "mnist",
                "data_source": data_module.BUNDLED_SOURCE,
                "train_size": 4000,
                "test_size": 1000,
            }
        ],
        short=True,
    )


def test_finding_figure_titles_name_the_dataset_of_their_runs():
    import pandas as pd

    from bnexp.reproduce.claims import Tables
    from bnexp.reproduce.finding_figures import FIGURES, FigureContext
    from bnexp.reproduce.findings import load_findings

    finding = load_findings()["fig1"]
    runs = pd.DataFrame({"run_id": ["a"], "status": ["completed"], "data": ["fashion_mnist"]})
    fig = FIGURES["fig1"](FigureContext(Tables(runs, pd.DataFrame(), pd.DataFrame()), finding, []))
    assert "Fashion-MNIST, 3x100 sigmoid MLP" in " ".join(t.get_text() for t in fig.texts)


def test_a_data_root_that_cannot_be_written_is_a_user_error(tmp_path, system_copy):
    root = tmp_path / "a-file"
    root.write_text("not a directory")
    with pytest.raises(UserError, match="cannot be written") as error:
        load_data("fashion_mnist", root, "auto", False, False)
    assert str(root / "FashionMNIST" / "raw") in str(error.value) and "data.root" in str(
        error.value
    )
