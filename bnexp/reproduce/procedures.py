"""In-process measurements for findings that need the trained network itself, not its CSVs.

A procedure takes the run configs of its finding (one per seed, already validated) and
returns tidy tables for its claims (`bnexp.reproduce.claims.Tables.extra`). It trains through
`bnexp.run.train.train`, which hands back the trained model, and never writes files: the caller
saves the tables.
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bnexp.reproduce.generalization import train_test_gap
from bnexp.reproduce.procedure_base import ProcedureResult, _load  # noqa: F401 (re-exported)
from bnexp.run.config import Config
from bnexp.run.data import InMemoryData
from bnexp.run.layers import hidden_blocks
from bnexp.run.train import train


def _train(cfg: Config, data: InMemoryData):
    return train(cfg, data, on_log=lambda _metrics, _layers: None)


# --------------------------------------------------------------------------------------------
# running-stats
# --------------------------------------------------------------------------------------------

# Every size divides 1,000, so each one evaluates exactly the same images (the first
# multiple of 1,000 test images): a size that left a remainder out would see other images.
EVAL_BATCH_SIZES = (1, 2, 4, 8, 20, 50, 100, 200, 500, 1000)
SAME_IMAGES = 1000


def _batch_stat_forward(module: nn.modules.batchnorm._BatchNorm) -> Callable[[Tensor], Tensor]:
    """BN normalizing with the statistics of the batch it is given (biased variance, as in
    training), never touching the running statistics. With one example every normalized
    value is exactly 0, so the layer outputs beta: what "batch statistics" mean there."""

    def forward(x: Tensor) -> Tensor:
        dims = [0, *range(2, x.dim())]
        mean = x.mean(dim=dims, keepdim=True)
        var = x.var(dim=dims, unbiased=False, keepdim=True)
        y = (x - mean) / torch.sqrt(var + module.eps)
        if module.affine:
            shape = (1, -1) + (1,) * (x.dim() - 2)
            y = y * module.weight.view(shape) + module.bias.view(shape)
        return y

    return forward


@contextlib.contextmanager
def batch_statistics(model: nn.Module) -> Iterator[None]:
    """Inside: every BatchNorm layer normalizes with the current batch's statistics.

    Plain BatchNorm only: patching the noisy subclass's forward would silently drop its noise.
    """
    patched = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if any(type(m) not in (nn.BatchNorm1d, nn.BatchNorm2d) for m in patched):
        raise ValueError("batch_statistics needs torch's own BatchNorm layers (norm=batch)")
    for module in patched:
        module.forward = _batch_stat_forward(module)
    try:
        yield
    finally:
        for module in patched:
            del module.forward  # back to the class's forward


@torch.no_grad()
def accuracy_in_batches(
    model: nn.Module, x: Tensor, y: Tensor, batch_size: int
) -> tuple[float, int]:
    """Accuracy over consecutive batches of exactly `batch_size` images (len(y) must be a
    multiple of it)."""
    n = len(y)
    if n % batch_size:
        raise ValueError(f"{n} images do not split into batches of {batch_size}")
    correct = 0
    for start in range(0, n, batch_size):
        logits = model(x[start : start + batch_size])
        correct += int((logits.argmax(1) == y[start : start + batch_size]).sum())
    return correct / n, n


def running_stats(configs: list[Config]) -> ProcedureResult:
    cache: dict = {}
    rows, notes = [], []
    data = None
    for cfg in configs:
        data = _load(cfg, cache)
        outcome = _train(cfg, data)
        if outcome.status != "completed":
            notes.append(
                f"seed {cfg.seed}: training {outcome.status} at step {outcome.diverged_at_step}; left out"
            )
            continue
        model = outcome.model
        model.eval()
        # Shuffle the test set once (fixed seed): it may be ordered by class, and a batch of one
        # class has very different statistics from the population.
        order = torch.randperm(len(data.y_test), generator=torch.Generator().manual_seed(0))
        order = order[: len(order) // SAME_IMAGES * SAME_IMAGES]
        if len(order) == 0:
            raise ValueError(f"the test set has fewer than {SAME_IMAGES} images")
        x, y = data.test_inputs[order], data.y_test[order]
        for size in EVAL_BATCH_SIZES:
            acc_running, n = accuracy_in_batches(model, x, y, size)
            with batch_statistics(model):
                acc_batch, _ = accuracy_in_batches(model, x, y, size)
            rows.append(
                {
                    "seed": cfg.seed,
                    "eval_batch_size": size,
                    "mode": "running",
                    "accuracy": acc_running,
                    "images": n,
                }
            )
            rows.append(
                {
                    "seed": cfg.seed,
                    "eval_batch_size": size,
                    "mode": "batch",
                    "accuracy": acc_batch,
                    "images": n,
                }
            )
    table = pd.DataFrame(rows, columns=["seed", "eval_batch_size", "mode", "accuracy", "images"])
    return ProcedureResult.of_data({"eval_batch_size": table}, data, notes)


# --------------------------------------------------------------------------------------------
# scale-invariance
# --------------------------------------------------------------------------------------------

# Weight scales a: 10^(k/4) from 1e-4 to 1e2, four per decade, a = 1 included.
SCALE_FACTORS = tuple(10.0 ** (k / 4) for k in range(-16, 9))


def _rel_error(value: Tensor, reference: Tensor) -> float:
    return float((value - reference).abs().max() / reference.abs().max())


def _bn(z: Tensor, norm: nn.BatchNorm1d, eps: float) -> Tensor:
    """bnexp's own three lines of BN in training mode (batch statistics), with any eps: the
    algebra of the identities, which torch's layer cannot run at eps = 0."""
    mean = z.mean(0, keepdim=True)
    var = z.var(0, unbiased=False, keepdim=True)
    y = (z - mean) / torch.sqrt(var + eps)
    return y * norm.weight + norm.bias if norm.affine else y


