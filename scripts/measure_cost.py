"""Cost of one call of the optimisation measurements (bnexp.run.ics, bnexp.run.landscape), in ms.

    python scripts/measure_cost.py [--threads 1] [--repeats 20]
    python scripts/measure_cost.py --resolution      # landscape maxima: 8 vs 64 step sizes

Networks (the defaults of `bnexp run` and `bnexp run model=cnn`, built directly):
- mlp: 784 -> 3 x 100 sigmoid -> 10, batch 60, norm batch or none, SGD lr 0.1;
- cnn: depth 3, width 32 (32/64/128 channels), sigmoid, 1x28x28 inputs (MNIST-shaped), batch
  60, norm batch or none, SGD lr 0.1; and the same CNN on 3x32x32 inputs at batch 128 (the
  shapes scripts/bench.py --model cnn times).
Inputs are random tensors (cost only; no accuracy). For each network: one training step
(forward, backward, optimizer step), one `internal_covariate_shift` call and one
`loss_landscape` call (8 step sizes), each timed `--repeats` times after 3 warm-up calls;
reported: median and minimum wall time, and median CPU time of this process (robust to other
jobs on a shared machine).

`costs(...)` returns the rows, for a bench to call.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from bnexp.run.cnn import build_cnn
from bnexp.run.ics import internal_covariate_shift
from bnexp.run.landscape import loss_landscape
from bnexp.run.layers import hidden_blocks, norm_layer_named
from bnexp.run.models import build_mlp

LR = 0.1


def networks():
    """(name, model builder, input shape, batch size)."""
    for norm in ("batch", "none"):
        yield (
            f"mlp 3x100 sigmoid norm={norm} batch 60",
            lambda n=norm: build_mlp(
                784,
                10,
                depth=3,
                width=100,
                act="sigmoid",
                norm_layer=norm_layer_named(n, spatial=False),
            ),
            (1, 28, 28),
            60,
        )
    for norm in ("batch", "none"):
        yield (
            f"cnn d3 w32 sigmoid 1x28x28 norm={norm} batch 60",
            lambda n=norm: build_cnn(
                (1, 28, 28),
                10,
                depth=3,
                width=32,
                act="sigmoid",
                norm_layer=norm_layer_named(n, spatial=True),
            ),
            (1, 28, 28),
            60,
        )
    yield (
        "cnn d3 w32 sigmoid 3x32x32 norm=batch batch 128",
        lambda: build_cnn(
            (3, 32, 32),
            10,
            depth=3,
            width=32,
            act="sigmoid",
            norm_layer=norm_layer_named("batch", spatial=True),
        ),
        (3, 32, 32),
        128,
    )


def _time(run, repeats: int) -> dict[str, float]:
    for _ in range(3):
        run()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return {
        "median_ms": 1e3 * statistics.median(walls),
        "min_ms": 1e3 * min(walls),
        "cpu_median_ms": 1e3 * statistics.median(cpus),
    }


def costs(repeats: int = 20, cnn_repeats: int = 5) -> list[dict]:
    """One row per (network, what): median/min wall ms and median CPU ms of one call."""
    rows = []
    for name, build, shape, batch_size in networks():
        torch.manual_seed(0)
        model = build()
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=LR)
        x = torch.randn(batch_size, *shape)
        y = torch.randint(0, 10, (batch_size,))
        blocks = hidden_blocks(model)

        def train_step(model=model, optimizer=optimizer, x=x, y=y):
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

        runs = {
            "training step": train_step,
            "ics": lambda m=model, b=blocks, o=optimizer, x=x, y=y: internal_covariate_shift(
                m, b, x, y, o
            ),
            "landscape (8 points)": lambda m=model, x=x, y=y: loss_landscape(m, x, y, LR),
        }
        n = cnn_repeats if name.startswith("cnn") else repeats
        for what, run in runs.items():
            rows.append({"network": name, "what": what, **_time(run, n)})
    return rows


def resolution(points: tuple[int, ...] = (8, 64), steps: tuple[int, ...] = (0, 50, 500)):
    """Landscape maxima with 8 vs 64 log-spaced step sizes over [1/2, 4] × lr, on the default
    BN MLP trained on random inputs with random labels (a cost-free stand-in for data) for the
    given numbers of SGD steps. Returns rows (step, points, range, predictiveness, beta)."""
    import numpy as np

    torch.manual_seed(0)
    model = build_mlp(
        784,
        10,
        depth=3,
        width=100,
        act="sigmoid",
        norm_layer=norm_layer_named("batch", spatial=False),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    generator = torch.Generator().manual_seed(1)
    x_all = torch.randn(600, 784, generator=generator)
    y_all = torch.randint(0, 10, (600,), generator=generator)
    rows, done = [], 0
    for target in steps:
        while done < target:
            index = torch.arange(done * 60, done * 60 + 60) % 600
            loss = F.cross_entropy(model(x_all[index]), y_all[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            done += 1
        x, y = x_all[:60], y_all[:60]
        for n in points:
            multipliers = tuple(float(m) for m in np.geomspace(0.5, 4, n))
            result = loss_landscape(model, x, y, LR, step_multipliers=multipliers)
            rows.append(
                (
                    target,
                    n,
                    result.loss_range,
                    result.gradient_predictiveness,
                    result.beta_smoothness,
                )
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20, help="timed calls per MLP measurement")
    parser.add_argument(
        "--cnn-repeats", type=int, default=5, help="timed calls per CNN measurement"
    )
    parser.add_argument("--resolution", action="store_true", help="8 vs 64 step sizes instead")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    if args.resolution:
        print(f"{'step':>5} {'points':>6} {'loss range':>12} {'grad pred.':>12} {'beta':>10}")
        for step, n, loss_range, predictiveness, beta in resolution():
            print(f"{step:>5} {n:>6} {loss_range:>12.6g} {predictiveness:>12.6g} {beta:>10.6g}")
        return
    print(f"{'network':<48} {'what':<22} {'median ms':>10} {'min ms':>8} {'cpu ms':>8}")
    for row in costs(args.repeats, args.cnn_repeats):
        print(
            f"{row['network']:<48} {row['what']:<22} {row['median_ms']:>10.2f} "
            f"{row['min_ms']:>8.2f} {row['cpu_median_ms']:>8.2f}"
        )


if __name__ == "__main__":
    main()
