"""data/batches.py: ViewBatches, the pretraining data order. Each image here carries its own row number
as its pixel value, so the rows a batch was made from are read back from the views themselves, and
every property is checked against the rows given, never against the sampler's own output."""
import numpy as np
import pytest
import torch

from infomax.data.batches import ViewBatches
from infomax.data.views import get_view_set

SIDE = 8


def numbered_images(n: int) -> np.ndarray:
    """n grey SIDE x SIDE uint8 images, image i filled with the value i (so n <= 256)."""
    return np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, SIDE, SIDE, 1)).copy()


def make_batches(rows, batch_size=8, *, n_images=200, recipe="plain", seed=0, rank=0, world_size=1, images=None):
    images = numbered_images(n_images) if images is None else images
    return ViewBatches(images, np.asarray(rows), get_view_set(recipe, SIDE), batch_size, seed=seed, rank=rank,
                       world_size=world_size)


def rows_read(batches, epoch: int, skip: int = 0) -> list[list[int]]:
    """The image rows of each batch of `epoch`, decoded from the plain views' pixel values."""
    out = []
    for batch in batches.epoch(epoch, skip):
        (view,) = batch["views"]
        assert torch.equal(view.amax(dim=(1, 2, 3)), view.amin(dim=(1, 2, 3)))  # one value per image: a row number
        out.append([round(float(v) * 255) for v in view[:, 0, 0, 0]])
    return out


def flat(batches: list[list[int]]) -> list[int]:
    return [row for batch in batches for row in batch]


def test_every_epoch_is_another_shuffled_permutation_of_the_given_rows():
    rows = np.arange(40, 104)  # 64 training rows out of 200 images: the rows, not their positions, are read
    batches = make_batches(rows)
    epochs = [flat(rows_read(batches, e)) for e in range(3)]
    for order in epochs:
        assert sorted(order) == rows.tolist()  # each row once per epoch, and only the training rows
        assert order != rows.tolist()  # shuffled
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2] and epochs[0] != epochs[2]


def test_the_order_depends_on_the_seed_and_nothing_else():
    rows = np.arange(64)
    assert rows_read(make_batches(rows, seed=0), 1) == rows_read(make_batches(rows, seed=0), 1)
    assert rows_read(make_batches(rows, seed=0), 1) != rows_read(make_batches(rows, seed=1), 1)


@pytest.mark.parametrize("n_rows", [64, 71])
def test_two_ranks_read_disjoint_rows_whose_union_is_the_epoch(n_rows):
    rows = np.arange(100, 100 + n_rows)
    ranks = [make_batches(rows, rank=r, world_size=2) for r in (0, 1)]
    per_rank = (n_rows // 2) // 8  # batches of 8 per rank, each rank an equal share
    for epoch in range(2):
        read = [flat(rows_read(b, epoch)) for b in ranks]
        assert [len(r) for r in read] == [per_rank * 8] * 2 and [len(b) for b in ranks] == [per_rank] * 2
        assert not set(read[0]) & set(read[1])  # no row on both ranks
        assert set(read[0]) | set(read[1]) <= set(rows.tolist())
        if n_rows == 64:  # nothing dropped: the two ranks together read the whole epoch
            assert sorted(read[0] + read[1]) == rows.tolist()


def test_a_resumed_epoch_reads_only_the_batches_not_yet_trained():
    batches = make_batches(np.arange(64))
    whole = rows_read(batches, 2)
    assert rows_read(batches, 2, skip=3) == whole[3:]
    assert rows_read(batches, 2, skip=len(batches)) == []


def test_the_length_is_whole_batches_of_this_ranks_share():
    assert len(make_batches(np.arange(70), batch_size=8)) == 8  # 70 // 8
    assert len(make_batches(np.arange(70), batch_size=8, rank=1, world_size=3)) == 2  # 70 // 3 = 23 rows -> 2 batches


def test_a_global_batch_larger_than_the_rows_is_refused():
    with pytest.raises(ValueError, match="Lower --batch-size"):
        make_batches(np.arange(20), batch_size=8, world_size=3)


def same_image_views(**kwargs) -> list[torch.Tensor]:
    """The first batch's views when every image is the same: what differs comes from the augmentation only."""
    image = np.random.default_rng(0).integers(0, 256, (1, SIDE, SIDE, 3), dtype=np.uint8)
    batches = make_batches(np.arange(32), images=np.repeat(image, 32, axis=0), recipe="simclr", **kwargs)
    return next(iter(batches.epoch(0)))["views"]


def test_augmentations_are_drawn_per_seed_and_per_rank():
    first = same_image_views(seed=0, rank=0, world_size=2)
    assert all(torch.equal(a, b) for a, b in zip(first, same_image_views(seed=0, rank=0, world_size=2)))
    assert not torch.equal(first[0], same_image_views(seed=0, rank=1, world_size=2)[0])  # ranks do not share draws
    assert not torch.equal(first[0], same_image_views(seed=1, rank=0, world_size=2)[0])


def test_the_saved_generator_state_draws_the_same_views_again():
    image = np.random.default_rng(1).integers(0, 256, (1, SIDE, SIDE, 3), dtype=np.uint8)
    batches = make_batches(np.arange(32), images=np.repeat(image, 32, axis=0), recipe="simclr")
    saved = {k: v.clone() for k, v in batches.state_dict().items()}
    first = next(iter(batches.epoch(0)))["views"]
    batches.load_state_dict(saved)
    again = next(iter(batches.epoch(0)))["views"]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], next(iter(batches.epoch(0)))["views"][0])  # without the restore: new draws


def test_the_held_out_rows_never_train_and_the_bank_votes_from_training_rows():
    from infomax.engine.pretrain import split_rows

    labels = np.zeros(500, np.int64)
    train, bank, query = split_rows(labels, holdout=60, bank=100, batch_size=32)
    assert len(query) == 60 and len(bank) == 100 and len(train) == 440
    assert not set(train.tolist()) & set(query.tolist())  # a query never trains
    assert sorted(train.tolist() + query.tolist()) == list(range(500))
    assert set(bank.tolist()) <= set(train.tolist())
    assert query.tolist() != list(range(60))  # a seeded draw, not the first rows
    assert len(split_rows(labels, holdout=400, bank=100, batch_size=32)[2]) == 100  # at most a fifth is held out
