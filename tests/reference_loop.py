"""An independent plain-PyTorch re-implementation of a bnexp run, for the reference test.

It uses no bnexp code at all: it is given the run's resolved config (the `.hydra/config.yaml`
bnexp wrote, as a plain dict), the same data tensors (the caller loads them with bnexp's data
loader, the one shared piece) and the probe indices recorded in meta.json. From those it builds
the network itself, trains it in a loop written out by hand and computes every `layers.csv`
and `metrics.csv` column from its definition in README.md (statistics in float64):

- architecture: MLP blocks Linear -> norm -> act (`pre`) or Linear -> act -> norm (`post`),
  the Linear's bias dropped when a norm follows it directly (`pre`); a head Linear(width, 10).
  CNN: 3×3 convolutions (padding 1) in min(depth, 3) stages of width·2^stage channels, earlier
  stages taking the remaining blocks, 2×2 max-pool between stages, global average pooling,
  a head Linear. Written with F.linear / F.conv2d on parameters this module owns.
- init: torch.manual_seed(seed), then every weight layer in forward order (then the head) gets
  PyTorch's default Kaiming-uniform(a=√5) weight and U(±1/√fan_in) bias, drawn from the
  global generator; a non-default `init` then redraws every weight in the same order
  (gaussian N(0, init_std²), xavier N(0, 2/(fan_in+fan_out)), kaiming N(0, 2/fan_in)) and
  zeroes the biases.
- batch norm written out: (x - mean) / sqrt(var + eps) · gamma + beta with the batch's mean
  and biased variance over N (MLP) or N×H×W (CNN); running mean/var updated with `momentum`
  and the unbiased batch variance (PyTorch's convention); eval mode uses the running ones.
- noisy BN (`norm=noisy`: after BN; `norm=noise_only`: alone, the Linear keeps its bias):
  Santurkar et al.'s per-activation noise, drawn by the RNG convention bnexp documents in
  bnexp/run/layers.py (class _NoisyAfter), rewritten here from that text (see `Noise`).
- batch order reimplemented (not imported): a torch.Generator seeded with `seed`, one
  randperm of the training set per epoch, consecutive slices of `batch_size`, the last
  partial batch of each epoch dropped.
- SGD written out: p -= lr · (g + weight_decay·p), with a momentum buffer for optim=momentum.
- step order (row t describes the network after t updates): on a logged step t the running
  statistics and gamma/beta are read and (on evaluation steps) the test set is evaluated in
  eval mode, all BEFORE batch t's forward; the probe batch is run in train mode with its own
  batch statistics and no running-statistics update; batch t's forward/backward gives the
  gradient, pre- and post-activation columns; update t gives `update_ratio` (none after the
  final row, whose forward does not update the running statistics).
- precision: `dtype=torch.float64` (what the test uses) trains in double precision from the
  same float32 draws (init, noise) and data, so the reference carries no float32 rounding:
  what remains between it and bnexp is bnexp's own float32 rounding and the CSV's 6 digits.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

LAYER_COLUMNS = [
    "grad_w_mean_abs", "grad_w_norm", "grad_w_ratio", "update_ratio", "grad_act_mean_abs",
    "pre_mean", "pre_std", "pre_min", "pre_max", "pre_p15", "pre_p50", "pre_p85",
    "act_mean", "act_std", "act_min", "act_max", "act_sat_frac",
    "unit_p15", "unit_p50", "unit_p85",
    "gamma_mean", "gamma_std", "beta_mean", "beta_std",
    "running_mean_mean", "running_var_mean",
]  # fmt: skip
METRIC_COLUMNS = ["train_loss", "train_acc", "test_loss", "test_acc", "lr"]
QUANTILES = (0.15, 0.50, 0.85)
# README: "percentiles from a fixed 65,536-element subsample" of larger tensors. The reference
# computes exact percentiles over all elements, so it only accepts configs whose measured
# tensors are no larger than this (then bnexp's are exact too).
EXACT_PERCENTILE_LIMIT = 65_536


@dataclass
class Row:
    """What the reference expects in one CSV row: a float, or None for an empty cell; and for
    each column the magnitude of the elements it summarises (for the absolute tolerance)."""

    values: dict[str, float | None] = field(default_factory=dict)
    scales: dict[str, float] = field(default_factory=dict)


@dataclass
class Reference:
    metrics: dict[int, Row]  # step -> row
    layers: dict[tuple[int, int], Row]  # (step, layer) -> row


# ------------------------------------------------------------------------------------------
# Batches


def batch_order(num_samples: int, batch_size: int, seed: int) -> Iterator[Tensor]:
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(num_samples, generator=generator)
        for start in range(0, num_samples - batch_size + 1, batch_size):
            yield order[start : start + batch_size]


# ------------------------------------------------------------------------------------------
# The network


def uniform(shape: tuple[int, ...], bound: float) -> Tensor:
    return torch.empty(shape).uniform_(-bound, bound)


@dataclass
class WeightLayer:
    weight: Tensor
    bias: Tensor | None
    conv: bool

    @classmethod
    def default_init(cls, out: int, fan_in_channels: int, bias: bool, conv: bool) -> WeightLayer:
        shape = (out, fan_in_channels, 3, 3) if conv else (out, fan_in_channels)
        fan_in = fan_in_channels * (9 if conv else 1)
        # kaiming_uniform_(a=sqrt(5)): gain sqrt(2 / (1 + a²)), bound sqrt(3)·gain/sqrt(fan_in)
        bound = math.sqrt(3.0) * math.sqrt(2.0 / (1 + 5)) / math.sqrt(fan_in)
        weight = uniform(shape, bound)
        bias_tensor = uniform((out,), 1 / math.sqrt(fan_in)) if bias else None
        return cls(weight, bias_tensor, conv)

    def reinit(self, scheme: str, init_std: float) -> None:
        receptive = 9 if self.conv else 1
        fan_in, fan_out = self.weight.shape[1] * receptive, self.weight.shape[0] * receptive
        std = {
            "gaussian": init_std,
            "xavier": math.sqrt(2.0 / (fan_in + fan_out)),
            "kaiming": math.sqrt(2.0) / math.sqrt(fan_in),
        }[scheme]
        self.weight.normal_(0.0, std)
        if self.bias is not None:
            self.bias.zero_()

    def parameters(self) -> list[Tensor]:
        return [self.weight] + ([self.bias] if self.bias is not None else [])

    def __call__(self, x: Tensor) -> Tensor:
        if self.conv:
            return F.conv2d(x, self.weight, self.bias, padding=1)
        return F.linear(x, self.weight, self.bias)


@dataclass
class BatchNorm:
    """Batch normalisation written out."""

    channels: int
    affine: bool
    momentum: float
    eps: float

    def __post_init__(self) -> None:
        self.gamma = torch.ones(self.channels) if self.affine else None
        self.beta = torch.zeros(self.channels) if self.affine else None
        self.running_mean = torch.zeros(self.channels)
        self.running_var = torch.ones(self.channels)

    def parameters(self) -> list[Tensor]:
        return [self.gamma, self.beta] if self.affine else []

    def __call__(self, x: Tensor, *, training: bool, update_running: bool) -> Tensor:
        dims = (0, 2, 3) if x.dim() == 4 else (0,)
        view = (1, -1, 1, 1) if x.dim() == 4 else (1, -1)
        if training:
            mean = x.mean(dims)
            var = x.var(dims, unbiased=False)
            if update_running:
                count = x.numel() // self.channels
                with torch.no_grad():
                    self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                    unbiased = var * count / (count - 1)
                    self.running_var.mul_(1 - self.momentum).add_(self.momentum * unbiased)
        else:
            mean, var = self.running_mean, self.running_var
        out = (x - mean.view(view)) / torch.sqrt(var.view(view) + self.eps)
        if self.affine:
            out = out * self.gamma.view(view) + self.beta.view(view)
        return out


def noise_generator(seed: int, layer: int, step: int, stream: str) -> torch.Generator:
    """bnexp's documented convention (bnexp/run/layers.py, class _NoisyAfter): one CPU generator per
    (run seed, 1-based layer, step, stream), seeded by the first 8 bytes (little-endian) of
    sha256("bnexp-noise:{seed}:{layer}:{step}:{stream}"), shifted right by one bit."""
    digest = hashlib.sha256(f"bnexp-noise:{seed}:{layer}:{step}:{stream}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


@dataclass
class Noise:
    """Santurkar et al. 2018 (Sec. 2.1, Algorithm 1): per step and unit j, mu_j ~ U(-shift,
    shift) and sigma_j ~ U(1, scale); per activation m ~ U(mu_j ± shift_jitter) and
    s ~ N(sigma_j, scale_jitter²); output a·s + m. Eval mode: a·(1 + scale)/2, the expectation.

    The draws follow bnexp's documented order (float32, as bnexp's float32 network draws them,
    then cast): from noise_generator(seed, layer, t, "train"): mu (C), sigma (C), then u and z
    shaped like the output; the probe batch at step t takes mu and sigma from the same "train"
    generator and its u, z from noise_generator(seed, layer, t, "probe")."""

    seed: int
    layer: int
    shift: float
    scale: float
    shift_jitter: float
    scale_jitter: float

    def __call__(self, a: Tensor, *, training: bool, step: int, stream: str) -> Tensor:
        if not training:
            return a * ((1 + self.scale) / 2)
        channels, f32 = a.shape[1], torch.float32
        g = noise_generator(self.seed, self.layer, step, "train")
        mu = self.shift * (2 * torch.rand(channels, generator=g, dtype=f32).to(a.dtype) - 1)
        sigma = 1 + (self.scale - 1) * torch.rand(channels, generator=g, dtype=f32).to(a.dtype)
        if stream != "train":
            g = noise_generator(self.seed, self.layer, step, stream)
        u = torch.rand(a.shape, generator=g, dtype=f32).to(a.dtype)
        z = torch.randn(a.shape, generator=g, dtype=f32).to(a.dtype)
        view = (1, channels) + (1,) * (a.dim() - 2)
        s = sigma.view(view) + self.scale_jitter * z
        m = mu.view(view) + self.shift_jitter * (2 * u - 1)
        return a * s + m


ACTIVATIONS = {
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "tanh": torch.tanh,
    "identity": lambda x: x,
}


@dataclass
class Block:
    weight_layer: WeightLayer
    norm: BatchNorm | None
    noise: Noise | None  # after the norm (norm=noisy), or alone (norm=noise_only)
    act: str
    placement: str
    pool_before: bool = False  # CNN: a 2×2 max-pool before this block (a new stage)

    def __call__(
        self, x: Tensor, *, training: bool, update_running: bool, step: int, stream: str, site: dict
    ) -> Tensor:
        """Runs the block; site["pre"] / site["act"] receive the nonlinearity's input/output."""
        if self.pool_before:
            x = F.max_pool2d(x, 2)
        z = self.weight_layer(x)

        def norm(v: Tensor) -> Tensor:
            if self.norm is not None:
                v = self.norm(v, training=training, update_running=update_running)
            if self.noise is not None:
                v = self.noise(v, training=training, step=step, stream=stream)
            return v

        pre = norm(z) if self.placement == "pre" else z
        act = ACTIVATIONS[self.act](pre)
        site["pre"], site["act"] = pre, act
        return act if self.placement == "pre" else norm(act)


