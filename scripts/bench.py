"""Speed of bnexp's instrumented loop against a plain PyTorch loop and a naive DataLoader.

    python scripts/bench.py [--steps 3000] [--threads 2] [--fig1]
    python scripts/bench.py --model cnn [--steps 300] [--batch-size 128] [--threads 2]
    python scripts/bench.py --data fashion_mnist [--data-root DIR]   (default: mnist)
    python scripts/bench.py --eval-cost

All three train the same model (3x100 sigmoid MLP with BN, batch 60) on the same in-memory
MNIST batches in one process:
  (a) plain:      the bare loop: index a batch, forward, backward, SGD step; evaluation on the
                  test set at the same steps as bnexp's default schedule;
  (b) bnexp:      bnexp.run.train.train with its default logging and evaluation;
  (c) dataloader: torchvision-style DataLoader with per-sample ToTensor/Normalize, batch 60.
It prints steps/s for each, by the wall clock and per CPU-second of this process (the second is
robust to other jobs on a shared machine), best of interleaved rounds, and the ratios b/a
(target >= 0.85) and b/c (target >= 4).
--fig1 also times the BN paper's Figure 1 configuration: 50,000 steps, batch 60, evaluation
every 500 steps (target: under 60 s per run). Peak memory (max RSS) is printed after each
part, so growth with the number of steps shows.

--data picks the MLP's dataset as `bnexp run data=...` does with data.source=auto and no
download: `mnist` is full MNIST when its files are under --data-root, else the bundled
4,000-image subset; `fashion_mnist` is the 60,000-image Fashion-MNIST. The loading time and
(d) the cost of one evaluation on the whole test set against a training step are printed, with
the share of a default run's training time that its default evaluations take.

--eval-cost measures only (d), per test image and per training step at batch 2 ... 128, on
the bundled subset and on Fashion-MNIST (the numbers behind bnexp.run.config.EVAL_COST), and
prints a default run's evaluation time over its training steps' time with the ~20-evaluation
default that issue 11 replaced and with today's.

--model cnn times the default CNN instead (the config `bnexp run model=cnn` composes, at batch
128) on synthetic CIFAR-shaped data: random uint8 3×32×32 images held in memory like the real
CIFAR-10 (50,000 train), so no download is needed and the speed is the real one. The schedule is a 5,000-step run's default (log every 50 steps, evaluate on the
test set every 250, 4,000 synthetic test images: the evaluation work per step of a 5,000-step
run on CIFAR-10). It prints (a) the plain loop, (b) bnexp with default logging, (c) the plain
loop with the CNN in NCHW instead of channels-last memory format, each in steps per wall-clock
second and per CPU-second of this process (robust to other jobs on the machine), and (d) what
one log step's measurements cost at batch sizes 32 ... 512 next to a training step.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from bnexp.run.config import Config, eval_interval, evaluation_steps, log_interval, register_configs
from bnexp.run.data import InMemoryData, batch_indices, load_data
from bnexp.run.models import build_model
from bnexp.run.train import evaluate, train


def make_config(**overrides) -> Config:
    cfg = OmegaConf.merge(OmegaConf.structured(Config), overrides)
    cfg.plots = False
    return OmegaConf.to_object(cfg)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def plain_loop(cfg: Config, data: InMemoryData, evaluate_on_schedule: bool = True) -> float:
    """steps/s of the bare loop on bnexp's batches (same permutation, same model)."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, data.input_shape, data.num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr)
    batches = batch_indices(len(data.y_train), cfg.batch_size, cfg.seed)
    every = eval_interval(cfg, len(data.y_test))
    start = time.perf_counter()
    for step in range(cfg.steps + 1):
        index = next(batches)
        x, y = data.train_batch(index)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if evaluate_on_schedule and (step % every == 0 or step == cfg.steps):
            evaluate(model, data)
        if step < cfg.steps:
            optimizer.step()
    return cfg.steps / (time.perf_counter() - start)


