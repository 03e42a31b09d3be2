"""Synthetic regression data made in memory from a seed: no files, no downloads. Pure.

`data=gaussian_regression` (Santurkar et al. 2018, App. A.1: their deep linear network learns
"synthetic Gaussian data" under an l2 loss): inputs x ~ N(0, I_d_in), targets y = A x + e with
a fixed teacher matrix A (d_out × d_in) of i.i.d. N(0, 1) entries and noise e ~ N(0,
noise_std² I_d_out) (0 by default: the targets are exactly linear in the inputs). Train and test
samples come from the same distribution, drawn one after the other from one generator seeded
with `data.seed`: the same data for every run whatever the run's seed, as a real dataset would be.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from bnexp.rundir import SYNTHETIC_SOURCE


@dataclass
class RegressionData:
    """The interface of bnexp.run.data.InMemoryData that training reads, for float targets."""

    name: str  # "gaussian_regression"
    source: str  # rundir.SYNTHETIC_SOURCE
    train_inputs: Tensor  # float32, N × d_in: the network's input as it is (already N(0, 1))
    y_train: Tensor  # float32, N × d_out
    test_inputs: Tensor
    y_test: Tensor
    teacher: Tensor  # float32, d_out × d_in: A
    task: str = "regression"

    def train_batch(self, index: Tensor) -> tuple[Tensor, Tensor]:
        return self.train_inputs.index_select(0, index), self.y_train.index_select(0, index)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_inputs.shape[1:])

    @property
    def num_outputs(self) -> int:
        return self.y_train.shape[1]


def gaussian_regression(
    input_dim: int,
    output_dim: int,
    train_size: int,
    test_size: int,
    noise_std: float = 0.0,
    seed: int = 0,
) -> RegressionData:
    """The data set of the module docstring. Draw order (fixed, so sizes never change the
    teacher): A, then the training inputs, the test inputs, the training noise, the test noise."""
    generator = torch.Generator().manual_seed(seed)

    def normal(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    teacher = normal(output_dim, input_dim)
    x_train, x_test = normal(train_size, input_dim), normal(test_size, input_dim)
    y_train = x_train @ teacher.T + noise_std * normal(train_size, output_dim)
    y_test = x_test @ teacher.T + noise_std * normal(test_size, output_dim)
    return RegressionData(
        "gaussian_regression",
        SYNTHETIC_SOURCE,
        x_train.float(),
        y_train.float(),
        x_test.float(),
        y_test.float(),
        teacher.float(),
    )
