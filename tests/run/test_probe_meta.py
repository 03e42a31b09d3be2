"""meta.json records the probe batch: which held-out images (probe_indices) and how many of
each class (probe_class_counts), class-balanced for every dataset and default probe size."""

from __future__ import annotations

import json

import pytest
import torch

from bnexp.run.data import load_data
from bnexp.run.runner import execute

from conftest import TINY, make_config, run_cli
from synthetic_data import patch_cifar10_checksums, write_cifar10


def check_probe_meta(meta: dict, test_labels: torch.Tensor, size: int, classes: int) -> None:
    indices = meta["probe_indices"]
    assert len(indices) == size == len(set(indices))
    assert all(isinstance(i, int) and 0 <= i < len(test_labels) for i in indices)
    # The recorded counts are those of the recorded images' labels, recounted here.
    recounted = torch.bincount(test_labels[torch.tensor(indices)], minlength=classes).tolist()
    counts = meta["probe_class_counts"]
    assert {int(k): v for k, v in counts.items()} == {c: n for c, n in enumerate(recounted) if n}
    assert len(counts) >= min(8, size) and max(counts.values()) <= 2 * min(counts.values())


@pytest.mark.slow
@pytest.mark.parametrize(("model", "size"), [("mlp", 256), ("cnn", 64)])
def test_meta_records_a_class_balanced_probe_for_bundled_mnist(tmp_path, model, size):
    """The default probe sizes (MLP 256, CNN 64), through the real CLI."""
    run_dir = tmp_path / "run"
    tiny = [a for a in TINY if not a.startswith(("probe_size", "steps", "log_every"))]
    args = ["run", f"model={model}", *tiny, "steps=2", "log_every=2", "plots=false"]
    result = run_cli([*args, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["config"]["probe_size"] == size
    labels = load_data("mnist", "/nonexistent", "bundled", False, False).y_test
    check_probe_meta(meta, labels, size, 10)
    # The same probe for another seed: runs of one dataset compare on the same images.
    other = tmp_path / "other"
    assert run_cli([*args, "seed=7", f"hydra.run.dir={other}"], cwd=tmp_path).returncode == 0
    assert json.loads((other / "meta.json").read_text())["probe_indices"] == meta["probe_indices"]


def test_meta_records_a_class_balanced_probe_for_cifar10(tmp_path, monkeypatch):
    root = tmp_path / "data"
    written = write_cifar10(root, per_batch=20, test=100)
    patch_cifar10_checksums(monkeypatch, root)
    cfg = make_config(
        depth=2, width=8, steps=2, log_every=2, batch_size=10, probe_size=64,
        **{"data.name": "cifar10", "data.root": str(root), "data.download": False,
           "model.name": "cnn"},
    )  # fmt: skip
    assert execute(cfg, tmp_path / "run", threads=1, show_progress=False) == "completed"
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    check_probe_meta(meta, torch.from_numpy(written.y_test), 64, 10)
