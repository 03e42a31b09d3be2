"""Data: the bundled subset's split, the offline fallback, torchvision's reader on IDX files."""

from __future__ import annotations

import pytest
import torch

from bnexp import data as data_module
from bnexp.config import UserError
from bnexp.data import BUNDLED_SOURCE, batch_indices, load_data

from synthetic_data import write_mnist


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Never touch the network, whatever machine the tests run on."""
    monkeypatch.setattr(data_module, "network_reachable", lambda *a, **k: False)


def test_bundled_subset_split_is_stratified_disjoint_and_fixed(bundled_data):
    assert bundled_data.source == BUNDLED_SOURCE
    assert len(bundled_data.y_train) == 4000 and len(bundled_data.y_test) == 1000
    assert torch.bincount(bundled_data.y_test).tolist() == [100] * 10
    assert torch.bincount(bundled_data.y_train).tolist() == [400] * 10
    assert bundled_data.x_train.dtype == torch.uint8 and bundled_data.input_shape == (1, 28, 28)
    again = load_data("mnist", "/nonexistent", "bundled", False, False)
    assert torch.equal(again.x_test, bundled_data.x_test)
    train_rows = {bytes(x.flatten().tolist()) for x in bundled_data.x_train}
    assert not any(bytes(x.flatten().tolist()) in train_rows for x in bundled_data.x_test[:200])


def test_normalised_batches_have_zero_mean_unit_std(bundled_data):
    x = bundled_data.to_float(bundled_data.x_train)
    assert x.dtype == torch.float32
    assert x.mean().item() == pytest.approx(0.0, abs=1e-3) and x.std().item() == pytest.approx(1.0, abs=1e-3)


def test_binarize_gives_two_pixel_values():
    data = load_data("mnist", "/nonexistent", "bundled", False, True)
    assert set(data.x_train.unique().tolist()) == {0, 255}


def test_auto_falls_back_offline_and_torchvision_source_refuses(tmp_path):
    assert load_data("mnist", tmp_path, "auto", True, False).source == BUNDLED_SOURCE
    with pytest.raises(UserError) as error:
        load_data("mnist", tmp_path, "torchvision", True, False)
    assert "data.source=torchvision" in str(error.value) and str(tmp_path / "MNIST" / "raw") in str(error.value)


def test_mnist_files_under_root_are_read_with_torchvision(tmp_path):
    write_mnist(tmp_path, train=120, test=30)
    data = load_data("mnist", tmp_path, "auto", False, False)
    assert data.source == "torchvision"
    assert (len(data.y_train), len(data.y_test)) == (120, 30)


def test_batches_are_seeded_permutations_epoch_after_epoch():
    first = list(zip(range(6), batch_indices(10, 3, seed=5)))
    again = list(zip(range(6), batch_indices(10, 3, seed=5)))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(first, again))
    epoch = torch.cat([b for _, b in first[:3]])
    assert len(epoch.unique()) == 9  # 3 full batches of 3 per epoch, the last sample dropped
    with pytest.raises(UserError, match="batch_size=11"):
        next(batch_indices(10, 11, seed=0))
