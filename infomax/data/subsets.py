"""Labelled subsets and the TwinTURBO dual sampler.

`balanced_subset` draws the same number of images from every class, seeded, as the few-label
protocols do: TwinTURBO's 100 and 1000 labels, USB's 40/250/4000, and 1%/10% subsets.
`DualSampler` is TwinTURBO's dual dataset (twinturbo paper, Sec. 4): every unlabelled image once
per epoch, each paired with a labelled image drawn from the small subset duplicated to match.
Both are pure functions of their seed (and epoch), so a resumed run sees the same batches.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..runs.atomic import write_json


def per_class_counts(labels: np.ndarray, total: int | None = None, per_class: int | None = None,
                     fraction: float | None = None, seed: int = 0) -> np.ndarray:
    """How many images to take from each class; `total` that does not divide spreads the rest."""
    labels = np.asarray(labels)
    classes = np.unique(labels[labels >= 0])
    if (total is None) + (per_class is None) + (fraction is None) != 2:
        raise ValueError("give exactly one of `total`, `per_class` or `fraction`.")
    if len(classes) < 2:
        raise ValueError(f"a labelled subset needs at least 2 classes, the labels hold {len(classes)}.")
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise ValueError(f"`fraction` must be in (0, 1], got {fraction}.")
        total = max(len(classes), round(fraction * int((labels >= 0).sum())))
    if total is not None:
        if total < len(classes):
            raise ValueError(f"{total} labels cannot cover {len(classes)} classes; ask for at least one label per class.")
        counts = np.full(len(classes), total // len(classes))
        extra = np.random.default_rng(seed).permutation(len(classes))[: total % len(classes)]
        counts[extra] += 1
        return counts
    if per_class < 1:
        raise ValueError(f"`per_class` must be at least 1, got {per_class}.")
    return np.full(len(classes), per_class)


def balanced_subset(labels, total: int | None = None, *, per_class: int | None = None,
                    fraction: float | None = None, seed: int = 0) -> np.ndarray:
    """Sorted indices of a class-balanced subset of `labels` (ignoring unlabelled, -1).

    One permutation of all rows is drawn from `seed` and each class keeps its first rows in
    that order, so for one seed a smaller subset is contained in every larger one.
    """
    labels = np.asarray(labels)
    counts = per_class_counts(labels, total, per_class, fraction, seed)
    order = np.random.default_rng(seed).permutation(len(labels))
    chosen = []
    for c, n in zip(np.unique(labels[labels >= 0]), counts):
        members = order[labels[order] == c]
        if len(members) < n:
            raise ValueError(f"class {c} has {len(members)} images but {n} were asked for; ask for fewer labels.")
        chosen.append(members[:n])
    return np.sort(np.concatenate(chosen))


def save_subset(path: Path, indices: np.ndarray, labels: np.ndarray, **provenance) -> None:
    """The subset as JSON (indices into the split, their labels, how it was drawn), atomically."""
    record = {**provenance, "indices": [int(i) for i in indices], "labels": [int(labels[i]) for i in indices]}
    write_json(path, record, indent=None)


def load_subset(path: Path, labels: np.ndarray) -> np.ndarray:
    """Indices saved by `save_subset`, checked against the dataset they index."""
    record = json.loads(Path(path).read_text())
    indices = np.asarray(record["indices"], dtype=np.int64)
    if len(indices) and (indices.min() < 0 or indices.max() >= len(labels)):
        raise ValueError(f"{path}: indices exceed the dataset's {len(labels)} images; it was saved for another dataset.")
    if not np.array_equal(np.asarray(labels)[indices], np.asarray(record["labels"])):
        raise ValueError(f"{path}: the labels differ from the dataset's; it was saved for another dataset or split.")
    return indices


def _file_rows(files: list[str] | None) -> dict[str, int]:
    """Each file's row under its path, its path without the split folder, and its name where unique."""
    if not files:
        return {}
    rows: dict[str, int] = {}
    names: dict[str, list[int]] = {}
    for row, rel in enumerate(files):
        parts = Path(rel).parts
        rows[rel] = row
        rows.setdefault(str(Path(*parts[1:])) if len(parts) > 2 else rel, row)
        names.setdefault(parts[-1], []).append(row)
    rows.update({name: found[0] for name, found in names.items() if len(found) == 1 and name not in rows})
    return rows


