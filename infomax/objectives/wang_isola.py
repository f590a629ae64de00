"""Alignment and uniformity on the hypersphere (Wang & Isola, 2020, Eq. 4-5).

  alignment  = mean_i ||f(x_i) - f(y_i)||^alpha                 (Eq. 4), alpha = 2
  uniformity = log mean_{i != j} exp(-t ||f(x_i) - f(x_j)||^2)   (Eq. 5), t = 2
on L2-normalised embeddings; for unit vectors ||u - v||^2 = 2 - 2 u.v, so uniformity
needs one N x N matmul and a logsumexp. The uniform sphere S^{D-1} gives
log E[exp(-2t(1 - u.v))], which tends to -2t as D grows.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._validate import check_matrix, check_positive, check_same_shape, full_precision


@full_precision
def alignment(z_a: torch.Tensor, z_b: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    check_matrix("z_a", z_a, min_rows=1)
    check_matrix("z_b", z_b, min_rows=1)
    check_same_shape("z_a", z_a, "z_b", z_b)
    alpha = check_positive("alpha", alpha)
    diff = F.normalize(z_a, dim=1) - F.normalize(z_b, dim=1)
    squared = diff.square().sum(dim=1)
    # sqrt then power has an infinite derivative at 0; alpha = 2 is the common case
    return squared.mean() if alpha == 2 else squared.clamp_min(1e-30).pow(alpha / 2).mean()


@full_precision
def uniformity(z: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    check_matrix("z", z)
    t = check_positive("t", t)
    unit = F.normalize(z, dim=1)
    n = unit.shape[0]
    sq_dist = (2 - 2 * (unit @ unit.T)).clamp_min(0)
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    return torch.logsumexp((-t * sq_dist).masked_fill(eye, float("-inf")).flatten(), dim=0) - math.log(n * (n - 1))