class Network:
    def __init__(self, cfg: dict, input_shape: tuple[int, ...], num_classes: int):
        depth, width = cfg["depth"], cfg["width"]
        norm_name, placement = cfg["norm"]["name"], cfg["placement"]
        if norm_name not in ("batch", "noisy", "noise_only", "none"):
            raise NotImplementedError(f"the reference has no norm={norm_name}")
        self.cnn = cfg["model"]["name"] == "cnn"
        bias = norm_name in ("none", "noise_only") or placement == "post"
        if self.cnn:
            stages = min(depth, 3)
            base, extra = divmod(depth, stages)
            sizes = [base + (1 if i < extra else 0) for i in range(stages)]
            plan = [(width * 2**s, s > 0 and i == 0) for s, n in enumerate(sizes) for i in range(n)]
            previous = input_shape[0]
        else:
            plan = [(width, False)] * depth
            previous = math.prod(input_shape)
        self.blocks: list[Block] = []
        n = cfg["norm"]
        for index, (out, pool) in enumerate(plan, start=1):
            layer = WeightLayer.default_init(out, previous, bias, conv=self.cnn)
            norm = noise = None
            if norm_name in ("batch", "noisy"):
                norm = BatchNorm(out, cfg["affine"], n["momentum"], n["eps"])
            if norm_name in ("noisy", "noise_only"):
                noise = Noise(
                    cfg["seed"], index, n["noise_shift"], n["noise_scale"],
                    n["noise_shift_jitter"], n["noise_scale_jitter"],
                )  # fmt: skip
            self.blocks.append(Block(layer, norm, noise, cfg["act"], placement, pool))
            previous = out
        self.head = WeightLayer.default_init(num_classes, previous, True, conv=False)
        if cfg["init"] != "default":
            for layer in [b.weight_layer for b in self.blocks] + [self.head]:
                layer.reinit(cfg["init"], cfg["init_std"])
        for p in self.parameters():
            p.requires_grad_(True)

    def to(self, dtype: torch.dtype) -> None:
        """All parameters and buffers in `dtype` (after the float32 init: the same draws)."""
        for layer in [b.weight_layer for b in self.blocks] + [self.head]:
            layer.weight = layer.weight.detach().to(dtype).requires_grad_(True)
            if layer.bias is not None:
                layer.bias = layer.bias.detach().to(dtype).requires_grad_(True)
        for norm in (b.norm for b in self.blocks if b.norm is not None):
            if norm.affine:
                norm.gamma = norm.gamma.detach().to(dtype).requires_grad_(True)
                norm.beta = norm.beta.detach().to(dtype).requires_grad_(True)
            norm.running_mean = norm.running_mean.to(dtype)
            norm.running_var = norm.running_var.to(dtype)

    def parameters(self) -> list[Tensor]:
        params = []
        for block in self.blocks:
            params += block.weight_layer.parameters()
            params += block.norm.parameters() if block.norm is not None else []
        return params + self.head.parameters()

    def __call__(
        self,
        x: Tensor,
        *,
        training: bool,
        update_running: bool = True,
        step: int = 0,
        stream: str = "train",
    ) -> tuple[Tensor, list[dict]]:
        """Logits and each block's measurement site; `step`/`stream` select the noise draws."""
        sites: list[dict] = []
        if not self.cnn:
            x = x.flatten(1)
        for block in self.blocks:
            sites.append({})
            x = block(
                x, training=training, update_running=update_running, step=step, stream=stream,
                site=sites[-1],
            )  # fmt: skip
        if self.cnn:
            x = x.mean(dim=(2, 3))
        return self.head(x), sites


