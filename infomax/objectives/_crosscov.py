"""The one quadratic form behind Barlow Twins, VICReg, VCReg and E2MC's covariance term.

    offdiag_sq_sum(a, b) = sum_{i != j} (a^T b)_{ij}^2        a, b: (N, D)

The feature form builds the D x D matrix a^T b: O(N D^2) time, O(D^2) memory. The
sample form uses the trace identity ||a^T b||_F^2 = sum(a a^T * b b^T), which needs two
N x N Gram matrices: O(N^2 D) time, O(N^2) memory, and is exact. With the usual
self-supervised shapes (N = 256 per device, D = 8192) the sample form is ~D/N times
cheaper. "auto" picks whichever costs fewer FLOPs: the feature form takes ~6 N D^2 for
forward and backward; the sample form ~6 N^2 D per Gram matrix, one when a is b
(covariances) and two otherwise (Barlow Twins' cross-correlation).
"""
from __future__ import annotations

import torch

FORMS = ("auto", "feature", "sample")


def resolve_form(form: str, n: int, d: int, grams: int = 2) -> str:
    if form not in FORMS:
        raise ValueError(f"`form` must be one of {FORMS}, got {form!r}.")
    if form == "auto":
        return "sample" if grams * n < d else "feature"
    return form


def diag_of_cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """diag(a^T b) in O(N D), without forming the matrix."""
    return (a * b).sum(dim=0)


def offdiag_sq_sum(a: torch.Tensor, b: torch.Tensor, form: str = "auto") -> torch.Tensor:
    n, d = a.shape
    diag = diag_of_cross(a, b)
    if resolve_form(form, n, d, grams=1 if b is a else 2) == "feature":
        total = (a.T @ b).square().sum()
    else:
        gram_b = gram_a = a @ a.T
        if b is not a:
            gram_b = b @ b.T
        total = (gram_a * gram_b).sum()
    return total - diag.square().sum()
