"""Data: the bundled subset's split, the offline fallback, torchvision's reader on IDX files."""

from __future__ import annotations

import pytest
import torch

from bnexp.errors import UserError
from bnexp.run import network
from bnexp.run.data import BUNDLED_SOURCE, batch_indices, load_data, probe_indices

from synthetic_data import write_mnist


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Never touch the network, whatever machine the tests run on."""
    monkeypatch.setattr(network, "network_reachable", lambda *a, **k: False)


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
    assert x.mean().item() == pytest.approx(0.0, abs=1e-3) and x.std().item() == pytest.approx(
        1.0, abs=1e-3
    )


def test_binarize_gives_two_pixel_values():
    data = load_data("mnist", "/nonexistent", "bundled", False, True)
    assert set(data.x_train.unique().tolist()) == {0, 255}


def test_auto_falls_back_offline_and_torchvision_source_refuses(tmp_path):
    assert load_data("mnist", tmp_path, "auto", True, False).source == BUNDLED_SOURCE
    with pytest.raises(UserError) as error:
        load_data("mnist", tmp_path, "torchvision", True, False)
    assert "data.source=torchvision" in str(error.value) and str(tmp_path / "MNIST" / "raw") in str(
        error.value
    )


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


def test_bundled_test_split_is_shuffled_so_no_prefix_is_one_class(bundled_data):
    """The split is drawn class by class; its order must not be (a `[:n]` slice would then hold
    digits 0, 1, 2 only)."""
    labels = bundled_data.y_test
    assert not torch.equal(labels, labels.sort().values)
    # Every window of 100 consecutive test images holds all 10 digits, of 20 at least 5.
    assert min(len(labels[i : i + 100].unique()) for i in range(len(labels) - 99)) == 10
    assert min(len(labels[i : i + 20].unique()) for i in range(len(labels) - 19)) >= 5


@pytest.mark.parametrize("size", [10, 64, 256, 1000, 7])
def test_probe_is_class_balanced_and_fixed_whatever_the_torch_seed(bundled_data, size):
    labels = bundled_data.y_test
    torch.manual_seed(123)
    probe = probe_indices(labels, size)
    torch.manual_seed(456)
    assert torch.equal(probe, probe_indices(labels, size))  # independent of the global RNG
    assert len(probe.unique()) == size and 0 <= probe.min() and probe.max() < len(labels)
    counts = torch.bincount(labels[probe], minlength=10).tolist()
    # Round-robin over the 10 digits: size // 10 each, the first size % 10 digits one more.
    assert counts == [size // 10 + (digit < size % 10) for digit in range(10)]
    # ... and shuffled: the probe is not grouped by class.
    assert not torch.equal(labels[probe], labels[probe].sort().values)


def test_probe_of_a_class_sorted_unbalanced_set_mixes_classes_and_takes_what_a_class_has():
    labels = torch.cat([torch.zeros(3), torch.ones(50), torch.full((50,), 2.0)]).long()
    probe = probe_indices(labels, 30)
    assert torch.bincount(labels[probe]).tolist() == [3, 14, 13]  # class 0 has only 3
    assert labels[probe[:10]].unique().numel() >= 2
    assert torch.equal(probe, probe_indices(labels.clone(), 30))


def test_probe_larger_than_the_held_out_set_is_a_user_error(bundled_data):
    with pytest.raises(UserError, match="probe_size=1001 .* only 1000"):
        probe_indices(bundled_data.y_test, 1001)
