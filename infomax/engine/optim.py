"""Optimisers and the learning-rate schedule, both driven by the optimiser-step counter.

LARS (You et al., 2017, arXiv:1708.03888) in the two forms our recipes' sources run, then SGD
momentum (v <- m v + u, p <- p - lr v). With g the gradient, wd the weight decay, eta the trust
coefficient and lr the scheduled lr:

- ``norm="update"`` (SimCLR, BYOL and Barlow Twins' code, MoCo v3's and the MIRA authors'):
  u = eta ||p|| / ||g + wd p|| * (g + wd p), the ratio 1 where either norm is 0.
- ``norm="sum"`` (the LARS paper's Eq. 6 local lr; solo-learn's solo/utils/lars.py, from
  Lightning Bolts): u = eta ||p|| / (||g|| + wd ||p|| + 1e-8) * (g + wd p); where ||p|| or ||g||
  is 0, u = g (no decay, no ratio).

``clip=True`` (solo-learn's clip_lr) caps the adaptive lr at the scheduled one: the ratio r above
becomes min(r / lr, 1), so the step lr * r' is min(eta-scaled lr, lr). Off by default: the
SimCLR/BYOL papers' ImageNet LARS (eta 0.001) is unclipped; the solo-learn CIFAR recipes set
eta 0.02 with clipping. Biases and normalisation weights (every parameter with one dimension)
get neither weight decay nor the ratio (Barlow Twins' code; solo-learn's exclude_bias_n_norm;
solo-learn #301 shipped them adapted). AdamW and SGD get the same exclusion from weight decay.
The schedule is a function of the step, so a resumed run continues its warm-up where it was.
"""
from __future__ import annotations

import math

import torch
from torch import nn

OPTIMISERS = ("lars", "adamw", "sgd")
DECAYS = ("cosine", "constant")


LARS_NORMS = ("update", "sum")
_SUM_EPS = 1e-8  # solo-learn's eps in the denominator of the "sum" form


class LARS(torch.optim.Optimizer):
    """LARS in the form `norm` ("update" | "sum"), optionally clipped at the scheduled lr (module docstring)."""

    def __init__(self, params, lr: float, weight_decay: float, momentum: float, eta: float,  # defaults: OptimConfig
                 clip: bool = False, norm: str = "update"):
        if norm not in LARS_NORMS:
            raise ValueError(f"optim.lars_norm must be one of {', '.join(LARS_NORMS)}, got {norm!r}.")
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum, eta=eta, adapt=True,
                                      clip=clip, norm=norm))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = self.adapted(p, group) if group["adapt"] else p.grad
                state = self.state[p]
                if "momentum" not in state:
                    state["momentum"] = torch.zeros_like(p)
                buf = state["momentum"].mul_(group["momentum"]).add_(g)
                p.add_(buf, alpha=-group["lr"])
        return loss

    @staticmethod
    def adapted(p: torch.Tensor, group: dict) -> torch.Tensor:
        """The decayed gradient times the trust ratio (clipped when asked): the update before momentum."""
        wd, eta, lr = group["weight_decay"], group["eta"], group["lr"]
        p_norm, g_norm = p.norm(), p.grad.norm()
        if group["norm"] == "sum":  # where a norm is 0: the plain gradient (solo-learn skips decay and ratio)
            live = (p_norm > 0) & (g_norm > 0)
            ratio = torch.where(live, eta * p_norm / (g_norm + wd * p_norm + _SUM_EPS), torch.ones_like(p_norm))
            wd = wd * live.to(p.dtype)
        else:
            u_norm = p.grad.add(p, alpha=wd).norm()
            live = (p_norm > 0) & (u_norm > 0)
            ratio = torch.where(live, eta * p_norm / u_norm, torch.ones_like(p_norm))
        if group["clip"] and lr > 0:  # solo-learn: min(lars_lr / lr, 1); at lr 0 the step is 0 anyway
            ratio = torch.where(live, torch.clamp(ratio / lr, max=1.0), ratio)
        return (p.grad + wd * p) * ratio


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
        opt = LARS(groups, lr=optim.lr, weight_decay=optim.weight_decay, momentum=optim.momentum, eta=optim.lars_eta,
                   clip=optim.lars_clip, norm=optim.lars_norm)
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
