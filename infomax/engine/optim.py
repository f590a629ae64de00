"""Optimisers and the learning-rate schedule, both driven by the optimiser-step counter.

LARS (You et al., 2017, arXiv:1708.03888, Alg. 1, in the form SimCLR / BYOL / Barlow Twins use):
for each parameter p with gradient g, g <- g + wd p, then g <- eta ||p|| / ||g|| * g (the trust
ratio, 1 where either norm is 0), then SGD momentum. Biases and normalisation weights (every
parameter with one dimension) get neither weight decay nor the trust ratio (Barlow Twins' code;
solo-learn #301 shipped them adapted). AdamW and SGD get the same exclusion from weight decay.
The schedule is a function of the step, so a resumed run continues its warm-up where it was.
"""
from __future__ import annotations

import math

import torch
from torch import nn

OPTIMISERS = ("lars", "adamw", "sgd")
DECAYS = ("cosine", "constant")


class LARS(torch.optim.Optimizer):
    def __init__(self, params, lr: float, weight_decay: float, momentum: float, eta: float):  # defaults: OptimConfig
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, eta=eta, adapt=True))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if group["adapt"]:
                    g = g.add(p, alpha=group["weight_decay"])
                    p_norm, g_norm = p.norm(), g.norm()
                    trust = torch.where((p_norm > 0) & (g_norm > 0), group["eta"] * p_norm / g_norm, torch.ones_like(p_norm))
                    g = g * trust
                state = self.state[p]
                if "momentum" not in state:
                    state["momentum"] = torch.zeros_like(p)
                buf = state["momentum"].mul_(group["momentum"]).add_(g)
                p.add_(buf, alpha=-group["lr"])
        return loss


def param_groups(params: list[nn.Parameter], weight_decay: float, exclude_bias_norm: bool) -> list[dict]:
    """Two groups: weights, and (when excluded) biases and norm parameters without decay or LARS adaptation."""
    params = [p for p in params if p.requires_grad]
    if not exclude_bias_norm:
        return [{"params": params, "weight_decay": weight_decay}]
    decayed = [p for p in params if p.ndim > 1]
    plain = [p for p in params if p.ndim <= 1]
    groups = [{"params": decayed, "weight_decay": weight_decay}]
    if plain:
        groups.append({"params": plain, "weight_decay": 0.0, "adapt": False})
    return groups


def build_optimiser(params: list[nn.Parameter], optim) -> torch.optim.Optimizer:
    """The optimiser `optim.name` (an OptimConfig) over `params`, with `base_lr` kept in each group."""
    if optim.name not in OPTIMISERS:
        raise ValueError(f"optim.name must be one of {', '.join(OPTIMISERS)}, got {optim.name!r}.")
    if not (math.isfinite(optim.lr) and optim.lr > 0):
        raise ValueError(f"optim.lr must be a positive finite number, got {optim.lr}.")
    groups = param_groups(params, optim.weight_decay, optim.exclude_bias_norm)
    if optim.name == "lars":
        opt = LARS(groups, lr=optim.lr, weight_decay=optim.weight_decay, momentum=optim.momentum, eta=optim.lars_eta)
    else:
        for g in groups:
            g.pop("adapt", None)
        if optim.name == "adamw":
            opt = torch.optim.AdamW(groups, lr=optim.lr, betas=tuple(optim.betas))
        else:
            opt = torch.optim.SGD(groups, lr=optim.lr, momentum=optim.momentum)
    for g in opt.param_groups:
        g["base_lr"] = optim.lr
    return opt


def lr_factor(step: int, total_steps: int, warmup_steps: int, warmup_start: float, decay: str, final_factor: float) -> float:
    """Linear warm-up from `warmup_start` to 1 over `warmup_steps`, then cosine to `final_factor` or constant."""
    if decay not in DECAYS:
        raise ValueError(f"schedule.decay must be one of {', '.join(DECAYS)}, got {decay!r}.")
    if step < warmup_steps:
        return warmup_start + (1 - warmup_start) * step / warmup_steps
    if decay == "constant":
        return 1.0
    progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
    return final_factor + (1 - final_factor) * (1 + math.cos(math.pi * progress)) / 2


def set_lr(optimiser: torch.optim.Optimizer, factor: float) -> float:
    for group in optimiser.param_groups:
        group["lr"] = group["base_lr"] * factor
    return optimiser.param_groups[0]["lr"]