def _torch_bn(norm: nn.BatchNorm1d) -> Callable[[Tensor], Tensor]:
    """torch's own BatchNorm1d in training mode with its own eps, on a copy (so that the running
    statistics of the trained layer are never touched)."""
    layer = copy.deepcopy(norm).train()
    return layer


def scale_invariance(configs: list[Config]) -> ProcedureResult:
    cfg = configs[0]
    cache: dict = {}
    data = _load(cfg, cache)
    outcome = _train(cfg, data)
    model = copy.deepcopy(outcome.model).double().train()
    blocks = hidden_blocks(model)
    index = 1 if len(blocks) > 1 else 0
    block = blocks[index]
    # Exactly BatchNorm1d: the noisy subclass redraws its noise on every pass with autograd.
    if type(block.norm) is not nn.BatchNorm1d or block.placement != "pre":
        raise ValueError("scale-invariance needs an MLP with norm=batch placement=pre")
    layer_eps = float(block.norm.eps)

    generator = torch.Generator().manual_seed(cfg.seed)
    batch = torch.randperm(len(data.y_train), generator=generator)[: cfg.batch_size]
    x = data.train_inputs[batch].double()
    y = data.y_train[batch]
    with torch.no_grad():
        u = x.flatten(1)
        for earlier in blocks[:index]:
            u = earlier(u)
    W = block.weight_layer.weight.detach().clone()
    v = torch.randn(u.shape[0], W.shape[0], generator=generator, dtype=torch.float64)
    # The smallest per-unit std of Wu over the batch (biased, as BN uses it): where a·σ_min is
    # no longer large against sqrt(eps), eps stops being negligible and the invariance breaks.
    sigma_min = float((u @ W.T).std(0, unbiased=False).min())

    def norm_of(layer: str, eps: float) -> Callable[[Tensor], Tensor]:
        if layer == "torch":
            return _torch_bn(block.norm)
        return lambda z: _bn(z, block.norm, eps)

    def forward(a: float, layer: str, eps: float) -> Tensor:
        with torch.no_grad():
            return norm_of(layer, eps)(u @ (a * W).T)

    def input_vjp(a: float, layer: str, eps: float) -> Tensor:
        uu = u.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad((norm_of(layer, eps)(uu @ (a * W).T) * v).sum(), uu)
        return grad

    def weight_grad(a: float, layer: str, eps: float) -> Tensor:
        net = copy.deepcopy(model)
        scaled = hidden_blocks(net)[index]
        with torch.no_grad():
            scaled.weight_layer.weight.copy_(a * W)
        if layer == "formula":
            # torch's batch_norm refuses eps=0 in training mode: use the same formula by hand.
            scaled.norm.forward = lambda z: _bn(z, scaled.norm, eps)
        loss = F.cross_entropy(net(x), y)
        (grad,) = torch.autograd.grad(loss, scaled.weight_layer.weight)
        return grad

    rows = []
    # The identities: bnexp's formula without eps (exact algebra, only rounding can break it).
    # The claim: torch's own layer with its own eps (approximate; breaks for small a).
    for layer, eps in (("formula", 0.0), ("torch", layer_eps)):
        ref_forward, ref_vjp, ref_grad = (
            forward(1.0, layer, eps),
            input_vjp(1.0, layer, eps),
            weight_grad(1.0, layer, eps),
        )
        for a in SCALE_FACTORS:
            for check, error in (
                ("forward", _rel_error(forward(a, layer, eps), ref_forward)),
                ("input_jacobian", _rel_error(input_vjp(a, layer, eps), ref_vjp)),
                ("weight_gradient", _rel_error(a * weight_grad(a, layer, eps), ref_grad)),
            ):
                rows.append(
                    {
                        "check": check,
                        "layer": layer,
                        "a": a,
                        "eps": eps,
                        "rel_error": error,
                        "a_sigma_min": a * sigma_min,
                    }
                )
    notes = [
        f"layer {index + 1} of {len(blocks)} (Linear {W.shape[1]} -> {W.shape[0]}, BatchNorm1d eps={layer_eps:g}) "
        f"after {outcome.steps_done} training steps; batch of {len(y)} training images; float64; "
        f"smallest per-unit std of Wu over the batch σ_min = {sigma_min:.3g} "
        f"(a·σ_min = sqrt(eps) at a = {math.sqrt(layer_eps) / sigma_min:.3g})"
    ]
    table = pd.DataFrame(rows, columns=["check", "layer", "a", "eps", "rel_error", "a_sigma_min"])
    return ProcedureResult.of_data({"scale_invariance": table}, data, notes)


