"""Batches of views read from the feature cache instead of drawn afresh: partial fine-tuning.

A frozen trunk sees the same input every epoch, so its outputs for K augmented views of each image
and each view slot of the view set are computed once (data/features.py, one entry per slot) and a step
only runs the trainable tail. Slot s of image r shows its cached view
    1 + (o_rs + e + s * (e // K)) mod K      in epoch e,
o_rs a seeded offset: every epoch another view, and the slots' pairings cycle through all K^2
combinations before one repeats. What differs from fresh augmentations: only K draws per image
and slot exist, so over many epochs a method sees each pair again (K^2 epochs apart).
Rows are shuffled and sharded over ranks exactly as ViewBatches shards images.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from .batches import ViewBatches
from .features import Features


class CachedViewBatches(ViewBatches):
    def __init__(self, slots: list[Features], batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1,
                 device: torch.device | str = "cpu"):
        """`slots`: one cache entry per view of the view set, each with the plain view and K augmented ones."""
        counts = {f.num_views - 1 for f in slots}
        if len(counts) != 1 or min(counts) < 1:
            raise ValueError(f"every view slot needs the same number (>= 1) of cached augmented views, got {sorted(counts)}.")
        super().__init__(None, np.arange(len(slots[0])), [], batch_size, seed=seed, rank=rank, world_size=world_size,
                         device=device)
        self.slots, self.k = slots, counts.pop()
        self.offsets = np.random.default_rng(seed).integers(0, self.k, size=(len(slots), len(slots[0])))

    def views_of(self, index: np.ndarray, epoch: int) -> list[np.ndarray]:
        return [1 + (self.offsets[s, index] + epoch + s * (epoch // self.k)) % self.k for s in range(len(self.slots))]

    def epoch(self, epoch: int, skip: int = 0) -> Iterator[dict]:
        for index in self.rows_of(epoch)[skip:]:
            index = np.sort(index)
            views = [slot.load_views(index, v, self.device, tokens=False)[1]
                     for slot, v in zip(self.slots, self.views_of(index, epoch))]
            yield {"views": views}
