"""TwinTURBO losses: few-label fine-tuning as MI maximisation (twinturbo paper, Eq. 8-17, 23-27).

Rescaling sigma: "softmax" (Eq. 8) or "sigmoid" (Eq. 9, each class independently).
  cat-cross  -mean_i log sigma_{y_i}(l_i)                                         (Eq. 23)
  cat-twin   -mean_i log[sigma_{y_i}(l_i) / mean_j sigma_{y_i}(l_j)]              (Eq. 24)
  bin-cross  -mean_i sum_c [y_ic log sigma_c(l_i) + (1 - y_ic) log(1 - sigma_c(l_i))] (Eq. 25)
  critic     mean log D(y) + mean log(1 - D(sigma(l)))  (Eq. 26, JS proxy of Eq. 15):
             the discriminator maximises it, the classifier minimises it
  latent     -mean_i log[exp(s_ii) / mean_j exp(s_ij)], s = cosine(z_i, sg(z*_j)),
             no temperature; latent pairs are same-class images with the other classes'
             rows as negatives (App. B), augment pairs views of one image (Eq. 27)
All in log space (Eq. 19-22) so that no probability underflows.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._validate import check_labels, check_matrix, check_same_shape, full_precision

RESCALES = ("softmax", "sigmoid")


def log_rescale(logits: torch.Tensor, rescale: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(log sigma(l), log(1 - sigma(l))) for every class, computed stably."""
    if rescale == "softmax":
        if logits.shape[1] < 2:
            raise ValueError("softmax rescaling needs at least 2 classes (columns of `logits`).")
        log_p = torch.log_softmax(logits, dim=1)
        # Only the top class can have p > 1/2, where log(-expm1(log p)) loses all precision;
        # its log(1 - p) is the log-mass of the other classes, taken exactly.
        is_top = F.one_hot(logits.argmax(dim=1), logits.shape[1]).bool()
        log_rest = torch.logsumexp(logits.masked_fill(is_top, float("-inf")), dim=1, keepdim=True)
        log_not_top = log_rest - torch.logsumexp(logits, dim=1, keepdim=True)
        log_not_p = torch.log(-torch.expm1(log_p.masked_fill(is_top, -1.0)))
        return log_p, torch.where(is_top, log_not_top, log_not_p)
    if rescale == "sigmoid":
        return -F.softplus(-logits), -F.softplus(logits)
    raise ValueError(f"`rescale` must be one of {RESCALES}, got {rescale!r}.")


def _checked(logits, y):
    check_matrix("logits", logits, min_rows=1)
    return check_labels("y", y, logits.shape[0], logits.shape[1])


@full_precision
def cat_cross(logits: torch.Tensor, y: torch.Tensor, rescale: str = "softmax") -> torch.Tensor:
    _checked(logits, y)
    log_p, _ = log_rescale(logits, rescale)
    return -log_p.gather(1, y[:, None]).mean()


def twin_term(log_p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """mean_i log mean_j sigma_{y_i}(l_j): the contrastive denominator of Eq. 24."""
    log_mean_over_batch = torch.logsumexp(log_p, dim=0) - math.log(log_p.shape[0])
    return log_mean_over_batch[y].mean()


@full_precision
def cat_twin(logits: torch.Tensor, y: torch.Tensor, rescale: str = "softmax") -> torch.Tensor:
    """Categorical twin-entropy = cat_cross + mean_i log mean_j sigma_{y_i}(l_j)."""
    _checked(logits, y)
    log_p, _ = log_rescale(logits, rescale)
    return -log_p.gather(1, y[:, None]).mean() + twin_term(log_p, y)


@full_precision
def bin_cross(logits: torch.Tensor, y: torch.Tensor, rescale: str = "sigmoid") -> torch.Tensor:
    _checked(logits, y)
    log_p, log_not_p = log_rescale(logits, rescale)
    one_hot = F.one_hot(y, logits.shape[1]).to(logits.dtype)
    return -(one_hot * log_p + (1 - one_hot) * log_not_p).sum(dim=1).mean()


@full_precision
def critic_losses(disc_real: torch.Tensor, disc_fake: torch.Tensor) -> dict[str, torch.Tensor]:
    """Both sides of Eq. 26 from discriminator logits.

    `disc_real`: D's logits on one-hot samples of p(y); `disc_fake`: its logits on the
    classifier's rescaled predictions. "discriminator" = -(Eq. 26), to minimise in the
    discriminator's step (pass logits of detached fakes there); "generator" =
    mean log(1 - D(fake)), the part of Eq. 26 the classifier minimises.
    """
    for name, value in (("disc_real", disc_real), ("disc_fake", disc_fake)):
        if not isinstance(value, torch.Tensor) or value.numel() < 1 or not value.is_floating_point():
            raise ValueError(f"`{name}` must be a non-empty float tensor of discriminator logits.")
    log_d_real = -F.softplus(-disc_real)  # log D(y)
    log_not_d_fake = -F.softplus(disc_fake)  # log(1 - D(fake))
    return {
        "discriminator": -(log_d_real.mean() + log_not_d_fake.mean()),
        "generator": log_not_d_fake.mean(),
    }


@full_precision
def latent_nce(z: torch.Tensor, z_target: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 27: row i of `z` should match row i of `z_target` (detached).

    Without `classes` every row of `z_target` is a negative (the augment term: views of other
    images). With `classes` (the latent term) the negatives of anchor i are the targets of the
    other classes only, as App. B builds supervised pairs: a same-class row, the positive's
    duplicates included, is neither positive nor negative. The mean of Eq. 27's denominator is
    over the rows kept (the positive and the negatives).
    """
    check_matrix("z", z, min_rows=1)
    check_matrix("z_target", z_target, min_rows=1)
    check_same_shape("z", z, "z_target", z_target)
    scores = F.normalize(z, dim=1) @ F.normalize(z_target.detach(), dim=1).T
    if classes is None:
        return -(scores.diagonal() - torch.logsumexp(scores, dim=1) + math.log(scores.shape[0])).mean()
    classes = check_labels("classes", classes, z.shape[0])
    kept = (classes[:, None] != classes[None, :]) | torch.eye(len(classes), dtype=torch.bool, device=classes.device)
    log_mean = torch.logsumexp(scores.masked_fill(~kept, float("-inf")), dim=1) - kept.sum(1).log()
    return -(scores.diagonal() - log_mean).mean()
