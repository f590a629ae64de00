"""Batches of augmented views from decoded images, for self-supervised pretraining.

The decoded uint8 array (data/dataset.py) is indexed by shuffled row batches, sharded over
ranks as torch's DistributedSampler shards (the sampler Fabric installs: one permutation per
epoch from the seed, rank r takes every world-th row, equal shares), moved to the device and
turned into views there by the view set's batched ops (data/views.py). Nothing loops over images
in Python. The augmentation generator is per rank and part of `state_dict`, so a resumed run
draws the same views; skipped batches of a resumed epoch are not augmented.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DistributedSampler

from .views import ViewSet, make_views


class RankBatches:
    """This rank's share of `rows`, as DistributedSampler shards them: one seeded permutation per epoch,
    rank r takes every world-th row, equal batches on every rank (the rest of an epoch is dropped)."""

    def __init__(self, rows: np.ndarray, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1):
        if batch_size * world_size > len(rows):
            raise ValueError(f"a global batch of {batch_size * world_size} needs at least that many training images; "
                             f"the dataset has {len(rows)}. Lower --batch-size.")
        self.rows, self.batch_size = np.asarray(rows), batch_size
        self.sampler = DistributedSampler(range(len(self.rows)), num_replicas=world_size, rank=rank, shuffle=True,
                                          seed=seed, drop_last=True)

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size

    def rows_of(self, epoch: int) -> np.ndarray:
        """This rank's image rows for `epoch`, one batch per row of the (len, batch_size) result."""
        self.sampler.set_epoch(epoch)
        order = np.fromiter(iter(self.sampler), dtype=np.int64, count=len(self.sampler))
        return self.rows[order[: len(self) * self.batch_size]].reshape(len(self), self.batch_size)


class ViewBatches(RankBatches):
    def __init__(self, images: np.ndarray, rows: np.ndarray, views: ViewSet, batch_size: int, *,
                 seed: int, rank: int = 0, world_size: int = 1, device: torch.device | str = "cpu"):
        """`batch_size` is per rank; `rows` are the training rows of `images` to draw from."""
        super().__init__(rows, batch_size, seed=seed, rank=rank, world_size=world_size)
        self.images, self.views, self.device = images, views, torch.device(device)
        self.generator = torch.Generator().manual_seed(seed * 1009 + rank)

    def epoch(self, epoch: int, skip: int = 0) -> Iterator[dict]:
        for index in self.rows_of(epoch)[skip:]:
            rows = np.sort(index)
            images = torch.from_numpy(np.ascontiguousarray(self.images[rows])).to(self.device, non_blocking=True)
            yield {"views": make_views(images, self.views, self.generator), "rows": torch.from_numpy(rows)}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["generator"])
