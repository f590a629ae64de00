"""HyDeS: hyperspherical density shaping with a von Mises-Fisher kernel (hydes paper, Eq. 1-4).

On unit vectors with s_ij = z_i . z_j and K_ij = exp(kappa s_ij) (the constant C_D(kappa)
of Eq. 1 cancels between the two terms when alpha = beta and is dropped):
  H_global = -mean_i log mean_{j != i} K_ij          all other views in the batch (Eq. 2)
  H_local  = -mean_i log mean_{j in P(i)} K_ij       other views of the same image (Eq. 3)
  I ~ alpha H_global - beta H_local, and the loss is -I                          (Eq. 4)
Computed with logsumexp over the M x M similarity matrix of all views of a batch.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._validate import check_matrix, check_positive, full_precision


@full_precision
def hydes(
    z: torch.Tensor,
    image_ids: torch.Tensor,
    kappa: float = 1.0,
    alpha: float = 1.0,
    beta: float = 1.0,
    return_terms: bool = False,
):
    """Loss -(alpha H_global - beta H_local) over all views z (M, D) of a batch.

    Rows with equal `image_ids` are views of one image (positives); every image needs at
    least two views. Collapsed views give 0 (with alpha = beta); spread images with
    aligned views give about -kappa; `return_terms=True` also returns both entropies.
    """
    check_matrix("z", z)
    kappa = check_positive("kappa", kappa)
    if not isinstance(image_ids, torch.Tensor) or image_ids.ndim != 1 or image_ids.shape[0] != z.shape[0]:
        raise ValueError(f"`image_ids` must be a 1-D tensor with one id per row of `z` ({z.shape[0]}).")
    m = z.shape[0]
    unit = F.normalize(z, dim=1)
    scaled = kappa * (unit @ unit.T)
    eye = torch.eye(m, dtype=torch.bool, device=z.device)
    positive = (image_ids[:, None] == image_ids[None, :]).to(z.device) & ~eye
    counts = positive.sum(dim=1)
    if bool((counts == 0).any()):
        raise ValueError("`image_ids`: every image needs at least two views (a row has no positive).")
    log_mean_global = torch.logsumexp(scaled.masked_fill(eye, float("-inf")), dim=1) - math.log(m - 1)
    log_mean_local = torch.logsumexp(scaled.masked_fill(~positive, float("-inf")), dim=1) - counts.to(z.dtype).log()
    h_global, h_local = -log_mean_global.mean(), -log_mean_local.mean()
    loss = -(alpha * h_global - beta * h_local)
    if return_terms:
        return {"loss": loss, "global_entropy": h_global, "local_entropy": h_local}
    return loss
