"""Collectives used by objectives and assigners; each is the identity without a process group."""
from __future__ import annotations

import torch
import torch.distributed as dist


def active(group) -> bool:
    return group is not None and dist.is_available() and dist.is_initialized()


def world_size(group) -> int:
    return dist.get_world_size(group) if active(group) else 1


def rank(group) -> int:
    return dist.get_rank(group) if active(group) else 0


def all_reduce_sum(x: torch.Tensor, group) -> torch.Tensor:
    """Sum over ranks, no gradient (used for marginals and counts)."""
    if active(group):
        x = x.clone()
        dist.all_reduce(x, op=dist.ReduceOp.SUM, group=group)
    return x


def gather_with_grad(x: torch.Tensor, group) -> torch.Tensor:
    """Concatenate `x` from all ranks along dim 0; gradients flow back to each rank's slice."""
    if not active(group):
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x, group=group), dim=0)
