"""InfoNCE / NT-Xent (SimCLR: Chen et al., 2020, Eq. 1; van den Oord et al., 2018, Eq. 4).

For 2N views with cosine similarities s_ij / tau, each view's positive is the other view
of its image and the remaining views (of every rank, with `gather`) are its negatives:
    l_i = -log exp(s_ip / tau) / sum_{k != i} exp(s_ik / tau).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import distributed
from .._validate import check_matrix, check_positive, check_same_shape, full_precision


@full_precision
def info_nce(z_a: torch.Tensor, z_b: torch.Tensor, temperature: float = 0.1, gather: bool = False, group=None) -> torch.Tensor:
    """NT-Xent over the 2N views of a batch, averaged over views.

    With `gather=True` negatives come from every rank of `group` (default: the world
    group when torch.distributed is initialised), with gradients through the gather.
    Random unrelated views give about log(2N - 1); aligned views that are well
    separated from all others give about 0.
    """
    check_matrix("z_a", z_a, min_rows=1)
    check_matrix("z_b", z_b, min_rows=1)
    check_same_shape("z_a", z_a, "z_b", z_b)
    temperature = check_positive("temperature", temperature)
    z_a, z_b = F.normalize(z_a, dim=1), F.normalize(z_b, dim=1)
    if gather and group is None and torch.distributed.is_available() and torch.distributed.is_initialized():
        group = torch.distributed.group.WORLD
    group = group if gather else None
    n, offset, world_n = z_a.shape[0], distributed.rank(group) * z_a.shape[0], z_a.shape[0] * distributed.world_size(group)
    keys = torch.cat([distributed.gather_with_grad(z_a, group), distributed.gather_with_grad(z_b, group)])
    own = torch.arange(n, device=z_a.device) + offset
    rows = torch.cat([own, own + world_n])  # where each local view sits among the keys
    positives = torch.cat([own + world_n, own])
    logits = torch.cat([z_a, z_b]) @ keys.T / temperature
    self_mask = rows[:, None] == torch.arange(keys.shape[0], device=z_a.device)[None, :]
    return F.cross_entropy(logits.masked_fill(self_mask, float("-inf")), positives)