def read_labels_file(path, classes: list[str], num_images: int, files: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(rows, labels) from a CSV of `image,class` lines, checked against the split it labels.

    `image` is a row of the training split (0-based, in the order `infomax data check` counts
    them) or, for an image folder, the image's file (`train/cat/001.png`, `cat/001.png`, or
    `001.png` where that name is unique); `class` is a class name or its integer id. A header
    line `image,class` is allowed, blank lines and lines starting with # are skipped. Every
    class needs at least one image.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labels file {path} does not exist; write one `image,class` line per labelled image.")
    ids = {name: i for i, name in enumerate(classes)}
    by_file = _file_rows(files)
    rows, labels, problems = [], [], []
    import csv

    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's byte-order mark is not part of the first cell
    except UnicodeDecodeError:
        raise ValueError(f"labels file {path} is not UTF-8 text; save it as CSV (UTF-8).") from None
    if "\0" in text:
        raise ValueError(f"labels file {path} holds binary data, not CSV text; save it as CSV (UTF-8).")
    for number, cells in enumerate(csv.reader(text.splitlines()), 1):
        parts = [part.strip() for part in cells]
        while len(parts) > 2 and parts[-1] == "":  # spreadsheets pad rows with empty cells
            parts.pop()
        line = ",".join(parts)
        if not line or line.startswith("#") or (number == 1 and line.replace(" ", "").lower() == "image,class"):
            continue
        if len(parts) != 2:
            problems.append(f"line {number}: expected `image,class`, got {line!r}")
            continue
        image, name = parts
        label = ids.get(name, int(name) if name.isdigit() and int(name) < len(classes) else None)
        if not image.isdigit() and image in by_file:
            image = str(by_file[image])
        if not image.isdigit() or int(image) >= num_images:
            kind = "rows 0..{}{}".format(num_images - 1, ", or a file of the split" if by_file else "")
            problems.append(f"line {number}: image {image!r} is not in the split ({kind})")
        elif label is None:
            problems.append(f"line {number}: unknown class {name!r}; the classes are {classes}")
        else:
            rows.append(int(image))
            labels.append(label)
    if problems:
        shown = "\n  ".join(problems[:10]) + (f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise ValueError(f"labels file {path}:\n  {shown}")
    rows_array, labels_array = np.asarray(rows, dtype=np.int64), np.asarray(labels, dtype=np.int64)
    values, counts = np.unique(rows_array, return_counts=True)
    repeated = values[counts > 1]
    if len(repeated):
        raise ValueError(f"labels file {path}: images {repeated[:10].tolist()} are listed more than once; keep one line each.")
    missing = [classes[c] for c in sorted(set(range(len(classes))) - set(labels))]
    if missing:
        raise ValueError(f"labels file {path}: {len(rows)} labels leave classes {missing} without a labelled image; "
                         f"label at least one image of each of the {len(classes)} classes.")
    order = np.argsort(rows_array)
    return rows_array[order], labels_array[order]

class DualSampler:
    """Batches of (unlabelled indices, labelled indices, same-class partners of the labelled).

    Epoch e permutes every unlabelled image once; the labelled subset is tiled to the same length
    and shuffled, so each labelled image appears about n_unlabelled / n_labelled times. Partners
    (for TwinTURBO's latent term) are another labelled image of the same class where one exists.
    """

    def __init__(self, unlabelled: np.ndarray, labelled: np.ndarray, labels: np.ndarray, batch_size: int, seed: int = 0, drop_last: bool = True):
        self.unlabelled, self.labelled = np.asarray(unlabelled), np.asarray(labelled)
        self.labels, self.batch_size, self.seed, self.drop_last = np.asarray(labels), batch_size, seed, drop_last
        if len(self.labelled) == 0 or len(self.unlabelled) == 0:
            raise ValueError("the dual sampler needs at least one labelled and one unlabelled image.")
        if batch_size < 1 or (drop_last and batch_size > len(self.unlabelled)):
            raise ValueError(f"batch_size {batch_size} must be between 1 and the {len(self.unlabelled)} unlabelled images.")

    def __len__(self) -> int:
        whole, rest = divmod(len(self.unlabelled), self.batch_size)
        return whole + (rest > 0 and not self.drop_last)

    def epoch(self, epoch: int):
        rng = np.random.default_rng([self.seed, epoch])
        unlabelled = self.unlabelled[rng.permutation(len(self.unlabelled))]
        repeats = -(-len(unlabelled) // len(self.labelled))
        labelled = rng.permutation(np.tile(self.labelled, repeats))[: len(unlabelled)]
        partners = self._partners(labelled, rng)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            stop = start + self.batch_size
            yield unlabelled[start:stop], labelled[start:stop], partners[start:stop]

    def _partners(self, labelled: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        partners = np.empty_like(labelled)
        for c in np.unique(self.labels[labelled]):
            pool = np.sort(self.labelled[self.labels[self.labelled] == c])
            rows = np.flatnonzero(self.labels[labelled] == c)
            picks = pool[rng.integers(0, len(pool), size=len(rows))]
            if len(pool) > 1:  # step past the image itself so the pair is two different images
                same = picks == labelled[rows]
                offset = rng.integers(1, len(pool), size=int(same.sum()))
                position = np.searchsorted(pool, picks[same])
                picks[same] = pool[(position + offset) % len(pool)]
            partners[rows] = picks
        return partners
