"""Weighted k-nearest-neighbour classification of frozen features.

The protocol of Wu et al. (2018, "Unsupervised feature learning via non-parametric
instance discrimination", §3.5) as run by DINO (Caron et al., 2021, §4.1 and its
eval_knn.py) and MIRA (Lee et al., 2022, §4.2 and footnote 4): train and test features
are L2-normalised, each test row takes the k train rows of highest cosine similarity
s_j, and neighbour j votes for its class with weight exp(s_j / T). Defaults k=20,
T=0.07. The search is exact (a matmul and a top-k, no index), chunked over test rows so
that the similarity block stays within a memory budget.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F

from .._validate import check_matrix, check_positive

SIMILARITY_BUDGET_BYTES = 256 * 2**20  # one (chunk, N_train) similarity block


@dataclass(frozen=True)
class KNNResult:
    """Per test row: `predictions` (M,) and `scores` (M, C), the vote shares of each class
    (rows sum to 1); `accuracy` maps "top1", "top5", ... to percent when labels were given."""

    predictions: torch.Tensor
    scores: torch.Tensor
    accuracy: dict[str, float] = field(default_factory=dict)


def default_chunk_size(n_train: int, budget_bytes: int = SIMILARITY_BUDGET_BYTES, element_bytes: int = 4) -> int:
    """Test rows per chunk so that one (chunk, n_train) similarity block fits `budget_bytes`."""
    return max(1, budget_bytes // (element_bytes * max(n_train, 1)))


def check_labels(name: str, labels, n: int, rows_name: str) -> torch.Tensor:
    """A 1-D tensor of `n` non-negative integer class indices, one per row of `rows_name`."""
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(f"`{name}` must be a 1-D integer tensor of class indices.")
    if labels.shape[0] != n:
        raise ValueError(f"`{name}` has {labels.shape[0]} entries but `{rows_name}` has {n} rows; give one label per row.")
    if n and int(labels.min()) < 0:
        raise ValueError(f"`{name}` must hold class indices >= 0; got {int(labels.min())}.")
    return labels


def class_count(num_classes: int | None, *labels: torch.Tensor) -> int:
    """`num_classes` if given (checked against the labels), else the largest label + 1."""
    largest = max(int(y.max()) for y in labels if y.numel())
    if num_classes is None:
        return largest + 1
    if num_classes <= largest:
        raise ValueError(f"`num_classes`={num_classes} but the labels go up to {largest}; raise `num_classes` or leave it None.")
    return int(num_classes)


def check_pair(train_features, test_features) -> tuple[torch.Tensor, torch.Tensor]:
    """Finite, non-empty (N, D) train and (M, D) test features with the same D."""
    train = check_matrix("train_features", train_features, min_rows=1)
    test = check_matrix("test_features", test_features, min_rows=1)
    if train.shape[1] != test.shape[1]:
        raise ValueError(f"`train_features` have {train.shape[1]} dimensions but `test_features` have {test.shape[1]}; "
                         "extract both with the same encoder and layer.")
    return train, test


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, topk: Sequence[int], votes: bool = False) -> dict[str, float]:
    """Percent of rows whose label ranks within the top t scores, for each t in `topk`.

    Ranks follow a stable descending order (ties go to the smaller class index, as argmax
    does). With `votes=True` a class of score 0 (no neighbour voted for it) never counts
    as a hit, so padding the top 5 with unvoted classes cannot inflate top-5.
    """
    own = scores.gather(1, labels[:, None])
    classes = torch.arange(scores.shape[1], device=scores.device)
    rank = (scores > own).sum(1) + ((scores == own) & (classes[None, :] < labels[:, None])).sum(1)
    hit = own.squeeze(1) > 0 if votes else torch.ones_like(rank, dtype=torch.bool)
    return {f"top{t}": 100.0 * int(((rank < t) & hit).sum()) / labels.shape[0] for t in topk}


def _check_settings(k, n_train: int, temperature, chunk_size, topk) -> tuple[float, int | None, tuple[int, ...]]:
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"`k` must be a positive integer, got {k!r}.")
    if k > n_train:
        raise ValueError(f"k={k} neighbours asked for but there are only {n_train} training samples; "
                         "lower `k` or give more training samples.")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"`chunk_size` must be a positive integer or None (from the memory budget), got {chunk_size!r}.")
    topk = tuple(topk)
    if any(not isinstance(t, int) or t < 1 for t in topk):
        raise ValueError(f"`topk` must hold positive integers, got {topk!r}.")
    return check_positive("temperature", temperature), chunk_size, topk


@torch.no_grad()
def weighted_knn(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor | None = None,
    *,
    k: int = 20,
    temperature: float = 0.07,
    num_classes: int | None = None,
    chunk_size: int | None = None,
    topk: Sequence[int] = (1, 5),
) -> KNNResult:
    """Classify each test row by the exp(cos / T)-weighted votes of its k nearest train rows.

    Computes on the train features' device, in float32 (float64 stays float64; fp16/bf16
    test rows are upcast one chunk at a time) with autocast off. `chunk_size` test rows
    are done at a time; None picks it so one similarity block is about
    `SIMILARITY_BUDGET_BYTES`. Vote weights are shifted by each row's top similarity
    before the exp, which cancels in the returned shares and keeps small T finite.

    Asking for more neighbours than there are training samples is a ValueError (lower
    `k`): clamping would silently change the protocol. With fewer than t classes,
    "top{t}" counts every voted class.
    """
    train, test = check_pair(train_features, test_features)
    train_labels = check_labels("train_labels", train_labels, train.shape[0], "train_features")
    if test_labels is not None:
        test_labels = check_labels("test_labels", test_labels, test.shape[0], "test_features")
    temperature, chunk_size, topk = _check_settings(k, train.shape[0], temperature, chunk_size, topk)
    classes = class_count(num_classes, train_labels, *([] if test_labels is None else [test_labels]))

    device = train.device
    dtype = torch.float64 if train.dtype == torch.float64 else torch.float32
    with torch.autocast(device.type, enabled=False):
        bank = F.normalize(train.to(dtype), dim=1)
        bank_labels = train_labels.to(device)
        chunk = min(chunk_size or default_chunk_size(train.shape[0], element_bytes=bank.element_size()), test.shape[0])
        similarity = torch.empty(chunk, train.shape[0], dtype=dtype, device=device)
        scores = torch.empty(test.shape[0], classes, dtype=dtype, device=device)
        for start in range(0, test.shape[0], chunk):
            queries = F.normalize(test[start:start + chunk].to(device=device, dtype=dtype), dim=1)
            block = torch.mm(queries, bank.T, out=similarity[: queries.shape[0]])
            nearest, index = block.topk(k, dim=1)
            weights = torch.exp((nearest - nearest[:, :1]) / temperature)
            votes = torch.zeros(queries.shape[0], classes, dtype=dtype, device=device)
            votes.scatter_add_(1, bank_labels[index], weights)
            scores[start:start + queries.shape[0]] = votes / votes.sum(1, keepdim=True)
    accuracy = {} if test_labels is None else topk_accuracy(scores, test_labels.to(device), topk, votes=True)
    return KNNResult(predictions=scores.argmax(1), scores=scores, accuracy=accuracy)
