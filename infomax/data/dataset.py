"""`load_dataset(name, split)`: a named source, decoded once into memory-mapped arrays.

The decoded cache lives under `cache_root()/decoded/<name>-<split>-<key>/` and is keyed by the
source's location, size and modification time (every file's, for folders), the reader options
and a format version, so any change to the files re-decodes. It is written into a temp folder
and renamed, so a kill never leaves a half cache behind.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .root import DatasetNotFound, cache_root, data_root
from .sources import SOURCES, UNLABELLED, Source

CACHE_VERSION = 2  # 2: image-folder splits labelled by the train split's classes


@dataclass
class Dataset:
    """Images (N, H, W, C) uint8 (usually a read-only memmap), labels int64 (-1 = unlabelled)."""

    name: str
    split: str
    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    origin: str
    files: list[str] | None = None  # each row's file, relative to the data location, where the format has files

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    @property
    def labelled(self) -> bool:
        return bool(len(self.labels)) and bool((self.labels != UNLABELLED).all())

    def batch(self, index) -> torch.Tensor:
        """uint8 images (B, H, W, C) as a fresh tensor; `index` is a slice or integer indices."""
        return torch.from_numpy(np.array(self.images[index]))

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels[self.labels >= 0], minlength=self.num_classes)
        return {name: int(n) for name, n in zip(self.classes, counts)}


def get_source(name: str) -> Source:
    if name not in SOURCES:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(SOURCES))}.")
    return SOURCES[name]


def locate(name: str, root: str | os.PathLike | None = None, *, download: bool = False) -> Path:
    """The dataset's files under the data root, fetched first when asked and possible."""
    source, resolved = get_source(name), data_root(root)
    if name == "imagefolder" and root is None:
        raise DatasetNotFound("imagefolder reads your own images: pass --data-root DIR (a folder or a .tar of class/image files).")
    location = source.locate(resolved)
    if location is None and download and source.fetch is not None:
        source.fetch(resolved)
        location = source.locate(resolved)
    if location is None:
        raise DatasetNotFound(_missing_message(source, resolved))
    return location


def _missing_message(source: Source, root: Path) -> str:
    how = "run again with --download (needs network)" if source.fetch else "copy the files there"
    return (f"dataset {source.name!r} not found under {root}. Expected {source.expected}. "
            f"Put them in {root} (or pass --data-root DIR, or set INFOMAX_DATA), or {how}.")


def load_dataset(name: str, split: str = "train", data_root: str | os.PathLike | None = None, *,
                 download: bool = False, image_size: int | None = None, cache: bool = True) -> Dataset:
    source = get_source(name)
    split = "unlabelled" if split == "unlabeled" else split
    if split not in source.splits:
        raise ValueError(f"dataset {name!r} has splits {source.splits}, not {split!r}.")
    options = {"image_size": image_size} if image_size is not None else {}
    if options and name != "imagefolder":
        raise ValueError("image_size applies to imagefolder only; the other datasets have a fixed size.")
    location = locate(name, data_root, download=download)
    folder = cache_root() / "decoded" / f"{name}-{split}-{_cache_key(name, location, options)}"
    if cache and (folder / "meta.json").exists():
        return _open_cached(folder, name, split)
    decoded = source.read(location, split, **options)
    if not cache:
        images, labels, classes, *files = decoded[split]
        return Dataset(name, split, images, labels, classes, str(location), files[0] if files else None)
    for other, raw in decoded.items():
        _write_cached(cache_root() / "decoded" / f"{name}-{other}-{_cache_key(name, location, options)}", raw, str(location))
    return _open_cached(folder, name, split)


def _cache_key(name: str, location: Path, options: dict) -> str:
    digest = hashlib.sha256(json.dumps([CACHE_VERSION, name, str(location.resolve()), options]).encode())
    for path in [location] if location.is_file() else sorted(location.rglob("*")):
        if path.is_file():
            stat = path.stat()
            digest.update(f"{path.relative_to(location.parent)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def _write_cached(folder: Path, raw, origin: str) -> None:
    images, labels, classes, *files = raw
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it owner-only; a shared cache must stay readable
    try:
        np.save(tmp / "images.npy", np.ascontiguousarray(images, dtype=np.uint8))
        np.save(tmp / "labels.npy", np.asarray(labels, dtype=np.int64))
        meta = {"classes": list(classes), "origin": origin, "version": CACHE_VERSION, "files": files[0] if files else None}
        (tmp / "meta.json").write_text(json.dumps(meta))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _open_cached(folder: Path, name: str, split: str) -> Dataset:
    try:
        meta = json.loads((folder / "meta.json").read_text())
        images = np.load(folder / "images.npy", mmap_mode="r", allow_pickle=False)
        labels = np.load(folder / "labels.npy", allow_pickle=False)
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"the decoded cache {folder} is damaged ({error}); delete that folder and it is decoded again.") from None
    if len(images) != len(labels):
        raise ValueError(f"the decoded cache {folder} is damaged ({len(images)} images, {len(labels)} labels); delete that folder.")
    return Dataset(name, split, images, labels, meta["classes"], meta["origin"], meta.get("files"))
