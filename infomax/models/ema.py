"""Exponential moving average of a network (BYOL, Grill et al., 2020, Eq. 1; MIRA's teacher).

xi <- m * xi + (1 - m) * theta after each step, with the momentum m raised from `base`
to `final` on a cosine schedule: m_k = 1 - (1 - base) (cos(pi k / K) + 1) / 2 (BYOL
Sec. 3.2; MIRA uses 0.99 -> 1).
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn


class EMA(nn.Module):
    """A frozen deep copy of `module`, moved towards the online weights by `update`.

    The copy never requires grad; call it like the module (`ema(x)`). It follows the
    parent's train/eval mode like any submodule; put it in eval with `ema.eval()`.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = copy.deepcopy(module)
        self.module.requires_grad_(False)

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    @torch.no_grad()
    def update(self, model: nn.Module, momentum: float) -> None:
        """In place: ema = momentum * ema + (1 - momentum) * model; buffers are copied."""
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"`momentum` must be in [0, 1], got {momentum}.")
        ema_params, params = _matched(self.module.named_parameters(), model.named_parameters(), "parameters")
        if momentum < 1.0 and ema_params:
            torch._foreach_lerp_(ema_params, [p.detach() for p in params], 1.0 - momentum)
        ema_bufs, bufs = _matched(self.module.named_buffers(), model.named_buffers(), "buffers")
        for target, source in zip(ema_bufs, bufs):
            target.copy_(source)


def _matched(ema_named, named, what: str):
    ema_named, named = list(ema_named), list(named)
    if [n for n, _ in ema_named] != [n for n, _ in named]:
        raise ValueError(
            f"EMA.update: `model` {what} do not match the EMA copy; pass the module the EMA was made from."
        )
    return [t for _, t in ema_named], [t for _, t in named]


def cosine_momentum(step: int, total_steps: int, base: float = 0.99, final: float = 1.0) -> float:
    """Momentum at `step` of `total_steps`: `base` at 0, `final` at the end (clamped beyond)."""
    if total_steps < 1:
        raise ValueError(f"`total_steps` must be at least 1, got {total_steps}.")
    progress = min(max(step / total_steps, 0.0), 1.0)
    return final - (final - base) * (math.cos(math.pi * progress) + 1) / 2
