"""SIGReg and LeJEPA (Balestriero & LeCun, 2025, arXiv 2511.08544, Sec. 4-5, Alg. 1-2).

SIGReg pushes an embedding towards the isotropic Gaussian by testing it along random directions:
for each unit direction a (a column of A, D x M), the projections x_n = a . z_n are compared with
N(0, 1) by the Epps-Pulley statistic, an integral of the squared distance between their empirical
characteristic function and the Gaussian's, weighted by the Gaussian itself:
  T(a) = N * integral |mean_n exp(i t x_n) - exp(-t^2/2)|^2 exp(-t^2/2) dt,
the integrand even in t, integrated over [-t_max, t_max] by the trapezoid rule on `knots` points
of [0, t_max] (doubled), and SIGReg = mean_a T(a). For Gaussian rows E[T] = sum_k w_k (1 - phi_k^2),
about 1.05 whatever N; rows collapsed to 0 give N sum_k w_k (1 - phi_k)^2 (the tests hold both).
No centring or whitening: N(0, 1) along every direction is the target.

LeJEPA: the centre mu_n of an image's global views' embeddings predicts all its views,
  loss = (1 - lambda) mean_{v, n, d} (mu_nd - z_vnd)^2 + lambda mean_v SIGReg(z_v),
no stop-gradient, no teacher, no predictor (Alg. 2; lambda = 0.05, Sec. 6.1).
"""
from __future__ import annotations

import math

import torch

from .._validate import check_finite, check_matrix, check_positive, full_precision

KNOTS, T_MAX = 17, 3.0  # the authors' code (lejepa/univariate/epps_pulley.py); Alg. 1's [-5, 5] scores alike (Table 1a)
SLICES = 1024  # Sec. 6.1: "1024 as starting points"
LAMBDA = 0.05  # Sec. 6.1


def quadrature(knots: int = KNOTS, t_max: float = T_MAX, device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(t, phi(t) = exp(-t^2/2), weights): the trapezoid rule over [-t_max, t_max] folded onto [0, t_max],
    times the weight function exp(-t^2/2)."""
    if not (isinstance(knots, int) and knots >= 2):
        raise ValueError(f"`knots` must be an int >= 2, got {knots!r}; the authors use 17.")
    t = torch.linspace(0.0, check_positive("t_max", t_max), knots, dtype=torch.float64, device=device)
    phi = torch.exp(-t.square() / 2)
    step = t_max / (knots - 1)
    weights = torch.full_like(t, 2 * step)
    weights[0] = weights[-1] = step
    return t, phi, weights * phi


@full_precision
def epps_pulley(x: torch.Tensor, knots: int = KNOTS, t_max: float = T_MAX) -> torch.Tensor:
    """The Epps-Pulley statistic of each column of `x` (N, M) against N(0, 1): (M,)."""
    x = check_matrix("x", x)
    t, phi, weights = (v.to(x.dtype) for v in quadrature(knots, t_max, x.device))
    angles = x.unsqueeze(-1) * t  # (N, M, knots)
    error = (angles.cos().mean(dim=0) - phi).square() + angles.sin().mean(dim=0).square()
    return x.shape[0] * (error @ weights)


def slice_directions(dim: int, slices: int = SLICES, device=None) -> torch.Tensor:
    """(dim, slices) unit columns drawn from torch's global CPU generator (checkpointed with the run, so a
    resume draws the same) and, under DDP, broadcast from rank 0 so every rank tests the same directions."""
    import torch.distributed as dist

    if not (isinstance(slices, int) and slices >= 1):
        raise ValueError(f"`slices` must be a positive int, got {slices!r}; the paper starts from 1024.")
    a = torch.randn(dim, slices)
    a = (a / a.norm(dim=0, keepdim=True)).to(device)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.broadcast(a, src=0)
    return a


@full_precision
def sigreg(z: torch.Tensor, directions: torch.Tensor, knots: int = KNOTS, t_max: float = T_MAX) -> torch.Tensor:
    """mean over the columns a of `directions` (D, M) of the Epps-Pulley statistic of z (N, D) @ a."""
    z = check_matrix("z", z)
    if not isinstance(directions, torch.Tensor) or directions.ndim != 2 or directions.shape[0] != z.shape[1]:
        raise ValueError(f"`directions` must be (D, M) with D = {z.shape[1]} (z's width), got "
                         f"{tuple(getattr(directions, 'shape', ()))}; make them with slice_directions(D).")
    return epps_pulley(z @ directions.to(z.dtype), knots, t_max).mean()


@full_precision
def lejepa(views, directions: torch.Tensor, num_global: int = 2, lambd: float = LAMBDA, knots: int = KNOTS,
           t_max: float = T_MAX) -> dict[str, torch.Tensor]:
    """{"loss", "prediction", "sigreg"} of LeJEPA over `views`, a list of (N, D) embeddings of the same N
    images, the `num_global` global views first."""
    views = list(views)
    if not views or not all(isinstance(v, torch.Tensor) and v.ndim == 2 and v.shape == views[0].shape for v in views):
        raise ValueError("`views` must be a non-empty list of (N, D) tensors of one shape (one per view of the N images).")
    if not (isinstance(num_global, int) and 1 <= num_global <= len(views)):
        raise ValueError(f"`num_global` must be an int in [1, {len(views)}] (the global views lead `views`), got {num_global!r}.")
    if not 0 <= lambd <= 1 or math.isnan(lambd):
        raise ValueError(f"`lambd` (SIGReg's share of the loss) must lie in [0, 1], got {lambd}; the paper uses 0.05.")
    stacked = torch.stack(views)
    stacked = stacked.float() if stacked.dtype in (torch.float16, torch.bfloat16) else stacked
    check_finite("views", stacked)
    centre = stacked[:num_global].mean(dim=0)
    prediction = (centre - stacked).square().mean()
    regulariser = torch.stack([sigreg(v, directions, knots, t_max) for v in stacked]).mean()
    return {"loss": (1 - lambd) * prediction + lambd * regulariser, "prediction": prediction, "sigreg": regulariser}
