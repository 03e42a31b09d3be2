"""device=auto|cpu|cuda and deterministic, on a machine without a GPU: what resolves, what is a
user error, what stays out of the hash, and the GPU code paths (deferred loss reads, device-side
sorting) run on the CPU, where they must give the rows the CPU paths give."""

from __future__ import annotations

import json
import math

import pytest
import torch

from bnexp.errors import UserError
from bnexp.run import device as device_module
from bnexp.run import stats, tally
from bnexp.run.checkpoint import CHECKPOINT_FILE, load_checkpoint, save_atomic
from bnexp.run.config import config_hash, validate
from bnexp.run.device import (
    check_resume_device,
    configure_device,
    data_on,
    device_label,
    device_name,
    resolve_device,
)
from bnexp.run.layers import noise_generator
from bnexp.run.runner import execute
from bnexp.run.tally import StepTally
from bnexp.run.train import train

from conftest import TINY, make_config, read_csv, run_cli


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(device_module, "cuda_available", lambda: False)


def test_auto_and_cpu_resolve_to_the_cpu_without_a_gpu(no_cuda):
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    assert device_label(torch.device("cpu")) == "cpu"
    assert device_name(torch.device("cpu"))  # the processor's name, never empty


def test_auto_picks_cuda_when_torch_sees_a_gpu(monkeypatch):
    monkeypatch.setattr(device_module, "cuda_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")  # no index: CUDA is not touched


def test_cuda_without_a_gpu_is_a_user_error_naming_key_value_and_choices(no_cuda):
    with pytest.raises(UserError) as error:
        resolve_device("cuda")
    message = str(error.value)
    assert message.startswith("device=cuda is not possible here")
    assert "device=cpu" in message and "device=auto" in message
    with pytest.raises(UserError, match="device=cuda is not possible"):
        validate(make_config(device="cuda"))
    validate(make_config(device="cpu"))
    validate(make_config(device="auto", deterministic=True))


def test_device_and_deterministic_stay_out_of_the_config_hash():
    """The hash names the experiment: device=auto on a CPU keeps today's hashes, and a
    finished run is not run again on another device (meta.json says where it ran)."""
    base = config_hash(make_config())
    assert config_hash(make_config(device="cpu")) == base
    assert config_hash(make_config(device="cuda", deterministic=True)) == base
    assert config_hash(make_config(depth=4)) != base  # the hash still sees real keys


def test_determinism_switches_are_left_alone_on_the_cpu():
    before = torch.are_deterministic_algorithms_enabled()
    configure_device(torch.device("cpu"), True)
    assert torch.are_deterministic_algorithms_enabled() == before


def test_data_stays_the_same_object_on_the_cpu(bundled_data):
    assert data_on(bundled_data, torch.device("cpu")) is bundled_data


def test_noise_generators_on_the_cpu_are_the_ones_before_devices_existed():
    a = noise_generator(3, 2, 7, "train")
    b = noise_generator(3, 2, 7, "train", torch.device("cpu"))
    assert a.initial_seed() == b.initial_seed()
    assert torch.equal(torch.rand(5, generator=a), torch.rand(5, generator=b))


def test_resume_is_refused_on_another_kind_of_device(tmp_path):
    path = tmp_path / CHECKPOINT_FILE
    on_gpu = {"device": "cuda", "device_name": "NVIDIA H100 80GB HBM3"}
    with pytest.raises(UserError) as error:
        check_resume_device(on_gpu, torch.device("cpu"), path)
    message = str(error.value)
    assert "written by a run on cuda (NVIDIA H100 80GB HBM3)" in message
    assert "device=cuda" in message and str(path) in message
    check_resume_device({"device": "cpu"}, torch.device("cpu"), path)
    check_resume_device({}, torch.device("cpu"), path)  # written before the key: on the CPU
    with pytest.raises(UserError):
        check_resume_device({}, torch.device("cuda"), path)


def train_rows(cfg, data):
    metrics, layers = [], []
    outcome = train(cfg, data, lambda m, rows: (metrics.append(m), layers.extend(rows)))
    return outcome, metrics, layers


def comparable(rows, elapsed_index=None):
    """Rows with NaN as None (so == is exact) and without elapsed_s."""
    return [
        [None if isinstance(v, float) and math.isnan(v) else v
         for i, v in enumerate(row) if i != elapsed_index]
        for row in rows
    ]  # fmt: skip


CASES = {
    "bn-sigmoid": {},
    # Diverges at step 3, between the log steps 2 and 4: found at 4, reported at 3.
    "diverging": {"norm.name": "none", "optim.lr": 1000.0, "act": "relu", "width": 100},
    "regression": {"data.name": "gaussian_regression", "loss": "mse", "act": "identity"},
}


