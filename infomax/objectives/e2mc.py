"""E2MC: maximum-entropy add-on for continued pre-training (e2mc paper, Eq. 2.4, 3.2-3.4, Alg. 1).

Embeddings are mapped into the unit hypercube (sigmoid) or, for methods whose embeddings
live on the hypersphere, through the standard normal CDF so that uniform marginals of
independent coordinates normalise to the uniform sphere (Sec. 3.2). On the compact codes:
  H   = mean_j  1/(n-m) sum_{i<=n-m} log((n+1)/m (x_j^(i+m) - x_j^(i)) + 1e-7)   (Eq. 2.4, 3.3)
  Cov = sum_{j != k} Cov_jk^2 / d, unbiased sample covariance                   (Eq. 3.4, App. C)
and the add-on to a base loss is  L = L_base - beta * H + gamma * Cov  (Eq. 3.2), per view.
"""
from __future__ import annotations

import math

import torch

from .._validate import check_matrix, full_precision
from .vicreg import covariance_penalty

SPACES = ("hypercube", "hypersphere")
SPACING_EPS = 1e-7


def default_m(n: int) -> int:
    return max(1, round(math.sqrt(n)))


@full_precision
def m_spacings_entropy(x: torch.Tensor, m: int | None = None, reduction: str = "mean") -> torch.Tensor:
    """Vasicek's m-spacings estimate of each column's differential entropy (Eq. 2.4).

    m defaults to round(sqrt(n)). `reduction="none"` returns one value per column.
    U[0, 1] gives about 0 and U[0, a] about log(a), minus an O(1/m) bias.
    """
    check_matrix("x", x)
    return _m_spacings(x, m, reduction)


def _m_spacings(x: torch.Tensor, m: int | None, reduction: str = "mean") -> torch.Tensor:
    n = x.shape[0]
    m = default_m(n) if m is None else int(m)
    if not 1 <= m < n:
        raise ValueError(f"`m` must satisfy 1 <= m < n (samples); got m={m}, n={n}. Use a larger batch or smaller m.")
    if reduction not in ("mean", "none"):
        raise ValueError(f"`reduction` must be 'mean' or 'none', got {reduction!r}.")
    ordered = torch.sort(x, dim=0).values
    spacings = (ordered[m:] - ordered[:-m]) * ((n + 1) / m)
    per_column = torch.log(spacings + SPACING_EPS).mean(dim=0)
    return per_column.mean() if reduction == "mean" else per_column


@full_precision
def offdiag_covariance(x: torch.Tensor, form: str = "auto") -> torch.Tensor:
    """sum_{j != k} Cov(x)_jk^2 / d with the unbiased sample covariance (App. C, Eq. C.1)."""
    check_matrix("x", x)
    return covariance_penalty(x, form)


def to_compact(z: torch.Tensor, space: str) -> torch.Tensor:
    if space == "hypercube":
        return torch.sigmoid(z)
    if space == "hypersphere":
        return 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    raise ValueError(f"`space` must be one of {SPACES}, got {space!r}.")


@full_precision
def e2mc(z: torch.Tensor, space: str = "hypercube", m: int | None = None, form: str = "auto") -> dict[str, torch.Tensor]:
    """Entropy and covariance terms of one view's embeddings, after the compact map.

    Returns {"entropy": H, "covariance": Cov}; a training step adds
    -beta * (H_a + H_b) + gamma * (Cov_a + Cov_b) to its base loss (Algorithm 1).
    """
    check_matrix("z", z)
    compact = to_compact(z, space)
    return {"entropy": _m_spacings(compact, m), "covariance": covariance_penalty(compact, form)}
