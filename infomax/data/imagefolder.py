"""A user's own images: a folder or a tar of `class/image` files, optionally under split folders
(`train/`, `val/`, `test/`, `unlabelled/`), or a flat folder of images with no labels.

Images of different sizes need `image_size`: the shorter side is resized to it and the centre
cropped, so every image of the dataset has one shape.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .formats import IMAGE_SUFFIXES, DataFormatError, decode_image, folder_entries, tar_entries

SPLIT_FOLDERS = ("train", "val", "test", "unlabelled", "unlabeled")


class MissingSplit(DataFormatError):
    """The folder is fine but has no images for the asked split."""


LAYOUTS = "class/image.jpg, or train|val|test/class/image.jpg, or a flat folder of images (unlabelled)"


def read_imagefolder(location: Path, split: str = "train", image_size: int | None = None):
    """{split: (images, labels, classes)}; unlabelled images get label -1 and classes []."""
    every = _image_entries(location)
    entries = _select_split(every, split, location)
    tops = {Path(rel).parts[0] for rel, _ in every if len(Path(rel).parts) > 1}
    prefix = f"{split}/" if tops and tops <= set(SPLIT_FOLDERS) else ""  # the split folder the entries came from
    depth = {len(Path(rel).parts) for rel, _ in entries}
    if depth == {1}:
        images = _decode_all(sorted(entries), location, prefix, image_size)
        files = [prefix + rel for rel, _ in sorted(entries)]
        return {split: (_stack(images, location), np.full(len(images), -1, dtype=np.int64), [], files)}
    if depth != {2}:
        raise DataFormatError(f"{location}: mixed folder depths; lay the images out as {LAYOUTS}.")
    return {split: _labelled(entries, location, image_size, _train_classes(every, split, location), prefix)}


def _train_classes(entries, split: str, location: Path) -> list[str] | None:
    """The class names of the train split, which every other split is labelled by (None: this is train)."""
    if split == "train":
        return None
    names = sorted({Path(rel).parts[1] for rel, _ in entries if len(Path(rel).parts) == 3 and Path(rel).parts[0] == "train"})
    return names or None


def _image_entries(location: Path):
    if not location.exists():
        raise DataFormatError(f"{location}: no such folder or archive.")
    listing = tar_entries(location) if location.is_file() else folder_entries(location)
    entries = [(rel, load) for rel, load in listing if Path(rel).suffix.lower() in IMAGE_SUFFIXES and not Path(rel).name.startswith(".")]
    if not entries:
        raise DataFormatError(f"{location}: no images ({', '.join(IMAGE_SUFFIXES)}) found; expected {LAYOUTS}.")
    return entries


def _select_split(entries, split: str, location: Path):
    tops = {Path(rel).parts[0] for rel, _ in entries if len(Path(rel).parts) > 1}
    if not tops or not tops <= set(SPLIT_FOLDERS):
        if split != "train":
            raise MissingSplit(f"{location}: has no split folders, so its only split is 'train' (got {split!r}).")
        return entries
    wanted = {"unlabelled", "unlabeled"} if split in ("unlabelled", "unlabeled") else {split}
    chosen = [(str(Path(*Path(rel).parts[1:])), load) for rel, load in entries if Path(rel).parts[0] in wanted]
    if not chosen:
        raise MissingSplit(f"{location}: no {split!r} folder; it has {sorted(tops)}.")
    return chosen


def _labelled(entries, location: Path, image_size: int | None, classes: list[str] | None, prefix: str):
    """Labels by class name: the split's own folders, or `classes` (the train split's) when given."""
    found = sorted({Path(rel).parts[0] for rel, _ in entries})
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
    entries = sorted(entries)
    images = _decode_all(entries, location, prefix, image_size)
    labels = [index[Path(rel).parts[0]] for rel, _ in entries]
    return _stack(images, location), np.asarray(labels, dtype=np.int64), classes, [prefix + rel for rel, _ in entries]


def _decode_all(entries, location: Path, prefix: str, image_size: int | None) -> list[np.ndarray]:
    """Every image decoded; all unreadable files are reported at once, by their path in `location`."""
    images, bad = [], []
    for rel, load in entries:
        try:
            images.append(_decode(load(), f"{location}/{prefix}{rel}", image_size))
        except DataFormatError as error:
            bad.append(str(error))
    if bad:
        more = f"\n  ... and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise DataFormatError(f"{len(bad)} unreadable image(s); remove or replace them:\n  " + "\n  ".join(bad[:10]) + more)
    return images


def _decode(raw: bytes, name: str, image_size: int | None) -> np.ndarray:
    if image_size is None:
        return decode_image(raw, name)
    from PIL import Image

    image = Image.fromarray(decode_image(raw, name))
    scale = image_size / min(image.size)
    width, height = max(image_size, round(image.width * scale)), max(image_size, round(image.height * scale))
    image = image.resize((width, height), Image.Resampling.BICUBIC)
    left, top = (width - image_size) // 2, (height - image_size) // 2
    return np.asarray(image.crop((left, top, left + image_size, top + image_size)), dtype=np.uint8)


def _stack(images: list[np.ndarray], location: Path) -> np.ndarray:
    shapes = sorted({im.shape for im in images})
    if len(shapes) > 1:
        raise DataFormatError(f"{location}: images differ in size ({shapes[0]} ... {shapes[-1]}); pass --image-size N to resize them.")
    return np.stack(images)


def save_png(image: np.ndarray) -> bytes:
    """PNG bytes of one (H, W, C) uint8 image; used to build fixtures and exports."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).save(buffer, format="PNG")
    return buffer.getvalue()