@pytest.mark.parametrize("case", CASES)
def test_gpu_code_paths_on_the_cpu_write_the_rows_of_the_cpu_paths(case, bundled_data, monkeypatch):
    """The GPU's deferred loss reads (tally.py) and device-side sorting (stats.py), forced on
    the CPU, give the same rows as the CPU's own paths, a divergence between log steps too."""
    from bnexp.run.runner import load_dataset

    cfg = make_config(**{"steps": 40, "log_every": 2, "eval_every": 4, "width": 16,
                         "depth": 3, **CASES[case]})  # fmt: skip
    data = bundled_data if "data.name" not in CASES[case] else load_dataset(cfg)
    outcome, metrics, layers = train_rows(cfg, data)
    monkeypatch.setattr(tally, "IMMEDIATE_DEVICES", frozenset())
    monkeypatch.setattr(stats, "NUMPY_SORT_DEVICES", frozenset())
    deferred, metrics_d, layers_d = train_rows(cfg, data)
    elapsed = len(metrics[0]) - 1
    assert comparable(metrics_d, elapsed) == comparable(metrics, elapsed)
    assert comparable(layers_d) == comparable(layers)
    assert (deferred.status, deferred.diverged_at_step, deferred.steps_done) == (
        outcome.status, outcome.diverged_at_step, outcome.steps_done,
    )  # fmt: skip
    if case == "diverging":
        assert outcome.status == "diverged" and outcome.diverged_at_step % 2 == 1


def test_deferred_tally_sums_in_step_order_and_grows_past_its_capacity():
    t = StepTally(torch.device("cpu"), capacity=2, with_accuracy=True)
    t.immediate = False  # as on a GPU: the buffer, read at once
    t.buffer = torch.empty(2)
    t.correct_dev = torch.zeros((), dtype=torch.int64)
    values = [0.1, 1e8, -1e8, 0.3, 0.7]
    logits = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    for step, value in enumerate(values, start=10):
        assert t.add(step, torch.tensor(value), logits, torch.tensor([1, 1])) is None
    assert t.check() is None
    total = 0.0
    for value in values:
        total += float(torch.tensor(value))  # float32, then summed in float64 in order
    assert t.read() == (total / 5, 0.5)
    t.add(20, torch.tensor(1.0), logits, torch.tensor([1, 0]))
    t.add(21, torch.tensor(float("inf")), logits, torch.tensor([1, 0]))
    assert t.check() == tally.Divergence(21, float("inf"))


def test_a_checkpoint_written_on_another_device_is_not_resumed(tmp_path, bundled_data):
    """execute() refuses it before touching the run directory: meta.json, the CSVs and the
    checkpoint stay as the killed run left them."""
    from bnexp.run.checkpoint import Checkpointer

    cfg = make_config(steps=12, log_every=3, checkpoint_every=6, width=16, probe_size=32,
                      **{"data.source": "bundled", "data.download": False})  # fmt: skip
    rows = {"metrics_rows": 0, "layers_rows": 0}
    checkpointer = Checkpointer(tmp_path, config_hash(cfg), 6, lambda: rows)
    train(cfg, bundled_data, lambda m, r: None, checkpointer=checkpointer)
    state = load_checkpoint(tmp_path, config_hash(cfg))
    assert state["device"] == "cpu" and state["device_name"] == device_name(torch.device("cpu"))
    state.update(device="cuda", device_name="NVIDIA H100 80GB HBM3")
    save_atomic(state, tmp_path / CHECKPOINT_FILE)
    meta = {"status": "interrupted", "config_hash": config_hash(cfg), "steps_done": 9}
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"device=cpu cannot resume .*written by a run on cuda"):
        execute(cfg, tmp_path, threads=1, show_progress=False)
    assert json.loads((tmp_path / "meta.json").read_text()) == meta
    assert (tmp_path / CHECKPOINT_FILE).exists()


# --------------------------------------------------------------------------------------------
# Through the command line
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_cli_runs_on_the_cpu_and_records_the_device(device, tmp_path):
    run_dir = tmp_path / "run"
    done = run_cli(["run", *TINY, f"device={device}", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["status"] == "completed"
    expected = "cuda:0" if device == "auto" and torch.cuda.is_available() else "cpu"
    assert meta["device"] == expected and meta["device_name"]
    assert meta["config"]["device"] == device
    assert len(read_csv(run_dir / "metrics.csv")) == 5  # steps 0, 5, 10, 15, 20


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_cli_device_cuda_without_a_gpu_exits_2_with_one_paragraph(tmp_path):
    done = run_cli(["run", *TINY, "device=cuda", f"hydra.run.dir={tmp_path / 'r'}"], cwd=tmp_path)
    assert done.returncode == 2
    assert "bnexp: error: device=cuda is not possible here" in done.stderr
    assert "device=cpu" in done.stderr and "Traceback" not in done.stderr
    meta = json.loads((tmp_path / "r" / "meta.json").read_text())
    assert meta["status"] == "failed" and "device=cuda" in meta["error"]


@pytest.mark.slow
def test_cli_bad_device_and_deterministic_values_exit_2(tmp_path):
    for word, key in (("device=tpu", "device"), ("deterministic=maybe", "deterministic")):
        done = run_cli(["run", *TINY, word], cwd=tmp_path)
        assert done.returncode == 2, (word, done.stderr)
        assert key in done.stderr and "Traceback" not in done.stderr
    done = run_cli(["run", "device=tpu"], cwd=tmp_path)
    assert "cpu" in done.stderr and "cuda" in done.stderr  # the valid choices
