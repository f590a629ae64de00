import json

import numpy as np
import pytest

from infomax.data.subsets import DualSampler, balanced_subset, load_subset, save_subset

LABELS = np.repeat(np.arange(10), 50)


@pytest.mark.parametrize("kwargs, per_class", [({"total": 100}, 10), ({"total": 40}, 4), ({"per_class": 3}, 3), ({"fraction": 0.1}, 5)])
def test_balanced_subset_counts(kwargs, per_class):
    chosen = balanced_subset(LABELS, **kwargs, seed=1)
    assert np.bincount(LABELS[chosen], minlength=10).tolist() == [per_class] * 10
    assert len(np.unique(chosen)) == len(chosen)


def test_balanced_subset_is_seeded_and_spreads_a_remainder():
    assert np.array_equal(balanced_subset(LABELS, 100, seed=42), balanced_subset(LABELS, 100, seed=42))
    assert not np.array_equal(balanced_subset(LABELS, 100, seed=42), balanced_subset(LABELS, 100, seed=1337))
    counts = np.bincount(LABELS[balanced_subset(LABELS, 25, seed=0)], minlength=10)
    assert counts.sum() == 25 and set(counts.tolist()) == {2, 3}


def test_balanced_subset_bad_requests():
    with pytest.raises(ValueError, match="cannot cover 10 classes"):
        balanced_subset(LABELS, 5)
    with pytest.raises(ValueError, match="class 3 has 2 images"):
        balanced_subset(np.r_[np.repeat([0, 1, 2, 4], 10), [3, 3]], per_class=5)
    with pytest.raises(ValueError, match="exactly one"):
        balanced_subset(LABELS, 100, per_class=10)
    with pytest.raises(ValueError, match="at least 2 classes"):
        balanced_subset(np.zeros(10, dtype=int), 5)


def test_subset_roundtrip_and_mismatch(tmp_path):
    chosen = balanced_subset(LABELS, 100, seed=3)
    save_subset(tmp_path / "labelled.json", chosen, LABELS, dataset="toy", seed=3)
    assert json.loads((tmp_path / "labelled.json").read_text())["seed"] == 3
    assert np.array_equal(load_subset(tmp_path / "labelled.json", LABELS), chosen)
    with pytest.raises(ValueError, match="another dataset"):
        load_subset(tmp_path / "labelled.json", np.roll(LABELS, 25))  # half of every class relabelled


def test_dual_sampler_covers_unlabelled_once_and_pairs_same_class():
    labelled = balanced_subset(LABELS, 20, seed=0)
    unlabelled = np.setdiff1d(np.arange(len(LABELS)), labelled)
    sampler = DualSampler(unlabelled, labelled, LABELS, batch_size=32, seed=7, drop_last=False)
    batches = list(sampler.epoch(0))
    assert len(batches) == len(sampler) == -(-len(unlabelled) // 32)
    seen = np.concatenate([b[0] for b in batches])
    assert np.array_equal(np.sort(seen), unlabelled)
    drawn, partners = np.concatenate([b[1] for b in batches]), np.concatenate([b[2] for b in batches])
    assert set(drawn) <= set(labelled) and set(partners) <= set(labelled)
    assert np.array_equal(LABELS[drawn], LABELS[partners]) and not np.any(drawn == partners)
    counts = np.bincount(drawn, minlength=len(LABELS))[labelled]
    assert counts.max() - counts.min() <= 1  # the tiled subset is used evenly


def test_dual_sampler_is_a_function_of_seed_and_epoch():
    sampler = DualSampler(np.arange(100, 200), np.arange(10), LABELS, batch_size=16, seed=1)
    first = [b[0].tolist() for b in sampler.epoch(3)]
    assert first == [b[0].tolist() for b in DualSampler(np.arange(100, 200), np.arange(10), LABELS, 16, seed=1).epoch(3)]
    assert first != [b[0].tolist() for b in sampler.epoch(4)]
    assert len(first) == 6  # drop_last


def test_dual_sampler_rejects_empty_parts():
    with pytest.raises(ValueError, match="at least one labelled"):
        DualSampler(np.arange(5), np.array([], dtype=int), LABELS, 2)
    with pytest.raises(ValueError, match="batch_size"):
        DualSampler(np.arange(5), np.arange(2), LABELS, 10)


CLASSES = ["cat", "dog", "frog"]


def test_labels_file_reads_names_ids_header_and_comments(tmp_path):
    from infomax.data.subsets import read_labels_file

    path = tmp_path / "labels.csv"
    path.write_text("image,class\n# a comment\n7,frog\n2, cat\n\n5,1\n")
    rows, labels = read_labels_file(path, CLASSES, 10)
    assert rows.tolist() == [2, 5, 7] and labels.tolist() == [0, 1, 2]


@pytest.mark.parametrize("text, message", [
    ("1,cat\n2,dog\n3,horse\n", "line 3: unknown class 'horse'; the classes are"),
    ("1,cat\n2,dog\n30,frog\n", "line 3: image '30' is not in the split"),
    ("1,cat\n2,dog\nx.png,frog\n", "image 'x.png' is not in the split"),
    ("1,cat\n2,dog\n3\n", "expected `image,class`"),
    ("1,cat\n2,dog\n", r"classes \['frog'\] without a labelled image"),
    ("1,cat\n2,dog\n3,frog\n1,dog\n", r"images \[1\] are listed more than once"),
])
def test_labels_file_errors_name_the_line_and_the_fix(tmp_path, text, message):
    from infomax.data.subsets import read_labels_file

    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_labels_file(path, CLASSES, 10)


def test_missing_labels_file_is_named(tmp_path):
    from infomax.data.subsets import read_labels_file

    with pytest.raises(FileNotFoundError, match="nope.csv does not exist"):
        read_labels_file(tmp_path / "nope.csv", CLASSES, 10)


def test_labels_files_may_name_images_by_file():
    from infomax.data.subsets import read_labels_file
    import tempfile
    from pathlib import Path

    files = ["train/cat/001.png", "train/cat/002.png", "train/dog/001.png", "train/dog/003.png"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "labels.csv"
        path.write_text("image,class\ntrain/cat/001.png,cat\ndog/001.png,dog\n003.png,dog\n")
        rows, labels = read_labels_file(path, ["cat", "dog"], 4, files)
        assert rows.tolist() == [0, 2, 3] and labels.tolist() == [0, 1, 1]
        path.write_text("001.png,cat\n002.png,cat\ndog/001.png,dog\n")  # 001.png names two files: ambiguous
        with pytest.raises(ValueError, match="image '001.png' is not in the split"):
            read_labels_file(path, ["cat", "dog"], 4, files)
