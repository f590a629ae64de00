"""`load_dataset(name, split)`: a named source, decoded once into memory-mapped arrays.

The decoded cache lives under `cache_root()/decoded/<name>-<split>-<key>/` and is keyed by the
source's location, size and modification time (every file's, for folders), the reader options
and a format version, so any change to the files re-decodes; a change while the files are being
decoded is caught by listing them again at the end, and nothing is cached.

A cache is built in `.<name>-<split>-<where>-<key>.partial/` (where: a hash of the location and
options) and renamed into place, so a kill never leaves a half cache behind. Its images are written
by `decode.py`: chunk by chunk, by worker processes, into the preallocated `images.npy`, each
finished chunk logged, so a rerun after a kill continues from the first chunk not done. An flock on
`.<name>-<split>-<key>.lock` lets one process build a given cache; another waits for it and says so.
Unreadable files remove the partial build (fixing them changes the key) and are all named at once.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import DataConfig
from .decode import EncodedImages, log_path, plan_path, resolve_workers, write_images
from .formats import DataFormatError
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

    @property
    def streamed(self) -> bool:
        """The images stay encoded (data/streamed.py) and are decoded batch by batch."""
        return hasattr(self.images, "batches")

    def batch(self, index) -> torch.Tensor:
        """uint8 images (B, H, W, C) as a fresh tensor; `index` is a slice or integer indices."""
        return torch.from_numpy(np.array(self.images[index]))

    def batches(self, start: int, size: int):
        """(first, stop, uint8 images) of every row from `start` on, in order, `size` at a time."""
        if self.streamed:
            yield from self.images.batches(start, size)
            return
        for first in range(start, len(self), size):
            stop = min(first + size, len(self))
            yield first, stop, self.batch(slice(first, stop))

    def subset(self, rows: np.ndarray, name: str) -> Dataset:
        """The images at `rows` (a streamed split stays encoded)."""
        images = self.images.take(rows) if self.streamed else self.images[rows]
        files = None if self.files is None else [self.files[r] for r in rows]
        return dataclasses.replace(self, name=name, images=images, labels=self.labels[rows], files=files)

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
                 download: bool = False, image_size: int | None = None, cache: bool = True,
                 workers: int | None = None, source: str = "auto", decoded_max_gb: float = DataConfig.decoded_max_gb,
                 max_bad_fraction: float = DataConfig.max_bad_fraction) -> Dataset:
    """`workers`: processes that decode image files (None: the machine's cores; 0: this one). `source` as
    data.source: auto streams shards, and an image folder whose decoded cache would pass `decoded_max_gb`."""
    split = "unlabelled" if split == "unlabeled" else split
    if source != "decoded" and name in ("imagefolder", "shards"):
        streamed = _streamed(name, split, data_root, image_size, workers, source, decoded_max_gb, max_bad_fraction)
        if streamed is not None:
            return streamed
    source = get_source(name)
    if split not in source.splits:
        raise ValueError(f"dataset {name!r} has splits {source.splits}, not {split!r}.")
    options = {"image_size": image_size} if image_size is not None else {}
    if options and name != "imagefolder":
        raise ValueError("image_size applies to imagefolder only; the other datasets have a fixed size.")
    workers = resolve_workers(workers)
    location = locate(name, data_root, download=download)
    if not cache:
        images, labels, classes, *files = source.read(location, split, **options)[split]
        return Dataset(name, split, _in_memory(images, workers), labels, classes, str(location), files[0] if files else None)
    entry = _Cache(name, location, options, _file_stats(location))
    folder = entry.folder(split)
    if (folder / "meta.json").exists():
        return _open_cached(folder, name, split)
    with _build_lock(folder, wait=True):
        if not (folder / "meta.json").exists():  # another process may have built it while this one waited
            _build_splits(entry, source, split, workers)
    return _open_cached(folder, name, split)


def _streamed(name, split, data_root, image_size, workers, source, decoded_max_gb, max_bad_fraction) -> Dataset | None:
    """The split as StreamedImages when data.source (auto, stream) says it streams, else None. Its side:
    `image_size`, else the shorter side of its first image."""
    from .stream import header_size, resolve_source
    from .streamed import StreamedImages

    data = DataConfig(dataset=name, data_root=None if data_root is None else str(data_root), image_size=image_size,
                      source=source, decoded_max_gb=decoded_max_gb, max_bad_fraction=max_bad_fraction)
    kind, samples = resolve_source(data, split)
    if kind != "stream":
        return None
    side = image_size or min(header_size(samples, 0))
    images = StreamedImages(samples, side, workers=resolve_workers(workers), max_bad_fraction=max_bad_fraction)
    prefix = samples.location.rstrip("/") + "/"
    files = [n[len(prefix):] if n.startswith(prefix) else n for n in samples.names]
    return Dataset(name, split, images, samples.labels, samples.classes, samples.location, files)


@dataclass(frozen=True)
class _Cache:
    """Where one source's decoded splits go: the key covers every file's size and modification time."""

    name: str
    location: Path
    options: dict
    stats: list[str]

    @property
    def key(self) -> str:
        digest = hashlib.sha256(json.dumps([CACHE_VERSION, self.name, str(self.location.resolve()), self.options]).encode())
        for line in self.stats:
            digest.update(line.encode())
        return digest.hexdigest()[:16]

    @property
    def where(self) -> str:
        """The same for every build from this location and options, whatever the files hold."""
        return hashlib.sha256(json.dumps([self.name, str(self.location.resolve()), self.options]).encode()).hexdigest()[:8]

    def folder(self, split: str) -> Path:
        return cache_root() / "decoded" / f"{self.name}-{split}-{self.key}"

    def partial(self, split: str) -> Path:
        return cache_root() / "decoded" / f".{self.name}-{split}-{self.where}-{self.key}.partial"


def _file_stats(location: Path) -> list[str]:
    """`relative path:size:mtime_ns` of the file, or of every file under the folder, sorted (a cache root inside
    the folder is not part of the data)."""
    lines, cache_dir = [], cache_root().resolve()
    for path in [location] if location.is_file() else sorted(location.rglob("*")):
        if path.is_file() and cache_dir not in path.resolve().parents:
            stat = path.stat()
            lines.append(f"{path.relative_to(location.parent)}:{stat.st_size}:{stat.st_mtime_ns}")
    return lines


def _build_splits(cache: _Cache, source: Source, split: str, workers: int) -> None:
    """Build `split`'s cache, and every other split the reader returned in the same pass whose cache is
    neither built nor being built (never waiting for it: two processes could each wait for the other)."""
    for other, raw in source.read(cache.location, split, **cache.options).items():
        if other == split:
            _build(cache, other, raw, workers)
            continue
        with _build_lock(cache.folder(other), wait=False) as owned:
            if owned and not (cache.folder(other) / "meta.json").exists():
                _build(cache, other, raw, workers)


def _build(cache: _Cache, split: str, raw, workers: int) -> None:
    images, labels, classes, *files = raw
    folder, partial = cache.folder(split), cache.partial(split)
    _remove_abandoned(cache, split)
    partial.mkdir(parents=True, exist_ok=True)
    try:
        write_images(images, partial / "images.npy", workers, label=f"{cache.name} {split}")
        _check_unchanged(cache)
    except DataFormatError:
        shutil.rmtree(partial, ignore_errors=True)  # fixing the files changes the key: this build is never resumed
        raise
    np.save(partial / "labels.npy", np.asarray(labels, dtype=np.int64))
    meta = {"classes": list(classes), "origin": str(cache.location), "version": CACHE_VERSION, "files": files[0] if files else None}
    (partial / "meta.json").write_text(json.dumps(meta))
    for record in (plan_path(partial / "images.npy"), log_path(partial / "images.npy")):
        record.unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(partial, folder)


def _check_unchanged(cache: _Cache) -> None:
    """The files are as they were when the key was made, or DataFormatError naming one that changed."""
    now = _file_stats(cache.location)
    if now == cache.stats:
        return
    before = {line.rsplit(":", 2)[0]: line for line in cache.stats}
    after = {line.rsplit(":", 2)[0]: line for line in now}
    changed = sorted(set(before.items()) ^ set(after.items()))[0][0]
    what = "added" if changed not in before else "removed" if changed not in after else "modified"
    raise DataFormatError(f"{cache.location.parent / changed} was {what} while the dataset was being decoded, so the "
                          "cache would not match the files; nothing was cached. Run again once nothing writes to the folder.")


def _remove_abandoned(cache: _Cache, split: str) -> None:
    """Partial builds of this location and options under an older key (the files changed since a build was
    killed) will never be resumed: remove those no process is building."""
    mine = cache.partial(split)
    for partial in mine.parent.glob(f".{cache.name}-{split}-{cache.where}-*.partial"):
        if partial == mine:
            continue
        key = partial.name.rsplit("-", 1)[1].split(".")[0]
        with _build_lock(mine.parent / f"{cache.name}-{split}-{key}", wait=False) as owned:
            if owned:
                shutil.rmtree(partial, ignore_errors=True)


@contextlib.contextmanager
def _build_lock(folder: Path, wait: bool):
    """Hold the flock that lets one process build `folder`; yields whether it is held (wait=False may not)."""
    import fcntl

    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                yield False
                return
            print(f"[data] another process is building the decoded cache {folder}; waiting for it to finish.",
                  file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _in_memory(images, workers: int) -> np.ndarray:
    """Encoded images decoded into an in-memory array (no cache), by the same writer."""
    if not isinstance(images, EncodedImages):
        return images
    with tempfile.TemporaryDirectory() as tmp:
        write_images(images, Path(tmp) / "images.npy", workers)
        return np.load(Path(tmp) / "images.npy")


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
