"""MIRA: mutual-information-regularised assignment (mira paper, Eq. 3-5, Proposition 1).

Given model probabilities p = softmax(logits / tau_t), MIRA's pseudo-labels W solve
  min_W  -1/B sum_ij w_ij log p_ij + (1-beta)/B sum_ij w_ij log w_ij + beta sum_j wbar_j log wbar_j   (Eq. 3)
whose unique optimum satisfies  w_ij ∝ wbar_j^(-beta/a) p_ij^(1/a),  a = 1 - beta   (Eq. 4).
The marginal u -> wbar is found by the fixed point of Eq. 5. Writing
w(u)_ij = softmax_j(log p_ij / a - (beta/a) log u_j), Eq. 5 becomes
  log u <- beta log u + a log mean_i w(u)_ij,
a form whose batch mean is a plain sum, so under DDP it is all-reduced over `group`.
The paper starts from u_0 = mean_i p_i (`init="mean"`); the authors' code starts from
u_0 = (mean_i softmax(logits_i / (tau_t a)))^a (`init="sharpened"`), which the paper does not
state. Both reach the same fixed point. Runs in float64 without gradient.
"""
from __future__ import annotations

import torch

from .. import distributed
from .._validate import check_matrix, check_positive

TINY = 1e-300  # float64 floor for an empty cluster's marginal
INITS = ("mean", "sharpened")


def _weights(log_p_sharp: torch.Tensor, log_u: torch.Tensor, beta: float) -> torch.Tensor:
    a = 1 - beta
    return torch.softmax(log_p_sharp - (beta / a) * log_u, dim=1)


def _log_batch_mean(x: torch.Tensor, group) -> torch.Tensor:
    total = distributed.all_reduce_sum(torch.cat([x.sum(dim=0), x.new_tensor([x.shape[0]])]), group)
    return (total[:-1] / total[-1]).clamp_min(TINY).log()


@torch.no_grad()
def mira(
    logits: torch.Tensor,
    temperature: float = 0.225,
    beta: float = 2 / 3,
    iters: int = 30,
    group=None,
    return_marginals: bool = False,
    init: str = "mean",
):
    """Pseudo-labels W (B, K), rows summing to 1, in the dtype of `logits`.

    `group`: a torch.distributed process group whose ranks hold the rest of the batch
    (None: this batch alone). `return_marginals=True` also returns the iterate u of Eq. 5
    after each iteration, shape (iters + 1, K), the first row being the mean of p; u tends
    to the marginal of W but is not normalised on the way (early rows need not sum to 1).
    """
    check_matrix("logits", logits, min_rows=1)
    temperature = check_positive("temperature", temperature)
    if not 0 <= beta < 1:
        raise ValueError(f"`beta` must lie in [0, 1) for Eq. 3 to be strongly convex, got {beta}.")
    if int(iters) < 0:
        raise ValueError(f"`iters` must be >= 0, got {iters}.")
    if init not in INITS:
        raise ValueError(f"`init` must be one of {', '.join(INITS)} (the paper's mean of p, or the authors' code), got {init!r}.")
    log_p = torch.log_softmax(logits.double() / temperature, dim=1)
    log_p_sharp = log_p / (1 - beta)
    if init == "mean":
        log_u = _log_batch_mean(log_p.exp(), group)
    else:
        log_u = (1 - beta) * _log_batch_mean(torch.softmax(log_p_sharp, dim=1), group)
    history = [log_u]
    for _ in range(int(iters)):
        log_u = beta * log_u + (1 - beta) * _log_batch_mean(_weights(log_p_sharp, log_u, beta), group)
        history.append(log_u)
    w = _weights(log_p_sharp, log_u, beta).to(logits.dtype)
    if return_marginals:
        return w, torch.stack(history).exp()
    return w


def mira_objective(w: torch.Tensor, logits: torch.Tensor, temperature: float = 0.225, beta: float = 2 / 3) -> torch.Tensor:
    """The value of Eq. 3 at W, in float64 (for tests and convergence studies)."""
    w, log_p = w.double(), torch.log_softmax(logits.double() / temperature, dim=1)
    wbar = w.mean(dim=0)
    xlogx = lambda t: torch.where(t > 0, t * t.clamp_min(TINY).log(), torch.zeros_like(t))  # noqa: E731
    return -(w * log_p).sum(1).mean() + (1 - beta) * xlogx(w).sum(1).mean() + beta * xlogx(wbar).sum()
