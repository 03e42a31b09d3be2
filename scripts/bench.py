"""Speed of bnexp's instrumented loop against a plain PyTorch loop and a naive DataLoader.

    python scripts/bench.py [--steps 3000] [--threads 2] [--fig1]

All three train the same model (3x100 sigmoid MLP with BN, batch 60) on the same in-memory
MNIST batches in one process:
  (a) plain:      the bare loop: index a batch, forward, backward, SGD step; evaluation on the
                  test set at the same steps as bnexp's default schedule;
  (b) bnexp:      bnexp.train.train with its default logging and evaluation;
  (c) dataloader: torchvision-style DataLoader with per-sample ToTensor/Normalize, batch 60.
It prints steps/s for each and the ratios b/a (target >= 0.85) and b/c (target >= 4).
--fig1 also times the BN paper's Figure 1 configuration: 50,000 steps, batch 60, evaluation
every 500 steps (target: under 60 s per run). Peak memory (max RSS) is printed after each
part, so growth with the number of steps shows.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from bnexp.config import Config, eval_interval
from bnexp.data import InMemoryData, batch_indices, load_data
from bnexp.models import build_model
from bnexp.train import evaluate, train


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
    every = eval_interval(cfg)
    start = time.perf_counter()
    for step in range(cfg.steps + 1):
        index = next(batches)
        x, y = data.to_float(data.x_train[index]), data.y_train[index]
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
                [transforms.ToTensor(), transforms.Normalize((data.mean.item(),), (data.std.item(),))]
            )

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, i):
            return self.transform(Image.fromarray(self.images[i], mode="L")), self.labels[i]

    torch.manual_seed(cfg.seed)
    model = build_model(cfg, data.input_shape, data.num_classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr)
    loader = DataLoader(Digits(data.x_train, data.y_train), batch_size=cfg.batch_size, shuffle=True, drop_last=True)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="best of N for (a) and (b)")
    parser.add_argument("--fig1", action="store_true", help="also time the 50,000-step Figure 1 run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = load_data("mnist", "~/.cache/bnexp/data", "auto", False, False)
    print(f"data: {data.source}, {len(data.y_train)} train images; torch {torch.__version__}, {args.threads} threads")
    cfg = make_config(steps=args.steps)
    plain_loop(cfg, data)  # warm-up

    plain = max(plain_loop(cfg, data) for _ in range(args.repeats))
    plain_no_eval = max(plain_loop(cfg, data, evaluate_on_schedule=False) for _ in range(args.repeats))
    ours = max(bnexp_loop(cfg, data) for _ in range(args.repeats))
    print(f"(a) plain loop          {plain:8.0f} steps/s  (without evaluation: {plain_no_eval:.0f})  peak RSS {peak_rss_mb():.0f} MB")
    print(f"(b) bnexp, default logs {ours:8.0f} steps/s  peak RSS {peak_rss_mb():.0f} MB")
    loader = dataloader_loop(make_config(steps=min(args.steps, 1000)), data)
    print(f"(c) naive DataLoader    {loader:8.0f} steps/s")
    print(f"b/a = {ours / plain:.2f}  (target >= 0.85; against a loop without evaluation: {ours / plain_no_eval:.2f})")
    print(f"b/c = {ours / loader:.1f}  (target >= 4)")

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
