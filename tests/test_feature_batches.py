"""Batches of cached features: K cached views shown one per epoch, and token-map crops."""
import numpy as np
import pytest
import torch

from infomax.data.feature_batches import FeatureBatches, check_augmentation, to_grid, token_crops
from infomax.data.features import Features
from infomax.data.subsets import DualSampler


def test_each_epoch_shows_each_image_another_of_its_k_views():
    n, k, dim = 40, 3, 2
    pooled = np.zeros((k + 1, n, dim), dtype=np.float16)
    pooled[:, :, 0] = np.arange(k + 1)[:, None]  # feature 0 says which view a row came from
    pooled[:, :, 1] = np.arange(n)[None, :]  # feature 1 which image
    features = Features([(pooled[:1], None), (pooled[1:], None)], np.arange(n) % 4, list("abcd"), {}, [])
    labels = np.arange(n) % 4
    sampler = DualSampler(np.arange(8, n), np.arange(8), labels, batch_size=8, seed=3)
    batches = FeatureBatches(sampler, features, labels, ("labelled", "unlabelled", "augmented"))
    seen = {}
    for epoch in range(k):
        for batch in batches.epoch(epoch):
            assert torch.equal(batch["augmented_pooled"][:, 1], batch["unlabelled_pooled"][:, 1])  # views of the same images
            assert (batch["unlabelled_pooled"][:, 0] == 0).all()
            for view, image in batch["augmented_pooled"].tolist():
                seen.setdefault(int(image), []).append(int(view))
    assert len(seen) == n - 8 and all(sorted(views) == [1, 2, 3] for views in seen.values())
    first_views = [views[0] for views in seen.values()]
    assert len(set(first_views)) == k  # one epoch's batches mix the views
    with pytest.raises(ValueError, match="--views 1 or more"):
        FeatureBatches(sampler, Features([(pooled[:1], None)], labels, list("abcd"), {}, []), labels, ("augmented",))


def _token_features(n=24, side=4, c=3, mean_pooled=True):
    tokens = np.random.default_rng(0).normal(size=(1, n, side * side, c)).astype(np.float16)
    pooled = tokens.astype(np.float32).mean(2) if mean_pooled else np.random.default_rng(1).normal(size=(1, n, c))
    return Features([(pooled.astype(np.float16), tokens)], np.arange(n) % 4, list("abcd"), {}, [])


def test_token_crops_are_windows_of_the_map():
    side, c = 5, 2
    grid = torch.arange(side * side, dtype=torch.float32).reshape(1, side * side, 1).expand(6, -1, c).contiguous()
    crops = token_crops(grid, torch.Generator().manual_seed(0))
    size = int(crops.shape[1] ** 0.5)
    assert size * size == crops.shape[1] and 3 <= size <= 4  # ceil(5/2) .. 5-1
    for row in crops[:, :, 0]:
        cells = row.long().reshape(size, size)
        top, left = divmod(int(cells[0, 0]), side)
        assert torch.equal(cells, (top + torch.arange(size))[:, None] * side + left + torch.arange(size)[None, :])
    assert len({tuple(r.tolist()) for r in crops[:, :, 0]}) > 1  # rows are cut at different places
    with pytest.raises(ValueError, match="at least 2 x 2"):
        token_crops(torch.zeros(2, 1, c), torch.Generator())


def test_token_augmentation_pools_the_crop_and_is_a_function_of_seed_epoch_position():
    features = _token_features()
    labels = features.labels
    sampler = DualSampler(np.arange(8, 24), np.arange(8), labels, batch_size=8, seed=5)
    views = ("labelled", "unlabelled", "augmented")
    batches = FeatureBatches(sampler, features, labels, views, head_grid=2, augmentation="tokens")
    first = [b for b in batches.epoch(0)]
    again = FeatureBatches(sampler, features, labels, views, head_grid=2, augmentation="tokens")
    for a, b in zip(first, again.epoch(0)):
        assert all(torch.equal(a[k], b[k]) for k in a)
    batch = first[0]
    assert batch["unlabelled_tokens"].shape[1] == batch["augmented_tokens"].shape[1] == 4  # pooled to the head's 2 x 2
    assert not torch.allclose(batch["augmented_pooled"], batch["unlabelled_pooled"])
    skipped = next(iter(batches.epoch(0, skip=1)))
    assert torch.equal(skipped["augmented_pooled"], first[1]["augmented_pooled"])  # a resume mid-epoch sees the same crops
    grid = torch.from_numpy(features.groups[0][1][0].astype(np.float32))
    assert torch.allclose(to_grid(grid, 2), torch.nn.functional.avg_pool2d(
        grid.transpose(1, 2).reshape(-1, 3, 4, 4), 2).flatten(2).transpose(1, 2))


def test_token_augmentation_refuses_a_backbone_whose_pooled_vector_is_not_the_token_mean():
    check_augmentation(_token_features(), "tokens")
    with pytest.raises(ValueError, match="mean of its tokens"):
        check_augmentation(_token_features(mean_pooled=False), "tokens")
    no_tokens = Features([(np.zeros((1, 4, 3), np.float16), None)], np.arange(4), list("abcd"), {}, [])
    with pytest.raises(ValueError, match="holds no tokens"):
        check_augmentation(no_tokens, "tokens")
    with pytest.raises(ValueError, match="--augmentation tokens"):
        check_augmentation(no_tokens, "cached")