def bnexp_loop(cfg: Config, data: InMemoryData) -> float:
    rows = {"metrics": 0, "layers": 0}

    def on_log(metrics_row, layer_rows):  # count, like a CSV writer would stream them away
        rows["metrics"] += 1
        rows["layers"] += len(layer_rows)

    outcome = train(cfg, data, on_log)
    return outcome.steps_per_second


def dataloader_loop(cfg: Config, data: InMemoryData) -> float:
    """The tutorial pipeline: PIL images through ToTensor/Normalize one sample at a time."""
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms

    class Digits(Dataset):
        def __init__(self, images, labels):
            self.images, self.labels = images.squeeze(1).numpy(), labels
            self.transform = transforms.Compose(
                [
                    transforms.ToTensor(),
                    transforms.Normalize((data.mean.item(),), (data.std.item(),)),
                ]
            )

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, i):
            return self.transform(Image.fromarray(self.images[i], mode="L")), self.labels[i]

    torch.manual_seed(cfg.seed)
    model = build_model(cfg, data.input_shape, data.num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr)
    loader = DataLoader(
        Digits(data.x_train, data.y_train), batch_size=cfg.batch_size, shuffle=True, drop_last=True
    )
    steps, start = 0, time.perf_counter()
    while steps < cfg.steps:
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
            if steps >= cfg.steps:
                break
    return steps / (time.perf_counter() - start)


def default_cnn_config(**overrides) -> Config:
    """The config `bnexp run model=cnn KEY=VALUE...` composes (configs/model/cnn.yaml included)."""
    from hydra import compose, initialize_config_module

    register_configs()
    with initialize_config_module(config_module="bnexp.configs", version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=["model=cnn", *(f"{k}={v}" for k, v in overrides.items())],
        )
    return OmegaConf.to_object(cfg)


def synthetic_cifar_shaped(train: int, test: int) -> InMemoryData:
    """Random uint8 N×3×32×32 images and labels: CIFAR-10's shapes and dtype, not its pixels."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(
        0, 256, (train + test, 3, 32, 32), dtype=torch.uint8, generator=generator
    )
    labels = torch.randint(0, 10, (train + test,), generator=generator)
    return InMemoryData(
        "cifar10", "synthetic-cifar-shaped", images[:train], labels[:train], images[train:],
        labels[train:], mean=torch.full((3,), 0.5), std=torch.full((3,), 0.29),
    )  # fmt: skip


def timed(run) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of run()."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def interleaved_best(runs: dict, repeats: int) -> tuple[dict, dict, list[dict]]:
    """Best wall and best CPU seconds of each run over `repeats` rounds, and every round's
    (wall, CPU) timings. Rounds interleave the runs: the load on a shared machine drifts, and
    every run should meet the same drift."""
    rounds = [{name: timed(run) for name, run in runs.items()} for _ in range(repeats)]
    wall = {name: min(r[name][0] for r in rounds) for name in runs}
    cpu = {name: min(r[name][1] for r in rounds) for name in runs}
    return wall, cpu, rounds


def log_step_cost(
    cfg: Config, data: InMemoryData, batch_size: int, repeats: int = 3
) -> tuple[float, float]:
    """CPU seconds of one log step's measurements (stats, probe pass) and of one training step."""
    from bnexp.run.layers import hidden_blocks
    from bnexp.run.probes import capture
    from bnexp.run.train import measure_layers

    torch.manual_seed(0)
    model = build_model(cfg, data.input_shape, data.num_classes)
    blocks = hidden_blocks(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr)
    x, y = data.train_inputs[:batch_size], data.y_train[:batch_size]
    probe_x = data.test_inputs[: cfg.probe_size]

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    measure, train_step = float("inf"), float("inf")
    for _ in range(repeats + 1):  # the first round warms up
        train_step = min(train_step, timed(step)[1])
        with capture(blocks) as seen:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        measure = min(
            measure, timed(lambda: measure_layers(cfg, model, blocks, seen, probe_x).tolist())[1]
        )
    return measure, train_step


