"""Sinkhorn-Knopp equipartitioned assignment as in SwAV (Caron et al., 2020, Eq. 3-4, App. A).

Q = diag(alpha) exp(S / eps) diag(beta) with B rows (samples) and K columns
(prototypes), scaled so every prototype receives B/K of the mass and every sample a
unit row: alternate column and row normalisations, `iters` times, ending on rows. Done
in log space so no score scale can overflow; under DDP the per-prototype sums run over
every rank's samples of `group`. No gradient, float64 inside.
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


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, iters: int = 3, group=None) -> torch.Tensor:
    """Soft codes (B, K) for prototype scores (B, K): rows sum to 1, columns to about B/K."""
    check_matrix("scores", scores, min_rows=1)
    epsilon = check_positive("epsilon", epsilon)
    if int(iters) < 1:
        raise ValueError(f"`iters` must be >= 1, got {iters}.")
    k = scores.shape[1]
    total_b = scores.shape[0]
    if distributed.active(group):
        total_b = int(distributed.all_reduce_sum(scores.new_tensor([total_b], dtype=torch.float64), group).item())
    log_q = scores.double() / epsilon
    for _ in range(int(iters)):
        log_q = log_q - _logsumexp_over_samples(log_q, group) - math.log(k)
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - math.log(total_b)
    return (log_q + math.log(total_b)).exp().to(scores.dtype)
