"""Barlow Twins (Zbontar et al., 2021, Eq. 1 and Algorithm 1).

C = BN(z_a)^T BN(z_b) / N, with BN the per-feature standardisation over the batch;
L = sum_i (1 - C_ii)^2 + lambda * sum_{i != j} C_ij^2, lambda = 5e-3.
"""
from __future__ import annotations

import torch

from .._validate import check_matrix, check_same_shape, full_precision
from ._crosscov import diag_of_cross, offdiag_sq_sum

BN_EPS = 1e-5  # torch.nn.BatchNorm1d's default, as in the paper's pseudocode


def batch_standardise(z: torch.Tensor, eps: float = BN_EPS) -> torch.Tensor:
    """(z - mean) / sqrt(biased var + eps) per feature, BatchNorm1d without affine."""
    centred = z - z.mean(dim=0)
    return centred * torch.rsqrt(centred.square().mean(dim=0) + eps)


@full_precision
def barlow_twins(z_a: torch.Tensor, z_b: torch.Tensor, lambd: float = 5e-3, form: str = "auto") -> torch.Tensor:
    """Barlow Twins redundancy-reduction loss.

    `form` picks how sum_{i!=j} C_ij^2 is computed: "feature" builds the D x D matrix as
    the paper does; "sample" uses the exact N x N Gram identity (see `_crosscov`);
    "auto" takes the cheaper. All forms give the same value and gradient.
    """
    terms = barlow_terms(z_a, z_b, form)
    return terms["alignment"] + lambd * terms["redundancy"]


@full_precision
def barlow_terms(z_a: torch.Tensor, z_b: torch.Tensor, form: str = "auto") -> dict[str, torch.Tensor]:
    """The unweighted terms: "alignment" sum_i (1 - C_ii)^2 and "redundancy" sum_{i!=j} C_ij^2."""
    check_matrix("z_a", z_a)
    check_matrix("z_b", z_b)
    check_same_shape("z_a", z_a, "z_b", z_b)
    n = z_a.shape[0]
    a, b = batch_standardise(z_a), batch_standardise(z_b)
    return {"alignment": (1 - diag_of_cross(a, b) / n).square().sum(), "redundancy": offdiag_sq_sum(a, b, form) / n**2}
