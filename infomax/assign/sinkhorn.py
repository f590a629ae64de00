"""Sinkhorn-Knopp equipartitioned assignment as in SwAV (Caron et al., 2020, Eq. 3-4, App. A).

Q = diag(alpha) exp(S / eps) diag(beta) with B rows (samples) and K columns
(prototypes), scaled so every prototype receives B/K of the mass and every sample a
unit row: alternate column and row normalisations, `iters` times, ending on rows. The
scalings are two vectors, so each iteration costs two matrix-vector products on the
kernel exp(S / eps) (shifted by the peak score): with
SwAV's queue (4096 x 3000 per crop) a log-domain pass over the whole matrix per
normalisation costs 3.9x more (benchmarks/results/sinkhorn_speed.md). Where a prototype's kernel column underflows (scores far
outside [-1, 1], or a tiny eps), it falls back to the log domain, where no score scale
can overflow. Under DDP the per-prototype sums run over every rank's samples of `group`,
and every rank takes the same path. No gradient; float32 inside (float64 for float64
scores), as SwAV's own, where the common shift keeps every entry of a cosine kernel
above exp(-2 / eps) = 4e-18.
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist

from .. import distributed
from .._validate import check_matrix, check_positive


def _logsumexp_over_samples(log_q: torch.Tensor, group) -> torch.Tensor:
    if not distributed.active(group):
        return torch.logsumexp(log_q, dim=0)
    peak = log_q.max(dim=0).values
    dist.all_reduce(peak, op=dist.ReduceOp.MAX, group=group)
    total = distributed.all_reduce_sum((log_q - peak).exp().sum(dim=0), group)
    return total.log() + peak


def _log_domain(log_k: torch.Tensor, iters: int, total_b: int, group) -> torch.Tensor:
    k = log_k.shape[1]
    log_q = log_k
    for _ in range(iters):
        log_q = log_q - _logsumexp_over_samples(log_q, group) - math.log(k)
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - math.log(total_b)
    return (log_q + math.log(total_b)).exp()


def _scaling(kernel: torch.Tensor, iters: int, total_b: int, group) -> torch.Tensor | None:
    """Q = B diag(rows) kernel diag(cols), in place of `kernel`; None where a column sum underflows."""
    rows = kernel.new_ones(kernel.shape[0])
    for _ in range(iters):
        mass = distributed.all_reduce_sum(rows @ kernel, group)  # each prototype's mass over every rank's samples
        cols = 1.0 / (kernel.shape[1] * mass)
        rows = 1.0 / (total_b * (kernel @ cols))
    failed = (mass < torch.finfo(mass.dtype).tiny ** 0.5).any() | ~torch.isfinite(rows).all() | ~torch.isfinite(cols).all()  # kernel <= 1: finite scalings, finite Q
    if distributed.all_reduce_sum(failed.double(), group) > 0:
        return None
    return kernel.mul_(rows[:, None]).mul_(cols * total_b)


def _peak(x: torch.Tensor, group) -> torch.Tensor:
    peak = x.max()
    if distributed.active(group):
        dist.all_reduce(peak, op=dist.ReduceOp.MAX, group=group)
    return peak


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, iters: int = 3, group=None) -> torch.Tensor:
    """Soft codes (B, K) for prototype scores (B, K): rows sum to 1, columns to about B/K."""
    check_matrix("scores", scores, min_rows=1)
    epsilon = check_positive("epsilon", epsilon)
    if int(iters) < 1:
        raise ValueError(f"`iters` must be >= 1, got {iters}.")
    total_b = scores.shape[0]
    if distributed.active(group):
        total_b = int(distributed.all_reduce_sum(scores.new_tensor([total_b], dtype=torch.float64), group).item())
    log_k = scores.to(torch.promote_types(scores.dtype, torch.float32), copy=True).div_(epsilon)  # a copy: the caller's scores stay
    log_k.sub_(_peak(log_k, group))  # one shift on every rank: exp(S / eps) up to a scale the first normalisation removes
    q = _scaling(log_k.exp(), int(iters), total_b, group)
    if q is None:
        q = _log_domain(log_k, int(iters), total_b, group)
    return q.to(scores.dtype)
