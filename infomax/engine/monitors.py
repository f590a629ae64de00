"""What the loop watches: an online weighted-kNN probe after epochs, and on logged steps the
embedding's spread (collapse) and, where a method reports both, its redundancy/alignment ratio.

The kNN probe runs the encoder in eval mode (batch norm in train mode during monitoring skews
the features: lightly #1440) on the plain view of a held-out slice of the training split, with
k and T given explicitly (a silent default change broke reproducibility: lightly #1840).
"""
from __future__ import annotations

import math
import sys

import numpy as np
import torch
import torch.nn.functional as F

from ..data.augment import center_resize, to_float_images
from ..eval.geometry import effective_rank
from ..eval.knn import weighted_knn

COLLAPSED = 0.1  # mean per-dimension std of unit rows, times sqrt(D): about 1 when spread, 0 when collapsed


class Collapsed(ValueError):
    pass


@torch.no_grad()
def embed(method, images: np.ndarray, resolution: int, device, batch: int = 512) -> torch.Tensor:
    out = []
    for start in range(0, len(images), batch):
        x = to_float_images(torch.from_numpy(np.array(images[start:start + batch])).to(device), channels=None)  # a writable copy
        out.append(method.embed(center_resize(x, resolution)).float())
    return torch.cat(out)


class KNNMonitor:
    """Top-1 of a weighted kNN (cosine, k, T) from `bank` training rows to `query` held-out rows."""

    def __init__(self, dataset, bank: np.ndarray, query: np.ndarray, resolution: int, k: int, temperature: float, every: int):
        self.dataset, self.bank, self.query = dataset, np.sort(bank), np.sort(query)
        self.resolution, self.k, self.temperature, self.every = resolution, k, temperature, every

    def score(self, method, device) -> float:
        was_training = method.training
        method.eval()
        try:
            bank = embed(method, self.dataset.images[self.bank], self.resolution, device)
            query = embed(method, self.dataset.images[self.query], self.resolution, device)
        finally:
            method.train(was_training)
        labels = torch.from_numpy(self.dataset.labels)
        result = weighted_knn(bank, labels[self.bank], query, labels[self.query], k=self.k, temperature=self.temperature)
        return result.accuracy["top1"]

    def __call__(self, loop, epoch: int) -> dict:
        if not self.every or epoch % self.every or loop.fabric.global_rank != 0:
            return {}
        return {"knn_top1": self.score(loop.method, loop.fabric.device)}


def embedding_spread(loop, terms: dict) -> dict:
    """feature_std: mean per-dimension std of the L2-normalised embedding; effective_rank (RankMe)."""
    z = terms.get("_embedding")
    if z is None or z.shape[0] < 2:
        return {}
    z = z.float()
    std = F.normalize(z, dim=1).std(dim=0).mean()
    if loop.fabric.world_size > 1:  # every rank decides on the same number, or one would raise while the others wait
        std = loop.fabric.all_reduce(std.detach(), reduce_op="mean")
    spread = float(std) * math.sqrt(z.shape[1])
    record = {"feature_std": float(std), "effective_rank": effective_rank(z)}
    if spread < COLLAPSED:
        message = (f"step {loop.step}: the embedding is collapsing (per-dimension std {float(std):.2e}, "
                   f"{spread:.3f} of a spread one; effective rank {record['effective_rank']:.1f}).")
        if loop.run.abort_on_collapse:
            raise Collapsed(message + " Stopped by --abort-on-collapse; the last checkpoint is kept.")
        print(f"[warning] {message} Lower the lr or check the augmentations.", file=sys.stderr, flush=True)
    return record


def redundancy_to_alignment(loop, terms: dict) -> dict:
    """|weighted redundancy| / |alignment| (SMI Fig. 6) for methods that report both terms."""
    if "redundancy" not in terms or "alignment" not in terms:
        return {}
    return {"redundancy_to_alignment": float(terms["redundancy"].detach().abs() / terms["alignment"].detach().abs().clamp_min(1e-12))}