def bench_cnn(args) -> None:
    """Wall-clock steps/s (what a user waits for) and CPU-time steps/s (the same work measured
    by the CPU time this process got: robust to other jobs on a shared machine, which slow the
    wall clock by a factor of up to 3 here). Best of interleaved rounds for both."""
    import bnexp.run.cnn

    steps = args.steps if args.steps is not None else 300
    data = synthetic_cifar_shaped(args.cnn_train, args.cnn_test)
    cfg = default_cnn_config(
        batch_size=args.batch_size, steps=steps, log_every=50, eval_every=250, plots=False
    )  # fmt: skip
    print(
        f"data: SYNTHETIC CIFAR-shaped uint8 tensors in memory ({len(data.y_train)} train, "
        f"{len(data.y_test)} test, 3x32x32; random pixels: speed only, no accuracy); torch "
        f"{torch.__version__}, {args.threads} threads"
    )
    print(
        f"model: the default `model=cnn`: depth={cfg.depth} width={cfg.width} act={cfg.act.value} "
        f"norm={cfg.norm.name.value} probe_size={cfg.probe_size}; batch {cfg.batch_size}, {steps} steps, "
        f"log every {cfg.log_every}, evaluate every {cfg.eval_every} (+ at the first and last step)"
    )

    def plain_nchw() -> None:
        bnexp.run.cnn.CHANNELS_LAST = False
        try:
            plain_loop(cfg, data, evaluate_on_schedule=False)
        finally:
            bnexp.run.cnn.CHANNELS_LAST = True

    runs = {
        "plain": lambda: plain_loop(cfg, data),
        "bnexp": lambda: bnexp_loop(cfg, data),
        "plain_no_eval": lambda: plain_loop(cfg, data, evaluate_on_schedule=False),
        "nchw": plain_nchw,
    }
    plain_loop(make_config_like(cfg, steps=20), data, evaluate_on_schedule=False)  # warm-up
    wall, cpu, _ = interleaved_best(runs, args.repeats)

    def rate(name: str) -> str:
        return f"{steps / wall[name]:6.1f} steps/s wall, {steps / cpu[name]:6.1f} per CPU-second"

    print(f"(a) plain loop              {rate('plain')}  peak RSS {peak_rss_mb():.0f} MB")
    print(f"(b) bnexp, default logging  {rate('bnexp')}  peak RSS {peak_rss_mb():.0f} MB")
    print(f"    plain loop without evaluation: {rate('plain_no_eval')}")
    print(f"(c) plain loop without evaluation, NCHW instead of channels-last: {rate('nchw')}")
    print(
        f"b/a = {wall['plain'] / wall['bnexp']:.2f} wall, {cpu['plain'] / cpu['bnexp']:.2f} CPU time "
        f"(target >= 0.85); channels-last / NCHW = {wall['nchw'] / wall['plain_no_eval']:.2f} wall, "
        f"{cpu['nchw'] / cpu['plain_no_eval']:.2f} CPU time"
    )
    print(
        "(d) one log step's measurements (all layers, probe pass) vs one training step, CPU time:"
    )
    for batch_size in (32, 128, 512):
        measure, step = log_step_cost(cfg, data, batch_size)
        print(
            f"    batch {batch_size:4d}: measurements {measure * 1e3:6.1f} ms, training step "
            f"{step * 1e3:6.1f} ms ({measure / step:.2f} steps' worth, once every {cfg.log_every} steps)"
        )


def evaluation_cost(cfg: Config, data: InMemoryData, repeats: int = 5) -> tuple[float, float]:
    """CPU seconds of one evaluation on the whole test set and of one training step (bare
    loop: batch, forward, backward, SGD), best of `repeats` after a warm-up."""
    torch.manual_seed(0)
    model = build_model(cfg, data.input_shape, data.num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr)
    batches = batch_indices(len(data.y_train), cfg.batch_size, cfg.seed)

    def steps(n: int) -> None:
        for _ in range(n):
            x, y = data.train_batch(next(batches))
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    steps(50)
    evaluate(model, data)  # warm-up
    step = min(timed(lambda: steps(200))[1] for _ in range(repeats)) / 200
    evaluation = min(timed(lambda: evaluate(model, data))[1] for _ in range(repeats))
    return evaluation, step


