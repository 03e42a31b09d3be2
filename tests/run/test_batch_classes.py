"""`data.batch_classes`: non-i.i.d. batches of k classes x batch/k images (Ioffe 2017, Sec. 4.3)."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from bnexp.errors import UserError
from bnexp.run.config import config_hash, to_container, validate
from bnexp.run.data import BatchOrder, ClassBatchOrder, batch_indices
from bnexp.run.train import train

from conftest import make_config, run_cli

# 30 samples of 3 classes, 10 each, interleaved (0, 1, 2, 0, 1, 2, ...).
LABELS = torch.arange(30) % 3


def test_every_batch_holds_k_distinct_classes_equally():
    order = ClassBatchOrder(LABELS, batch_size=8, batch_classes=2, seed=0)
    seen_pairs = set()
    for _ in range(50):
        index = next(order)
        labels = LABELS[index]
        values, counts = torch.unique(labels, return_counts=True)
        assert len(index) == 8 and len(values) == 2 and counts.tolist() == [4, 4]
        assert len(set(index.tolist())) == 8  # no image twice in a batch
        seen_pairs.add(tuple(values.tolist()))
    assert seen_pairs == {(0, 1), (0, 2), (1, 2)}  # every pair of classes is drawn


def test_each_class_is_handed_out_without_repeats_until_used_up():
    # batch_classes=3, batch 3: one image of each class per batch; 10 batches use every image.
    order = ClassBatchOrder(LABELS, batch_size=3, batch_classes=3, seed=1)
    first_ten = torch.cat([next(order) for _ in range(10)])
    assert sorted(first_ten.tolist()) == list(range(30))


def test_same_seed_same_batches_and_resume_continues_exactly():
    a = ClassBatchOrder(LABELS, 6, 2, seed=3)
    b = ClassBatchOrder(LABELS, 6, 2, seed=3)
    for _ in range(7):
        assert torch.equal(next(a), next(b))
    state = a.state_dict()
    expected = [next(a) for _ in range(12)]
    c = ClassBatchOrder(LABELS, 6, 2, seed=99)
    c.load_state_dict(state)
    assert all(torch.equal(next(c), e) for e in expected)


def test_iid_default_is_the_plain_batch_order():
    assert isinstance(batch_indices(30, 6, 0), BatchOrder)
    assert isinstance(batch_indices(30, 6, 0, LABELS, 3), ClassBatchOrder)


@pytest.mark.parametrize(
    ("batch_size", "classes", "words"),
    [(8, 3, "multiple of data.batch_classes"), (8, 4, "between 1 and 3"), (24, 1, "only 10")],
)
def test_impossible_settings_are_user_errors(batch_size, classes, words):
    with pytest.raises(UserError, match=words):
        ClassBatchOrder(LABELS, batch_size, classes, seed=0)


def test_validate_names_the_key_and_the_rule():
    with pytest.raises(UserError, match=r"data\.batch_classes=3 .*batch_size=32"):
        validate(make_config(batch_size=32, **{"data.batch_classes": 3}))
    with pytest.raises(UserError, match=r"data\.batch_classes=0"):
        validate(make_config(**{"data.batch_classes": 0}))
    validate(make_config(batch_size=32, **{"data.batch_classes": 2}))


def test_iid_runs_keep_their_hash():
    iid = make_config()
    assert to_container(iid)["data"]["batch_classes"] is None
    before_the_key = to_container(iid)  # a config as written before the key existed
    before_the_key["data"].pop("batch_classes")
    assert config_hash(OmegaConf.create(before_the_key)) == config_hash(iid)
    assert config_hash(make_config(**{"data.batch_classes": 2})) != config_hash(iid)


def test_training_sees_two_classes_per_batch(bundled_data, monkeypatch):
    seen = []
    original = ClassBatchOrder.__next__

    def spy(self):
        index = original(self)
        seen.append(torch.unique(bundled_data.y_train[index]).numel())
        return index

    monkeypatch.setattr(ClassBatchOrder, "__next__", spy)
    cfg = make_config(
        depth=1, width=8, batch_size=10, steps=5, log_every=5, **{"data.batch_classes": 2}
    )
    outcome = train(cfg, bundled_data, on_log=lambda *_: None)
    assert outcome.status == "completed"
    assert seen and set(seen) == {2}


def test_cli_rejects_a_bad_value_with_exit_2(tmp_path):
    result = run_cli(
        ["run", "batch_size=32", "data.batch_classes=5", "steps=1", f"hydra.run.dir={tmp_path}"],
        tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert "data.batch_classes=5" in result.stderr and "Traceback" not in result.stderr
