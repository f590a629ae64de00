"""MMCR: maximum manifold capacity representations (Yerxa et al., 2023; e2mc paper App. C).

Each view's embeddings are L2-normalised, averaged over views into centroids C (N x D),
and the loss is -||C||_*, the negative nuclear norm: maximising it spreads the
centroids over many directions while pulling the views of one image together.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .._validate import check_finite, full_precision


@full_precision
def mmcr(views) -> torch.Tensor:
    """-||mean_v normalise(Z_v)||_* for views given as (V, N, D) or a sequence of (N, D)."""
    try:
        stacked = torch.stack(list(views)) if isinstance(views, (list, tuple)) else views
    except RuntimeError as error:
        raise ValueError(f"`views` must all have the same shape (N, D): {error}") from None
    if not isinstance(stacked, torch.Tensor) or stacked.ndim != 3 or stacked.shape[0] < 1 or stacked.shape[1] < 1:
        raise ValueError("`views` must be (V, N, D) or a list of V tensors of equal shape (N, D).")
    check_finite("views", stacked)
    centroids = F.normalize(stacked, dim=2).mean(dim=0)
    return -torch.linalg.svdvals(centroids).sum()
