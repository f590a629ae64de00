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


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient for this rank's slice."""

    @staticmethod
    def forward(ctx, x, group):
        ctx.group, ctx.rows = group, x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size(group))]
        dist.all_gather(parts, x.contiguous(), group=group)
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        start = dist.get_rank(ctx.group) * ctx.rows
        return grad[start : start + ctx.rows], None


def gather_with_grad(x: torch.Tensor, group) -> torch.Tensor:
    """Concatenate equal-sized `x` from all ranks along dim 0, differentiably."""
    return _GatherWithGrad.apply(x, group) if active(group) else x


def world():
    """The default process group when torch.distributed is initialised (as under Fabric DDP), else None."""
    return dist.group.WORLD if dist.is_available() and dist.is_initialized() else None


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """`gather_with_grad` over the world group: every rank's rows, in rank order, differentiably."""
    return gather_with_grad(x, world())
