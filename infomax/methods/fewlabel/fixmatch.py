"""FixMatch (Sohn et al., NeurIPS 2020) on the TwinTURBO head: the USB reference baseline.

  L = H(y, p(l)) + lambda_u mean_b 1[max q_b >= tau] H(argmax q_b, p(strong_b)),
  q_b = softmax(weak logits_b), detached  (FixMatch Eq. 2-4; tau = 0.95, lambda_u = 1).
On cached features the weak view is the plain (un-augmented) cached view of an unlabelled
image and the strong view an augmented cached view of the same image. The unsupervised
mean runs over all unlabelled rows, masked ones counting as 0, as in the paper and USB.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from ..._validate import check_labels, check_matrix, check_same_shape, full_precision
from ..base import Steps
from .twinturbo import TwinTurboHead, encode_view


@full_precision
def fixmatch_loss(logits_labelled: torch.Tensor, labels: torch.Tensor, logits_weak: torch.Tensor,
                  logits_strong: torch.Tensor, threshold: float = 0.95, lambda_u: float = 1.0) -> dict[str, torch.Tensor]:
    """Terms "supervised", "unsupervised", "mask_rate" (share of confident rows) and "total"."""
    check_matrix("logits_labelled", logits_labelled, min_rows=1)
    check_labels("labels", labels, logits_labelled.shape[0], logits_labelled.shape[1])
    check_matrix("logits_weak", logits_weak, min_rows=1)
    check_matrix("logits_strong", logits_strong, min_rows=1)
    check_same_shape("logits_weak", logits_weak, "logits_strong", logits_strong)
    supervised = F.cross_entropy(logits_labelled, labels)
    confidence, pseudo = logits_weak.detach().softmax(dim=1).max(dim=1)
    mask = (confidence >= threshold).to(logits_strong.dtype)
    unsupervised = (F.cross_entropy(logits_strong, pseudo, reduction="none") * mask).mean()
    return {"supervised": supervised, "unsupervised": unsupervised, "mask_rate": mask.mean(),
            "total": supervised + lambda_u * unsupervised}


@dataclass(frozen=True)
class FixMatchLoss:
    """FixMatch settings: confidence threshold tau (a value above 1 masks every row) and weight lambda_u."""

    name: ClassVar[str] = "fixmatch"
    threshold: float = 0.95
    lambda_u: float = 1.0

    def __post_init__(self):
        for name in ("threshold", "lambda_u"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"`{name}` must be a finite number >= 0, got {value!r} (the paper uses 0.95 and 1).")


class FixMatch(Steps):
    """The TwinTURBO head trained by FixMatch; batch keys as for TwinTurbo, with
    unlabelled_* the weak view and augmented_* the strong view."""

    name, Settings = "fixmatch", FixMatchLoss

    def __init__(self, head: TwinTurboHead, settings: FixMatchLoss | None = None):
        super().__init__()
        self.head, self.settings = head, settings or FixMatchLoss()

    views = ("labelled", "unlabelled", "augmented")  # what head_loss reads
    stages = ("head",)

    def training_step(self, batch: dict, stage: str = "head", carry: dict | None = None) -> dict[str, torch.Tensor]:
        terms = self.head_loss(batch)
        terms["loss"] = terms.pop("total")
        return terms

    def head_loss(self, batch: dict) -> dict[str, torch.Tensor]:
        """FixMatch terms for one dual minibatch; minimise "total"."""
        if batch.get("labels") is None:
            raise ValueError("the batch lacks 'labels' for the labelled images.")
        _, logits_labelled = encode_view(self.head, batch, "labelled", "the supervised term")
        with torch.no_grad():
            _, logits_weak = encode_view(self.head, batch, "unlabelled", "FixMatch's weak view")
        _, logits_strong = encode_view(self.head, batch, "augmented", "FixMatch's strong view")
        return fixmatch_loss(logits_labelled, batch["labels"], logits_weak, logits_strong,
                             self.settings.threshold, self.settings.lambda_u)

    @torch.no_grad()
    def predict(self, tokens: torch.Tensor | None, pooled: torch.Tensor) -> torch.Tensor:
        """Softmax class probabilities. Call eval() first."""
        return self.head(tokens, pooled)[1].softmax(dim=1)
