"""Swapped prediction (SwAV: Caron et al., 2020, Eq. 1-2; MIRA paper, Eq. 6).

Targets w_t (pseudo-labels from one view, no gradient) are predicted from every other
view v by q_v = softmax(logits_v / tau):
    L = mean over pairs (t, v != t) of  -mean_i sum_k w_t[i, k] log q_v[i, k].
With two views this is MIRA's Eq. 6 divided by 2 (SwAV's averaging convention).
"""
from __future__ import annotations

import torch

from .._validate import check_matrix, check_positive, full_precision


@full_precision
def swapped_prediction(targets, logits, temperature: float = 0.1) -> torch.Tensor:
    """`targets`: T tensors (B, K) of row-stochastic pseudo-labels, one per target view;
    `logits`: V >= T tensors (B, K) of prototype scores, the first T from the same
    views as the targets (multi-crop puts the global crops first)."""
    targets, logits = list(targets), list(logits)
    temperature = check_positive("temperature", temperature)
    if not targets or len(logits) < max(2, len(targets)):
        raise ValueError(f"need >= 1 target view and >= 2 logit views with len(logits) >= len(targets); got {len(targets)} and {len(logits)}.")
    for name, tensors in (("targets", targets), ("logits", logits)):
        for i, t in enumerate(tensors):
            check_matrix(f"{name}[{i}]", t, min_rows=1)
            if t.shape != targets[0].shape:
                raise ValueError(f"`{name}[{i}]` has shape {tuple(t.shape)}, expected {tuple(targets[0].shape)} like targets[0].")
    log_q = [torch.log_softmax(s / temperature, dim=1) for s in logits]
    terms = [-(w.detach() * log_q[v]).sum(dim=1).mean() for t, w in enumerate(targets) for v in range(len(logits)) if v != t]
    return torch.stack(terms).mean()