# --------------------------------------------------------------------------------------------
# bn-backward and running-average: identity checks on torch's own layers (bnexp/reproduce/bn_math.py)
# --------------------------------------------------------------------------------------------


def bn_backward(configs: list[Config]) -> ProcedureResult:
    """Both hand-derived BN backward passes against autograd on nn.BatchNorm1d (float64), on
    random inputs drawn from the first config's seed: one row per form, batch size and affine."""
    from bnexp.reproduce import bn_math

    seed = configs[0].seed if configs else 0
    rows = []
    for form, backward in (
        ("closed_form", bn_math.bn_backward_closed_form),
        ("compact", bn_math.bn_backward_compact),
    ):
        for case in bn_math.bn_backward_identity(backward, seed=seed).cases:
            rows.append(
                {
                    "form": form,
                    "batch_size": case.batch_size,
                    "affine": case.affine,
                    "forward_error": case.forward_error,
                    "dx_error": case.dx_error,
                    "dgamma_error": case.dgamma_error,
                    "dbeta_error": case.dbeta_error,
                    "max_error": case.max_error,
                }
            )
    notes = [
        f"random inputs (seed {seed}), 7 features, float64, eps 1e-5; nothing trained, no data read"
    ]
    return ProcedureResult({"bn_backward": pd.DataFrame(rows)}, "none (random inputs)", 0, 0, notes)


# Updates after which the running-average finding evaluates (each a separate, deterministic
# run from the same seed: the first T steps of the longest). 100 is the step its claims read.
MOMENTUM_LAG_STEPS = (10, 25, 50, 100, 200, 400, 1000)


