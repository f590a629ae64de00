"""Batches of cached backbone features for heads trained on a frozen backbone (`infomax finetune`).

`FeatureBatches` turns the dual sampler's rows into the tensors a few-label method reads:
labelled, paired (same-class partners), unlabelled (the plain view) and augmented views. An
augmented view comes from one of two places (`augmentation`):
  "cached"  one of the K augmented views in the feature cache: image r shows view
            1 + (o_r + e) mod K in epoch e (o_r a seeded offset), so each image shows another of
            its K augmentations in each of K successive epochs and every batch mixes them;
  "tokens"  a random crop of the plain view's own token map (the backbone's native grid), its
            pooled vector the mean of the crop's tokens: free per epoch (no backbone pass), and
            exact only for a backbone whose pooled vector is the mean of its tokens (checked).
A head with a coarser token grid than the cache's gets its tokens average-pooled to that grid.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .features import Features, hash_seed, pool_tokens
from .subsets import DualSampler

AUGMENTATIONS = ("cached", "tokens")


class FeatureBatches:
    """`views`: the batch views the method reads; `head_grid`: 0 (the head reads no tokens), None (all
    the cache's tokens) or G (tokens pooled to G x G)."""

    def __init__(self, sampler: DualSampler, features: Features, labels: np.ndarray, views: tuple[str, ...], device="cpu",
                 head_grid: int | None = 0, augmentation: str = "cached"):
        if augmentation not in AUGMENTATIONS:
            raise ValueError(f"`augmentation` must be one of {AUGMENTATIONS}, got {augmentation!r}.")
        self.sampler, self.features, self.labels, self.views, self.device = sampler, features, labels, views, device
        self.head_grid, self.augmentation = head_grid, augmentation
        self.augmented_views = features.num_views - 1
        if "augmented" in views:
            check_augmentation(features, augmentation)
        self.offsets = np.random.default_rng([sampler.seed, 1]).integers(max(self.augmented_views, 1), size=len(features))

    def __len__(self) -> int:
        return len(self.sampler)

    def epoch(self, epoch: int, skip: int = 0):
        for position, rows in enumerate(self.sampler.epoch(epoch)):
            if position >= skip:
                yield self.batch(*rows, epoch=epoch, position=position)

    def augmented_view(self, rows: np.ndarray, epoch: int) -> np.ndarray:
        return 1 + (self.offsets[rows] + epoch) % max(self.augmented_views, 1)

    def batch(self, unlabelled: np.ndarray, labelled: np.ndarray, partners: np.ndarray, epoch: int, position: int = 0) -> dict:
        sources = {"labelled": lambda: self._load(labelled), "paired": lambda: self._load(partners),
                   "unlabelled": lambda: self._load(unlabelled), "augmented": lambda: self._augmented(unlabelled, epoch, position)}
        batch = {"labels": torch.from_numpy(self.labels[labelled]).to(self.device)}
        for name in self.views:
            batch[f"{name}_tokens"], batch[f"{name}_pooled"] = sources[name]()
        return batch

    def _load(self, rows: np.ndarray):
        tokens, pooled = self.features.load(rows, 0, self.device, tokens=self.head_grid != 0)
        return to_grid(tokens, self.head_grid), pooled

    def _augmented(self, rows: np.ndarray, epoch: int, position: int):
        if self.augmentation == "cached":
            tokens, pooled = self.features.load_views(rows, self.augmented_view(rows, epoch), self.device, tokens=self.head_grid != 0)
            return to_grid(tokens, self.head_grid), pooled
        tokens, _ = self.features.load(rows, 0, self.device)
        generator = torch.Generator().manual_seed(hash_seed(self.sampler.seed, epoch, position))
        crops = token_crops(tokens, generator)
        return to_grid(crops, self.head_grid), crops.mean(dim=1)

    def state_dict(self) -> dict:
        return {}  # every batch is a function of (seed, epoch, position)

    def load_state_dict(self, state: dict) -> None:
        pass


def to_grid(tokens: torch.Tensor | None, grid: int | None) -> torch.Tensor | None:
    """Tokens as a head with token grid `grid` reads them (0: none, None: as stored, G: pooled to G x G)."""
    if tokens is None or grid == 0:
        return None
    return tokens if grid is None or tokens.shape[1] == grid ** 2 else pool_tokens(tokens, grid)


def token_crops(tokens: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(N, S*S, C) square token maps -> (N, s*s, C): one crop side s per batch, drawn from
    [ceil(S/2), S-1], at a random place in each map."""
    n, t, c = tokens.shape
    side = math.isqrt(t)
    if side * side != t or side < 2:
        raise ValueError(f"token crops need a square map of at least 2 x 2 tokens, got {t} tokens; raise --resolution "
                         "or use --augmentation cached.")
    size = int(torch.randint(math.ceil(side / 2), side, (1,), generator=generator))
    top, left = (torch.randint(side - size + 1, (n, 1, 1), generator=generator) for _ in range(2))
    offsets = torch.arange(size)
    index = ((top + offsets[:, None]) * side + left + offsets[None, :]).reshape(n, size * size).to(tokens.device)
    return tokens.gather(1, index[..., None].expand(-1, -1, c))


def check_augmentation(features: Features, augmentation: str) -> None:
    """Refuse an augmentation the cache cannot give, naming the fix."""
    if augmentation == "cached" and features.num_views < 2:
        raise ValueError("the augment term and FixMatch need augmented views of the unlabelled images, and the "
                         "feature cache holds only the plain view; use --views 1 or more, or --augmentation tokens.")
    if augmentation == "tokens":
        rows = np.arange(min(64, len(features)))
        tokens, pooled = features.load(rows, 0)
        if tokens is None:
            raise ValueError("--augmentation tokens crops the plain view's token map, and this cache holds no tokens.")
        gap = (tokens.mean(dim=1) - pooled).abs().max() / pooled.abs().max().clamp_min(1e-6)
        if gap > 1e-2:
            raise ValueError(f"--augmentation tokens needs a backbone whose pooled vector is the mean of its tokens (EfficientNet, "
                             f"ResNet); here they differ by {float(gap):.2g} of the pooled vector's scale (a CLS token?). "
                             "Use --augmentation cached.")
