"""A user's own images: a folder or a tar of `class/image` files, optionally under split folders
(`train/`, `val/`, `test/`, `unlabelled/`), or a flat folder of images with no labels.

Images of different sizes need `image_size`: the shorter side is resized to it and the centre
cropped, so every image of the dataset has one shape. Reading lists the files only; the decoded
cache (`dataset.py`, `decode.py`) decodes them in worker processes.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .decode import EncodedImages
from .formats import IMAGE_SUFFIXES, DataFormatError, folder_entries, tar_names

SPLIT_FOLDERS = ("train", "val", "test", "unlabelled", "unlabeled")


class MissingSplit(DataFormatError):
    """The folder is fine but has no images for the asked split."""


LAYOUTS = "class/image.jpg, or train|val|test/class/image.jpg, or a flat folder of images (unlabelled)"


def read_imagefolder(location: Path, split: str = "train", image_size: int | None = None):
    """{split: (images, labels, classes, files)}: the images still encoded (EncodedImages, decoded by the
    cache writer), rows in sorted file order; unlabelled images get label -1 and classes []."""
    every = _image_names(location)
    chosen = sorted(_select_split(every, split, location))
    names, files = [rel for rel, _ in chosen], [path for _, path in chosen]
    images = EncodedImages(location, files, image_size)
    depth = {len(Path(rel).parts) for rel in names}
    if depth == {1}:
        return {split: (images, np.full(len(names), -1, dtype=np.int64), [], files)}
    if depth != {2}:
        raise DataFormatError(f"{location}: mixed folder depths; lay the images out as {LAYOUTS}.")
    labels, classes = _labelled(names, location, _train_classes(every, split))
    return {split: (images, labels, classes, files)}


def _train_classes(names: list[str], split: str) -> list[str] | None:
    """The class names of the train split, which every other split is labelled by (None: this is train)."""
    if split == "train":
        return None
    found = sorted({Path(rel).parts[1] for rel in names if len(Path(rel).parts) == 3 and Path(rel).parts[0] == "train"})
    return found or None


def _image_names(location: Path) -> list[str]:
    """Every image file's path relative to `location` (a folder or a tar), without reading any image."""
    if not location.exists():
        raise DataFormatError(f"{location}: no such folder or archive.")
    listing = tar_names(location) if location.is_file() else [rel for rel, _ in folder_entries(location)]
    names = [rel for rel in listing if Path(rel).suffix.lower() in IMAGE_SUFFIXES and not Path(rel).name.startswith(".")]
    if not names:
        raise DataFormatError(f"{location}: no images ({', '.join(IMAGE_SUFFIXES)}) found; expected {LAYOUTS}.")
    return names


def _select_split(names: list[str], split: str, location: Path) -> list[tuple[str, str]]:
    """(path within the split, path within `location`) of the split's images."""
    tops = {Path(rel).parts[0] for rel in names if len(Path(rel).parts) > 1}
    if not tops or not tops <= set(SPLIT_FOLDERS):
        if split != "train":
            raise MissingSplit(f"{location}: has no split folders, so its only split is 'train' (got {split!r}).")
        return [(rel, rel) for rel in names]
    wanted = {"unlabelled", "unlabeled"} if split in ("unlabelled", "unlabeled") else {split}
    chosen = [(str(Path(*Path(rel).parts[1:])), rel) for rel in names if Path(rel).parts[0] in wanted]
    if not chosen:
        raise MissingSplit(f"{location}: no {split!r} folder; it has {sorted(tops)}.")
    return chosen


def _labelled(names: list[str], location: Path, classes: list[str] | None) -> tuple[np.ndarray, list[str]]:
    """Labels of sorted `class/image` names by class name: the split's own folders, or `classes` (the train split's)."""
    found = sorted({Path(rel).parts[0] for rel in names})
    if classes is not None:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise DataFormatError(f"{location}: class folder(s) {unknown} are not in train/ ({classes}); a model trained on "
                                  "train/ cannot score them. Rename or remove them, or add them to train/.")
        missing = sorted(set(classes) - set(found))
        if missing:
            import sys

            print(f"[warning] {location}: no images of class(es) {missing} in this split; they are scored as absent.",
                  file=sys.stderr, flush=True)
    classes = classes or found
    index = {name: i for i, name in enumerate(classes)}
    return np.asarray([index[Path(rel).parts[0]] for rel in names], dtype=np.int64), classes


def save_png(image: np.ndarray) -> bytes:
    """PNG bytes of one (H, W, C) uint8 image; used to build fixtures and exports."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).save(buffer, format="PNG")
    return buffer.getvalue()
