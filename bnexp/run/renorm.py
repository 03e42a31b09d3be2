"""Batch Renormalization (Ioffe 2017, arXiv 1702.03275, Algorithm 1) as torch layers.

Batch renorm normalises with the mini-batch's statistics, then corrects the result towards what
the running (moving-average) statistics would give:

    r = stop_gradient(clip(sigma_B / sigma, 1/r_max, r_max))
    d = stop_gradient(clip((mu_B - mu) / sigma, -d_max, d_max))
    y = gamma * ((x - mu_B) / sigma_B * r + d) + beta

with sigma_B = sqrt(biased batch variance + eps) and mu, sigma the moving averages. At r_max = 1,
d_max = 0 this is plain batch norm; when r and d are not clipped, y equals inference-mode BN with
the moving averages, so training and inference compute the same function of x.

The moving averages are updated as in Algorithm 1: mu += alpha (mu_B - mu) and sigma += alpha
(sigma_B - sigma), i.e. the moving average is of the standard deviation (eps included), not of
the unbiased variance as in torch's BatchNorm. alpha is torch's `momentum` (the weight of the
new batch); the paper used alpha = 0.01 ("relatively fast updates", Sec. 4), the default here.
To keep torch's buffers and inference formula, `running_var` holds sigma^2 - eps, so that
sqrt(running_var + eps) is exactly the paper's sigma and inference is torch's
y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta.

r_max and d_max follow a schedule in training steps (RenormSchedule). A `step` buffer counts the
training steps: it advances on forward passes in train mode with autograd on, and only then, so
a no-grad pass in train mode (bnexp's probe batch) neither advances the schedule nor, inside
bnexp.run.probes.frozen_running_stats (which turns `track_running_stats` off on every module with
running buffers; the forward below honours it), changes the running statistics. A training loop that runs several forwards per optimizer step
(gradient accumulation) advances the schedule once per forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Sec. 4 of the paper: the schedule below and alpha = 0.01.
PAPER_MOMENTUM = 0.01
# Sec. 4.1 / Figure 1: the i.i.d. baseline and Batch Renorm are reported after 130k steps (and
# Batch Renorm at 130k in Sec. 4.2, 120k in Sec. 4.3): the length of training the paper's
# schedule was written for. RenormSchedule.for_run scales the schedule by run_steps / 130k.
PAPER_TRAINING_STEPS = 130_000


def _ramp(step: Tensor, start: float, end: float, initial: float, final: float) -> Tensor:
    """`initial` until `start`, linear to `final` at `end`, `final` after (step: float tensor)."""
    if end > start:
        fraction = ((step - start) / (end - start)).clamp(0.0, 1.0)
    else:  # no ramp: jump to the final value at `start`
        fraction = (step >= start).to(step.dtype)
    return initial + (final - initial) * fraction


@dataclass(frozen=True)
class RenormSchedule:
    """r_max and d_max as functions of the training step (0 = the first training forward).

    Defaults are the paper's (Sec. 4, p. 4): "r_max = 1, d_max = 0 (i.e. simply batchnorm) for
    the first 5000 training steps, after which these were gradually relaxed to reach r_max = 3 at
    40k steps, and d_max = 5 at 25k steps". The paper does not say how "gradually": linear ramps
    from step 5000 are this module's assumption. Every step count is multiplied by `scale`.
    """

    warmup_steps: float = 5_000  # plain BN before this step (r_max = 1, d_max = 0)
    r_max_final: float = 3.0
    r_max_reached_at: float = 40_000  # step where r_max reaches r_max_final
    d_max_final: float = 5.0
    d_max_reached_at: float = 25_000  # step where d_max reaches d_max_final
    scale: float = 1.0  # multiplies every step count above (a shorter run: scale < 1)

    def __post_init__(self) -> None:
        checks = {
            "scale": (self.scale > 0, "must be > 0"),
            "warmup_steps": (self.warmup_steps >= 0, "must be >= 0"),
            "r_max_final": (
                self.r_max_final >= 1,
                "must be >= 1 (r is clipped to [1/r_max, r_max])",
            ),
            "d_max_final": (
                self.d_max_final >= 0,
                "must be >= 0 (d is clipped to [-d_max, d_max])",
            ),
            "r_max_reached_at": (
                self.r_max_reached_at >= self.warmup_steps,
                f"must be >= warmup_steps ({self.warmup_steps})",
            ),
            "d_max_reached_at": (
                self.d_max_reached_at >= self.warmup_steps,
                f"must be >= warmup_steps ({self.warmup_steps})",
            ),
        }
        for name, (ok, rule) in checks.items():
            if not ok:
                raise ValueError(
                    f"renorm schedule {name}={getattr(self, name)} is not allowed: {rule}."
                )

    @classmethod
    def for_run(
        cls, total_steps: int, reference_steps: float = PAPER_TRAINING_STEPS, **fields: float
    ) -> RenormSchedule:
        """The schedule scaled to a run of `total_steps`: scale = total_steps / reference_steps.

        With the default reference (the paper's 130k-step runs) every phase keeps its share of
        training: plain BN for the first 3.8%, d_max fully relaxed at 19%, r_max at 31%.
        """
        if total_steps <= 0:
            raise ValueError(f"total_steps={total_steps} is not allowed: it must be > 0.")
        return cls(**fields, scale=total_steps / reference_steps)

    def limits(self, step: Tensor, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        """(r_max, d_max) at `step` (a tensor, on any device: no host synchronisation)."""
        s = step.to(dtype)
        start = self.warmup_steps * self.scale
        r_max = _ramp(s, start, self.r_max_reached_at * self.scale, 1.0, self.r_max_final)
        d_max = _ramp(s, start, self.d_max_reached_at * self.scale, 0.0, self.d_max_final)
        return r_max, d_max

    def r_max(self, step: int) -> float:
        return self.limits(torch.tensor(step), torch.float64)[0].item()

    def d_max(self, step: int) -> float:
        return self.limits(torch.tensor(step), torch.float64)[1].item()

    def warmup_time_constants(self, momentum: float) -> float:
        """How many time constants (1/momentum steps) of the moving averages fit in the plain-BN
        warm-up: the paper's is 5000 x 0.01 = 50. Far below 1, the moving averages are still
        near their initial values (mean 0, sigma 1) when r and d start to act."""
        return self.warmup_steps * self.scale * momentum


class _BatchRenorm:
    """Mixed into nn.BatchNorm1d / nn.BatchNorm2d: their buffers, parameters and input checks,
    Algorithm 1's forward pass and moving averages."""

    def __init__(
        self,
        num_features: int,
        *,
        eps: float = 1e-5,
        momentum: float = PAPER_MOMENTUM,
        affine: bool = True,
        schedule: RenormSchedule | None = None,
    ):
        if momentum is None or not 0 < momentum <= 1:
            raise ValueError(
                f"renorm momentum={momentum} is not allowed: it must lie in (0, 1] (the weight of "
                "the new batch in the moving averages; the paper used 0.01)."
            )
        super().__init__(  # the BatchNorm class it is mixed into
            num_features, eps=eps, momentum=momentum, affine=affine, track_running_stats=True
        )
        self.schedule = RenormSchedule() if schedule is None else schedule
        # Training steps taken (long, saved in the state dict: a resumed run resumes its schedule).
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def correction(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(r, d, batch mean, sigma_B) per channel for batch x at the current step, no gradient."""
        dims = [0, *range(2, x.dim())]
        with torch.no_grad():
            batch_var, batch_mean = torch.var_mean(x, dim=dims, correction=0)  # biased, as BN
            dtype = self.running_mean.dtype
            batch_mean = batch_mean.to(dtype)
            batch_std = torch.sqrt(batch_var.to(dtype) + self.eps)
            running_std = torch.sqrt(self.running_var + self.eps)
            r_max, d_max = self.schedule.limits(self.step, dtype)
            r = torch.clamp(batch_std / running_std, min=1 / r_max, max=r_max)
            d = torch.clamp((batch_mean - self.running_mean) / running_std, min=-d_max, max=d_max)
        return r, d, batch_mean, batch_std

    def forward(self, x: Tensor) -> Tensor:
        self._check_input_dim(x)
        if not self.training:
            return F.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        r, d, batch_mean, batch_std = self.correction(x)
        # gamma * (x_hat_BN * r + d) + beta is BN with weight gamma * r and bias beta + gamma * d
        # (r and d are constants for autograd), so torch's fused kernel does the work. At r = 1,
        # d = 0 these are gamma and beta bit for bit: the warm-up is exactly nn.BatchNorm.
        weight, bias = (
            (r, d) if self.weight is None else (self.weight * r, self.bias + self.weight * d)
        )
        out = F.batch_norm(x, None, None, weight, bias, True, 0.0, self.eps)
        if self.track_running_stats:  # off only inside bnexp.run.probes.frozen_running_stats
            self._update_moving_averages(batch_mean, batch_std)
        if torch.is_grad_enabled():
            self.step.add_(1)
        return out

    @torch.no_grad()
    def _update_moving_averages(self, batch_mean: Tensor, batch_std: Tensor) -> None:
        """Algorithm 1: mu += alpha (mu_B - mu); sigma += alpha (sigma_B - sigma)."""
        self.running_mean.lerp_(batch_mean, self.momentum)
        running_std = torch.sqrt(self.running_var + self.eps).lerp_(batch_std, self.momentum)
        # sigma stays >= sqrt(eps) (an average of values that are), so this is >= 0 up to
        # rounding; the clamp removes the rounding.
        self.running_var.copy_((running_std.square() - self.eps).clamp_(min=0.0))
        self.num_batches_tracked.add_(1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, schedule={self.schedule}"


class BatchRenorm1d(_BatchRenorm, nn.BatchNorm1d):
    """Batch renorm over (N, C) or (N, C, L) inputs, per channel C."""


class BatchRenorm2d(_BatchRenorm, nn.BatchNorm2d):
    """Batch renorm over (N, C, H, W) feature maps, per channel C."""
