"""Predicting a stop-gradient target of the other view: BYOL and SimSiam.

BYOL (Grill et al., 2020, arXiv:2006.07733, Eq. 2): the online prediction q and the target
projection z' of the other view, both L2-normalised, L = ||q - z'||^2 = 2 - 2 cos(q, z'),
symmetrised by swapping the views, L_total = L + L~ (Sec. 3.1).
SimSiam (Chen & He, 2021, arXiv:2011.10566, Eq. 1-2): D(p, z) = -cos(p, sg(z)),
L = D(p_a, z_b) / 2 + D(p_b, z_a) / 2.
Both targets carry no gradient; the targets' network (EMA teacher or the same one) is the
method's business.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .._validate import check_matrix, check_same_shape, full_precision


def _cosines(predictions, targets) -> list[torch.Tensor]:
    (p_a, p_b), (t_a, t_b) = predictions, targets
    for name, x in (("p_a", p_a), ("p_b", p_b), ("t_a", t_a), ("t_b", t_b)):
        check_matrix(name, x, min_rows=1)
        check_same_shape("p_a", p_a, name, x)
    return [F.cosine_similarity(p, t.detach(), dim=1).mean() for p, t in ((p_a, t_b), (p_b, t_a))]


@full_precision
def byol(p_a: torch.Tensor, p_b: torch.Tensor, t_a: torch.Tensor, t_b: torch.Tensor) -> torch.Tensor:
    """BYOL's symmetrised loss: predictions (p_a, p_b) of views a and b against the target
    projections (t_a, t_b) of the same views, crossed (p_a predicts t_b). 0 when aligned, 8 at worst."""
    return sum(2 - 2 * c for c in _cosines((p_a, p_b), (t_a, t_b)))


@full_precision
def simsiam(p_a: torch.Tensor, p_b: torch.Tensor, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
    """SimSiam's symmetrised negative cosine, in [-1, 1]: -1 when every prediction matches the
    other view's (stop-gradient) projection."""
    return -sum(_cosines((p_a, p_b), (z_a, z_b))) / 2