# ------------------------------------------------------------------------------------------
# Statistics from their definitions (float64)


def cross_entropy(logits: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
    losses = torch.logsumexp(logits, 1) - logits.gather(1, labels[:, None])[:, 0]
    return losses.mean() if reduction == "mean" else losses.sum()


def flat64(t: Tensor) -> Tensor:
    return t.detach().reshape(-1).double()


def rms(t: Tensor) -> float:
    return flat64(t).pow(2).mean().sqrt().item()


def quantiles(t: Tensor) -> list[float]:
    values = flat64(t)
    if values.numel() > EXACT_PERCENTILE_LIMIT:
        raise ValueError(
            f"{values.numel()} elements: bnexp subsamples percentiles above "
            f"{EXACT_PERCENTILE_LIMIT}; use a smaller config for an exact reference"
        )
    return torch.quantile(values, torch.tensor(QUANTILES, dtype=torch.float64)).tolist()


def distribution(prefix: str, t: Tensor, row: Row, with_quantiles: bool = True) -> None:
    """{prefix}_mean, _std (sample), _min, _max and _p15/_p50/_p85 of all elements of t."""
    values, scale = flat64(t), rms(t)
    stats = {"mean": values.mean(), "std": values.std(), "min": values.min(), "max": values.max()}
    for name, value in stats.items():
        row.values[f"{prefix}_{name}"] = value.item()
        row.scales[f"{prefix}_{name}"] = scale
    if with_quantiles:
        for q, value in zip(("p15", "p50", "p85"), quantiles(t)):
            row.values[f"{prefix}_{q}"] = value
            row.scales[f"{prefix}_{q}"] = scale


def saturation(act: str, a: Tensor) -> float | None:
    a = flat64(a)
    if act == "sigmoid":
        return ((a < 0.05) | (a > 0.95)).double().mean().item()
    if act == "tanh":
        return (a.abs() > 0.97).double().mean().item()
    if act == "relu":
        return (a == 0).double().mean().item()
    return None  # identity: no flat part


def mean_std(prefix: str, t: Tensor | None, row: Row) -> None:
    for name in ("mean", "std"):
        key = f"{prefix}_{name}"
        if t is None:
            row.values[key] = None
        else:
            values = flat64(t)
            row.values[key] = (values.mean() if name == "mean" else values.std()).item()
            row.scales[key] = rms(t)


def unit_values(pre: Tensor, unit: int) -> Tensor:
    return pre[:, unit]  # MLP: one column; CNN: the channel's N×H×W values


# ------------------------------------------------------------------------------------------
# The loop


def sgd_step(params: list[Tensor], buffers: dict, lr: float, momentum: float, decay: float):
    with torch.no_grad():
        for i, p in enumerate(params):
            d = p.grad + decay * p if decay else p.grad
            if momentum:
                buffers[i] = d.clone() if i not in buffers else buffers[i].mul_(momentum).add_(d)
                d = buffers[i]
            p.sub_(lr * d)


def run_reference(
    cfg: dict,
    train_inputs: Tensor,
    train_labels: Tensor,
    test_inputs: Tensor,
    test_labels: Tensor,
    probe_indices: list[int],
    *,
    running_stats_one_batch_ahead: bool = False,
    dtype: torch.dtype = torch.float32,
) -> Reference:
    """Every metrics.csv and layers.csv value of the run `cfg` describes (see module docstring).

    dtype=torch.float64 trains in double precision (the float32 draws of the init and the
    noise are cast): a run's numbers without float32 rounding, to see how far rounding alone
    moves a config's numbers. `running_stats_one_batch_ahead=True` reproduces the old order (running statistics and test
    metrics taken after batch t's forward), to show that the comparison can tell the two apart.
    """
    optim = cfg["optim"]
    if optim["name"] not in ("sgd", "momentum"):
        raise NotImplementedError(f"the reference has no optim={optim['name']}")
    momentum = optim["momentum"] if optim["name"] == "momentum" else 0.0
    lr, decay = optim["lr"], optim["weight_decay"]
    if cfg["data"]["augment"]:
        raise NotImplementedError("the reference does not augment")
    steps, log_every, eval_every = cfg["steps"], cfg["log_every"], cfg["eval_every"]
    if log_every is None or eval_every is None:
        raise ValueError("give log_every and eval_every explicitly")
    unit, act = cfg["track_unit"], cfg["act"]

    torch.manual_seed(cfg["seed"])
    net = Network(cfg, tuple(train_inputs.shape[1:]), 10)
    net.to(dtype)
    train_inputs, test_inputs = train_inputs.to(dtype), test_inputs.to(dtype)
    params, buffers = net.parameters(), {}
    batches = batch_order(len(train_labels), cfg["batch_size"], cfg["seed"])
    probe_x = test_inputs[torch.tensor(probe_indices, dtype=torch.long)]

    metrics: dict[int, Row] = {}
    layers: dict[tuple[int, int], Row] = {}
    loss_sum, correct, samples, seen_steps = 0.0, 0, 0, 0

    def evaluate() -> tuple[float, float]:
        with torch.no_grad():
            logits, _ = net(test_inputs, training=False)
            loss = cross_entropy(logits.double(), test_labels, "sum").item() / len(test_labels)
            return loss, (logits.argmax(1) == test_labels).double().mean().item()

    def norm_rows(rows: list[Row]) -> None:
        for block, row in zip(net.blocks, rows):
            norm = block.norm
            mean_std("gamma", norm.gamma if norm is not None else None, row)
            mean_std("beta", norm.beta if norm is not None else None, row)
            for key, t in (
                ("running_mean_mean", "running_mean"),
                ("running_var_mean", "running_var"),
            ):
                if norm is None:
                    row.values[key] = None
                else:
                    buffer = getattr(norm, t)
                    row.values[key] = flat64(buffer).mean().item()
                    # running_mean averages inputs of typical size sqrt(var) + |mean|
                    row.scales[key] = rms(buffer) + (
                        flat64(norm.running_var).mean().sqrt().item() if t == "running_mean" else 0
                    )

    for step in range(steps + 1):
        index = next(batches)
        x, y = train_inputs[index], train_labels[index]
        logged = step % log_every == 0 or step == steps
        evaluated = logged and (step % eval_every == 0 or step == steps)
        rows = [Row() for _ in net.blocks]
        test_loss = test_acc = None
        if logged and not running_stats_one_batch_ahead:
            norm_rows(rows)  # after `step` updates, before batch `step`'s forward
            if evaluated:
                test_loss, test_acc = evaluate()
        if logged:  # the probe: train mode, its own batch statistics, running ones untouched
            with torch.no_grad():
                _, probe_sites = net(
                    probe_x, training=True, update_running=False, step=step, stream="probe"
                )

        logits, sites = net(x, training=True, update_running=step < steps, step=step)
        for site in sites:
            site["act"].retain_grad()
        loss = cross_entropy(logits, y)
        for p in params:
            p.grad = None
        loss.backward()
        loss_sum += loss.item()
        correct += (logits.argmax(1) == y).sum().item()
        samples += len(y)
        seen_steps += 1

        if logged and running_stats_one_batch_ahead:
            norm_rows(rows)
            if evaluated:
                test_loss, test_acc = evaluate()
        if logged:
            for block, site, probe_site, row in zip(net.blocks, sites, probe_sites, rows):
                w, g = flat64(block.weight_layer.weight), flat64(block.weight_layer.weight.grad)
                grad_scale = g.abs().mean().item()
                row.values["grad_w_mean_abs"] = grad_scale
                row.values["grad_w_norm"] = g.norm().item()
                row.values["grad_w_ratio"] = (g.std() / w.std()).item()
                for key in ("grad_w_mean_abs", "grad_w_norm", "grad_w_ratio"):
                    row.scales[key] = 0.0  # magnitudes, never a cancellation: relative only
                row.values["grad_act_mean_abs"] = flat64(site["act"].grad).abs().mean().item()
                row.scales["grad_act_mean_abs"] = 0.0
                distribution("pre", site["pre"], row)
                distribution("act", site["act"], row, with_quantiles=False)
                row.values["act_sat_frac"] = saturation(act, site["act"])
                row.scales["act_sat_frac"] = 0.0
                probe_unit = unit_values(probe_site["pre"], unit)
                for q, value in zip(("p15", "p50", "p85"), quantiles(probe_unit)):
                    row.values[f"unit_{q}"] = value
                    row.scales[f"unit_{q}"] = rms(probe_unit)
            weights_before = [flat64(b.weight_layer.weight).clone() for b in net.blocks]

        if step < steps:
            sgd_step(params, buffers, lr, momentum, decay)
        if logged:
            for block, before, row in zip(net.blocks, weights_before, rows):
                after = flat64(block.weight_layer.weight)
                row.values["update_ratio"] = (
                    ((after - before).norm() / before.norm()).item() if step < steps else None
                )
                row.scales["update_ratio"] = 0.0
            for layer, row in enumerate(rows, start=1):
                layers[(step, layer)] = row
            metric_row = Row()
            metric_row.values = {
                "train_loss": loss_sum / seen_steps, "train_acc": correct / samples,
                "test_loss": test_loss, "test_acc": test_acc, "lr": lr,
            }  # fmt: skip
            metric_row.scales = dict.fromkeys(metric_row.values, 0.0)
            metrics[step] = metric_row
            loss_sum, correct, samples, seen_steps = 0.0, 0, 0, 0
    return Reference(metrics, layers)
