"""Few-label evaluation: balanced, seeded labelled subsets and accuracy over seeds.

A labelled subset takes the same number of images from every class (TwinTURBO's 100 or
1000 labelled images, `papers/twinturbo.txt` §3; the 1 % / 10 % ImageNet subsets of
MIRA §4.2 and E2MC §4). `balanced_subset` draws one permutation of all rows from the
seed and keeps, per class, the first rows in that order: the same seed always gives the
same subset, and for one seed a smaller subset is contained in every larger one. The drawing
itself is `infomax.data.subsets.balanced_subset`; this module adds the per-class rounding.
"""
from __future__ import annotations

import math
import statistics
from typing import Sequence

import torch

from ..data import subsets
from .knn import weighted_knn
from .linear import linear_probe

PROTOCOLS = ("linear", "knn")


def _as_labels(labels) -> torch.Tensor:
    labels = torch.as_tensor(labels)
    if labels.ndim != 1 or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError("`labels` must be a 1-D sequence of integer class labels.")
    if labels.numel() == 0:
        raise ValueError("`labels` is empty; there is nothing to draw a labelled subset from.")
    return labels


def per_class_count(n: int, classes: int, per_class: int | None = None, fraction: float | None = None) -> int:
    """`per_class`, or round(fraction * n / classes) rounded half up, at least 1."""
    if (per_class is None) == (fraction is None):
        raise ValueError("give exactly one of `per_class` (images per class) or `fraction` (of all images).")
    if per_class is not None:
        if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1:
            raise ValueError(f"`per_class` must be a positive integer, got {per_class!r}.")
        return per_class
    if not 0 < fraction <= 1:
        raise ValueError(f"`fraction` must be in (0, 1], got {fraction}.")
    return max(1, math.floor(fraction * n / classes + 0.5))


def balanced_subset(labels, per_class: int | None = None, fraction: float | None = None, seed: int = 0) -> torch.Tensor:
    """Sorted int64 indices of a class-balanced subset of `labels` (a tensor, array or list).

    Every distinct label value >= 0 is a class and gives the same number of rows:
    `per_class`, or round(fraction * N / C) (half up, at least 1) with N the rows labelled
    >= 0; negative labels (-1: unlabelled) are never drawn. A class with fewer rows than
    that is a ValueError naming it. Pure: the result depends only on the labels, the
    count and `seed`, and is returned on the labels' device.
    """
    labels = _as_labels(labels)
    labelled = torch.nonzero(labels.cpu() >= 0).squeeze(1)
    if labelled.numel() == 0:
        raise ValueError("`labels` holds no class label >= 0; there is nothing to draw a labelled subset from.")
    values = labels.cpu()[labelled]
    classes, counts = torch.unique(values, return_counts=True)
    take = per_class_count(values.numel(), classes.numel(), per_class, fraction)
    short = counts < take
    if bool(short.any()):
        c, n = int(classes[short][0]), int(counts[short][0])
        raise ValueError(f"class {c} has only {n} images but {take} per class were asked for; "
                         f"lower `per_class`/`fraction` or drop classes with fewer than {take} images.")
    chosen = subsets.balanced_subset(labels.cpu().numpy(), per_class=take, seed=seed)  # the one drawing rule
    return torch.from_numpy(chosen).to(labels.device)


def few_label_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    per_class: int | None = None,
    fraction: float | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    protocol: str = "linear",
    **options,
) -> dict:
    """Test top-1 accuracy (percent) of a probe trained on a balanced labelled subset, per seed.

    `protocol` is "linear" (`linear_probe`, its validation split seeded by the same seed)
    or "knn" (`weighted_knn`); `options` go to that function. Returns mean, std
    (population, ddof=0; 0 for one seed), min and max over seeds, `per_seed` (in the
    order of `seeds`), `seeds`, `n_labelled` (labelled images per seed) and `protocol`.
    With "knn", the default k=20 needs at least 20 labelled images: pass a smaller `k`
    for tiny subsets (weighted_knn raises rather than clamping).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"`protocol` must be one of {PROTOCOLS}, got {protocol!r}.")
    seeds = tuple(seeds)
    if not seeds:
        raise ValueError("`seeds` is empty; give at least one seed, e.g. seeds=(0, 1, 2).")
    options["topk"] = tuple(sorted({1, *options.get("topk", (1,))}))  # top-1 is what is reported
    per_seed, n_labelled = [], 0
    for seed in seeds:
        index = balanced_subset(train_labels, per_class=per_class, fraction=fraction, seed=seed)
        x, y = train_features[index.to(train_features.device)], train_labels[index.to(train_labels.device)]
        if protocol == "linear":
            result = linear_probe(x, y, test_features, test_labels, seed=seed, **options)
        else:
            result = weighted_knn(x, y, test_features, test_labels, **options)
        per_seed.append(result.accuracy["top1"])
        n_labelled = index.numel()
    return {
        "mean": statistics.fmean(per_seed), "std": statistics.pstdev(per_seed), "min": min(per_seed), "max": max(per_seed),
        "per_seed": per_seed, "seeds": list(seeds), "n_labelled": n_labelled, "protocol": protocol,
    }
