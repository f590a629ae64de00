"""VICReg (Bardes, Ponce & LeCun, 2022, Eq. 1-6) and VCReg, its variance-covariance part.

invariance  s = mean ||z_a - z_b||^2 / D                                   (Eq. 5)
variance    v = mean_j relu(1 - sqrt(Var(z_j) + 1e-4))                     (Eq. 1)
covariance  c = sum_{i != j} Cov(z)_ij^2 / D, unbiased covariance          (Eq. 3-4)
VICReg = sim * s + var * (v_a + v_b) / 2 + cov * (c_a + c_b), weights 25/25/1 (Eq. 6;
the halved variance sum follows the authors' reference implementation).
VCReg drops the invariance term; it is the E2MC paper's ablation peer (Table 3).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .._validate import check_matrix, check_same_shape, full_precision
from ._crosscov import offdiag_sq_sum

VAR_EPS = 1e-4


def variance_hinge(z: torch.Tensor, target: float = 1.0) -> torch.Tensor:
    std = torch.sqrt(z.var(dim=0) + VAR_EPS)
    return F.relu(target - std).mean()


def covariance_penalty(z: torch.Tensor, form: str = "auto") -> torch.Tensor:
    n, d = z.shape
    centred = z - z.mean(dim=0)
    return offdiag_sq_sum(centred, centred, form) / (n - 1) ** 2 / d


@full_precision
def vicreg(z_a: torch.Tensor, z_b: torch.Tensor, sim: float = 25.0, var: float = 25.0, cov: float = 1.0, form: str = "auto") -> torch.Tensor:
    """VICReg loss; `form` as in `barlow_twins` (the covariance sums, exact either way)."""
    check_matrix("z_a", z_a)
    check_matrix("z_b", z_b)
    check_same_shape("z_a", z_a, "z_b", z_b)
    invariance = F.mse_loss(z_a, z_b)
    variance = (variance_hinge(z_a) + variance_hinge(z_b)) / 2
    covariance = covariance_penalty(z_a, form) + covariance_penalty(z_b, form)
    return sim * invariance + var * variance + cov * covariance


@full_precision
def vcreg(z: torch.Tensor, var: float = 1.0, cov: float = 0.04, form: str = "auto") -> torch.Tensor:
    """VCReg add-on for one set of embeddings: var * v + cov * c.

    Defaults keep VICReg's 25:1 variance-to-covariance ratio at unit scale, so the
    add-on weight (E2MC-style beta) sets its strength against the base loss.
    """
    check_matrix("z", z)
    return var * variance_hinge(z) + cov * covariance_penalty(z, form)
