"""Forward passes through a model at other parameter values that leave the model untouched.

The optimisation measurements (bnexp.run.ics, bnexp.run.landscape) evaluate the loss and its gradient
at weights the training run never holds: the weights after a hypothetical update of some
layers, or a point further along the gradient. A run with such a measurement on must train
bit-identically to one with it off, so every pass here goes through `sandbox(model)`:

- parameters are substituted with `torch.func.functional_call`: the model's own parameter
  tensors are never written to, so their values and autograd version counters stay as they were
  (the measurement may even run between the training step's backward and its optimizer step);
- every pass gets fresh copies of the model's buffers, taken when the sandbox opened: a
  train-mode BatchNorm updates its running statistics (and `num_batches_tracked`) in those
  copies, never in the model, and each pass starts from the same running statistics (a norm
  that *uses* them in training, as batch renormalization does, sees the same ones every pass);
- every pass starts from the global RNG state the sandbox found (CPU, and CUDA when it is in
  use), so a stochastic layer (noisy BN, dropout) draws the same noise in every pass: the noise
  of the training step that follows, if the measurement runs just before that step's forward
  pass. On exit the RNG is put back in that state;
- attributes a layer rebinds during a forward pass (noisy BN counts its training passes in
  `noise_steps` and draws its noise from that count) are put back before every pass and on
  exit: every pass draws the same noise, and the training loop's next pass sees the count it
  would have seen without the measurement.

Forward hooks registered on the model still fire in these passes: call the measurements outside
any hook context (bnexp.run.probes.capture).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.func import functional_call

# forward(parameter values by name, input) -> output
SandboxForward = Callable[[Mapping[str, Tensor], Tensor], Tensor]


class _RngState:
    """The global RNG state at one moment (CPU always, CUDA when it has been initialised)."""

    def __init__(self) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)


@contextmanager
def sandbox(model: nn.Module) -> Iterator[SandboxForward]:
    """Yields `forward(params, x)`: `model(x)` with the parameters named in `params` replaced
    by the given tensors (the others keep the model's values), run in the model's current mode
    on fresh copies of its buffers and from the RNG state found on entry. See the module
    docstring for what is left exactly as it was."""
    rng = _RngState()
    buffers = {name: buffer.detach().clone() for name, buffer in model.named_buffers()}
    attributes = [(module, dict(vars(module))) for module in model.modules()]

    def restore_attributes() -> None:
        for module, saved in attributes:
            current = vars(module)
            for key in [key for key in current if key not in saved]:
                del current[key]
            for key, value in saved.items():
                if current.get(key) is not value:
                    current[key] = value

    def forward(params: Mapping[str, Tensor], x: Tensor) -> Tensor:
        rng.restore()
        restore_attributes()
        fresh_buffers = {name: buffer.clone() for name, buffer in buffers.items()}
        return functional_call(model, {**fresh_buffers, **params}, (x,))

    try:
        yield forward
    finally:
        rng.restore()
        restore_attributes()
        # Defensive: nothing above writes to the model's buffers, but a layer could mutate one
        # that it reached some other way. Restore only if changed (a copy_ bumps the version).
        with torch.no_grad():
            for name, buffer in model.named_buffers():
                if not torch.equal(buffer, buffers[name]):
                    buffer.copy_(buffers[name])


def trainable_parameters(model: nn.Module) -> dict[str, Tensor]:
    """The model's parameters that require a gradient, by name (shared ones once)."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def leaves(params: Mapping[str, Tensor], requires_grad: bool = True) -> dict[str, Tensor]:
    """Detached views of `params` (no copy) that start a new autograd graph."""
    return {name: p.detach().requires_grad_(requires_grad) for name, p in params.items()}