def old_eval_interval(cfg: Config) -> int:
    """The default before issue 11: about 20 evaluations per run, whatever they cost."""
    every = log_interval(cfg)
    return every * max(1, round(cfg.steps / 20 / every))


def evaluation_share(cfg: Config, every: int, evaluation: float, step: float) -> float:
    """Time of a run's evaluations (steps 0, every, 2 every, ... and the last) over the time of
    its training steps; evaluation and step in the same units."""
    evaluations = cfg.steps // every + 1 + (cfg.steps % every != 0)
    return evaluations * evaluation / (cfg.steps * step)


def eval_schedule_lines(cfg: Config, test_size: int, evaluation: float, step: float) -> list[str]:
    """The default schedule before and after issue 11 with the measured costs (CPU seconds)."""
    old, new = old_eval_interval(cfg), eval_interval(cfg, test_size)
    before = evaluation_share(cfg, old, evaluation, step)
    after = evaluation_share(cfg, new, evaluation, step)
    return [
        f"    one evaluation on {test_size:,} test images: {evaluation * 1e3:.1f} ms CPU = "
        f"{evaluation / step:.0f} training steps of {step * 1e3:.3f} ms (the rule estimates "
        f"{evaluation_steps(cfg, test_size):.0f})",
        f"    default {cfg.steps:,}-step run, batch {cfg.batch_size}: evaluations / training "
        f"steps' time = {before:.3f} before (every {old} steps), {after:.3f} now (every {new}); "
        f"now/before = {after / before:.2f}",
    ]


def bench_eval_cost(args) -> None:
    """The measurements behind bnexp.run.config.EVAL_COST and the default run's evaluation share
    on the bundled subset and on Fashion-MNIST (CPU time of this process)."""
    for name in ("mnist", "fashion_mnist"):
        try:
            data = load_data(name, args.data_root, "auto", False, False)
        except Exception as error:  # noqa: BLE001 - a missing dataset is reported, not fatal
            print(f"{name}: not available ({str(error).splitlines()[0]})")
            continue
        print(f"{name} from {data.source}: {len(data.y_train):,} train / {len(data.y_test):,} test")
        for batch_size in (2, 8, 32, 60, 128):
            cfg = make_config(steps=args.steps, batch_size=batch_size)
            evaluation, step = evaluation_cost(cfg, data, repeats=3)
            print(
                f"  batch {batch_size:3d}: evaluation {evaluation / len(data.y_test) * 1e6:.2f} "
                f"us/image, step {step * 1e3:.3f} ms = {evaluation / step:.0f} steps per evaluation "
                f"(rule: {evaluation_steps(cfg, len(data.y_test)):.0f})"
            )
            if batch_size == 60:
                default = (cfg, evaluation, step)
        cfg, evaluation, step = default
        print("\n".join(eval_schedule_lines(cfg, len(data.y_test), evaluation, step)))
        print(f"  peak RSS {peak_rss_mb():.0f} MB")