def _running_average_check_rows() -> list[dict]:
    from bnexp.reproduce import bn_math

    checks = bn_math.running_average_checks()
    example, rule, bessel = checks.worked_example, checks.update_rule, checks.bessel
    rows = [
        (
            "worked_example",
            "worked_example_error_vs_published",
            "error",
            example.max_error_vs_published,
        ),
        (
            "worked_example",
            "worked_example_error_vs_by_hand",
            "error",
            example.max_error_vs_by_hand,
        ),
        *[
            ("worked_example", f"running_mean_{i}", "value", value)
            for i, value in enumerate(example.running_mean)
        ],
        ("update_rule", "max_mean_error", "error", rule.max_mean_error),
        ("update_rule", "max_var_error", "error", rule.max_var_error),
        (
            "update_rule",
            "max_mean_error_opposite_convention",
            "control",
            rule.max_mean_error_opposite_convention,
        ),
        ("bessel", "running_var_error_vs_unbiased", "error", bessel.running_var_error_vs_unbiased),
        ("bessel", "output_error_vs_biased", "error", bessel.output_error_vs_biased),
        ("bessel", "output_error_vs_unbiased", "control", bessel.output_error_vs_unbiased),
        ("bessel", "running_var_over_biased_var", "ratio", bessel.running_var_over_biased_var),
        ("bessel", "expected_ratio_m_over_m_minus_1", "ratio", bessel.expected_ratio),
    ]
    return [
        {"check": check, "quantity": quantity, "kind": kind, "value": float(value)}
        for check, quantity, kind, value in rows
    ]


def running_average(configs: list[Config]) -> ProcedureResult:
    """The running-statistics identity checks, then, for each config (a momentum and a seed),
    networks trained for each of MOMENTUM_LAG_STEPS updates, evaluated on the same 1,000 test
    images in one batch with running statistics (eval mode) and with that batch's statistics."""
    cache: dict = {}
    rows, notes = [], []
    data = None
    for cfg in configs:
        data = _load(cfg, cache)
        order = torch.randperm(len(data.y_test), generator=torch.Generator().manual_seed(0))
        order = order[:SAME_IMAGES]
        if len(order) < SAME_IMAGES:
            raise ValueError(f"the test set has fewer than {SAME_IMAGES} images")
        x, y = data.test_inputs[order], data.y_test[order]
        for steps in MOMENTUM_LAG_STEPS:
            run_cfg = copy.deepcopy(cfg)
            run_cfg.steps = steps
            run_cfg.log_every = run_cfg.eval_every = (
                steps  # rows at 0 and T only: nothing else is read
            )
            outcome = _train(run_cfg, data)
            if outcome.status != "completed":
                notes.append(
                    f"momentum {cfg.norm.momentum} seed {cfg.seed} T={steps}: training "
                    f"{outcome.status} at step {outcome.diverged_at_step}; left out"
                )
                continue
            model = outcome.model.eval()
            acc_running, _ = accuracy_in_batches(model, x, y, SAME_IMAGES)
            with batch_statistics(model):
                acc_batch, _ = accuracy_in_batches(model, x, y, SAME_IMAGES)
            for mode, accuracy in (("running", acc_running), ("batch", acc_batch)):
                rows.append(
                    {
                        "seed": cfg.seed,
                        "momentum": cfg.norm.momentum,
                        "step": steps,
                        "mode": mode,
                        "accuracy": accuracy,
                    }
                )
    lag = pd.DataFrame(rows, columns=["seed", "momentum", "step", "mode", "accuracy"])
    checks = pd.DataFrame(_running_average_check_rows())
    return ProcedureResult.of_data(
        {"momentum_lag": lag, "running_average_checks": checks}, data, notes
    )


def explosion(configs: list[Config]) -> ProcedureResult:
    """Step-0 gradient profiles and a trainable-depth slice: bnexp/reproduce/explosion.py."""
    from bnexp.reproduce.explosion import explosion as measure  # torch-heavy: on demand

    return measure(configs)


PROCEDURES: dict[str, Callable[[list[Config]], ProcedureResult]] = {
    "running_stats": running_stats,
    "scale_invariance": scale_invariance,
    "bn_backward": bn_backward,
    "running_average": running_average,
    "explosion": explosion,
    "train_test_gap": train_test_gap,  # bnexp/reproduce/generalization.py
}