def make_config_like(cfg: Config, **changes) -> Config:
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cfg), changes))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="default: 5000 (mlp, bnexp's default run), 300 (cnn)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: what bnexp run uses: 1 for the MLP, 2 for the CNN)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="best of N interleaved rounds; default 5 (mlp), 3 (cnn)",
    )
    parser.add_argument(
        "--fig1", action="store_true", help="also time the 50,000-step Figure 1 run"
    )
    parser.add_argument(
        "--data", choices=["mnist", "fashion_mnist"], default="mnist", help="mlp only: data=..."
    )
    parser.add_argument("--data-root", default="~/.cache/bnexp/data", help="mlp only: data.root")
    parser.add_argument("--batch-size", type=int, default=128, help="cnn only")
    parser.add_argument(
        "--cnn-train", type=int, default=50_000, help="cnn only: synthetic training images"
    )
    # 4,000 test images evaluated 3 times in 300 steps: the evaluation work per step of a default
    # 5,000-step run on CIFAR-10 (21 evaluations of 10,000 images).
    parser.add_argument(
        "--cnn-test", type=int, default=4_000, help="cnn only: synthetic test images"
    )
    parser.add_argument(
        "--eval-cost",
        action="store_true",
        help="mlp: only the evaluation cost (per image, batch 2 ... 128) and a default run's "
        "evaluation share before/after issue 11, on the bundled subset and Fashion-MNIST",
    )
    args = parser.parse_args()
    if args.threads is None:
        args.threads = 1 if args.model == "mlp" else 2
    torch.set_num_threads(args.threads)
    if args.model == "cnn":
        args.repeats = args.repeats or 3
        bench_cnn(args)
        return
    args.steps = args.steps if args.steps is not None else 5000
    args.repeats = args.repeats or 5
    if args.eval_cost:
        bench_eval_cost(args)
        return

    start = time.perf_counter()
    data = load_data(args.data, args.data_root, "auto", False, False)
    print(
        f"data: {args.data} from {data.source}, {len(data.y_train)} train / {len(data.y_test)} test images, "
        f"loaded in {time.perf_counter() - start:.2f} s (peak RSS {peak_rss_mb():.0f} MB); torch "
        f"{torch.__version__}, {args.threads} threads"
    )
    cfg = make_config(steps=args.steps)
    loader_cfg = make_config(steps=min(args.steps, 1000))
    plain_loop(make_config(steps=200), data)  # warm-up
    runs = {
        "plain": lambda: plain_loop(cfg, data),
        "plain_no_eval": lambda: plain_loop(cfg, data, evaluate_on_schedule=False),
        "bnexp": lambda: bnexp_loop(cfg, data),
        "loader": lambda: dataloader_loop(loader_cfg, data),
    }
    steps = {name: loader_cfg.steps if name == "loader" else cfg.steps for name in runs}
    wall, cpu, rounds = interleaved_best(runs, args.repeats)
    rate = {name: steps[name] / wall[name] for name in runs}
    cpu_rate = {name: steps[name] / cpu[name] for name in runs}
    # The same ratio within each round (neighbours in time share the machine's state): its
    # median is a second estimate, robust to a round that caught a slow spell.
    paired = sorted(r["plain"][1] / r["bnexp"][1] for r in rounds)

    def line(name: str) -> str:
        return f"{rate[name]:6.0f} steps/s wall, {cpu_rate[name]:6.0f} per CPU-second"

    print(f"(a) plain loop          {line('plain')}  peak RSS {peak_rss_mb():.0f} MB")
    print(f"    without evaluation  {line('plain_no_eval')}")
    print(f"(b) bnexp, default logs {line('bnexp')}")
    print(f"(c) naive DataLoader    {line('loader')}")
    print(
        f"b/a = {rate['bnexp'] / rate['plain']:.2f} wall, {cpu_rate['bnexp'] / cpu_rate['plain']:.2f} CPU time "
        f"(target >= 0.85; against a loop without evaluation: {rate['bnexp'] / rate['plain_no_eval']:.2f} wall)"
    )
    print(
        f"    median over the {len(paired)} rounds of b/a in CPU time: {paired[len(paired) // 2]:.2f} (range {paired[0]:.2f}-{paired[-1]:.2f})"
    )
    print(
        f"b/c = {rate['bnexp'] / rate['loader']:.1f} wall, {cpu_rate['bnexp'] / cpu_rate['loader']:.1f} CPU time (target >= 4)"
    )
    evaluation, step = evaluation_cost(cfg, data)
    print("(d) evaluation on the test set vs training steps, CPU time:")
    print("\n".join(eval_schedule_lines(cfg, len(data.y_test), evaluation, step)))

    if args.fig1:
        fig1 = make_config(steps=50_000, batch_size=60, eval_every=500)
        start = time.perf_counter()
        outcome = train(fig1, data, lambda m, layers: None)
        print(
            f"fig1 config (50,000 steps, batch 60, eval every 500): {time.perf_counter() - start:.1f} s "
            f"({outcome.steps_per_second:.0f} steps/s; target < 60 s)  peak RSS {peak_rss_mb():.0f} MB"
        )


if __name__ == "__main__":
    main()
