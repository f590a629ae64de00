"""A split's images still encoded, for the streaming source: where each one's bytes lie, and its label.

Sample i is the byte range [offset, offset + size) of one file: an image file of a folder (the whole
file), a member of an uncompressed tar, or the image of a webdataset shard (data/shards.py). Reading a
sample is one positioned read, so any sample can be read by any worker in any order: the streaming
source (data/stream.py) shuffles over the whole split and resumes mid-epoch exactly.
"""
from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .formats import DataFormatError


@dataclass
class Samples:
    files: list[str]  # the files holding the samples
    file: np.ndarray  # int32: which of `files` holds sample i
    offset: np.ndarray  # int64: where its bytes start
    size: np.ndarray  # int64: how many; -1: the whole file
    names: list[str]  # what messages call it
    labels: np.ndarray  # int64, -1: unlabelled
    classes: list[str]
    location: str

    def __len__(self) -> int:
        return len(self.names)

    @property
    def labelled(self) -> bool:
        return bool(len(self.labels)) and bool((self.labels >= 0).all())

    def read(self, i: int) -> bytes:
        path, size = self.files[self.file[i]], int(self.size[i])
        if size < 0:
            return Path(path).read_bytes()
        fd = os.open(path, os.O_RDONLY)
        try:
            data = os.pread(fd, size, int(self.offset[i]))
        finally:
            os.close(fd)
        if len(data) != size:
            raise OSError(f"{path} ends before the end of {self.names[i]} (changed since it was indexed?)")
        return data


def folder_samples(location: Path, split: str) -> Samples:
    """An image folder's split (the layouts of data/imagefolder.py), or the same layout inside an uncompressed tar."""
    from .imagefolder import read_imagefolder

    images, labels, classes, members = read_imagefolder(location, split)[split]
    n = len(members)
    if location.is_dir():
        return Samples([str(location / m) for m in members], np.arange(n, dtype=np.int32), np.zeros(n, np.int64),
                       np.full(n, -1, np.int64), [f"{location}/{m}" for m in members], labels, classes, str(location))
    where = _tar_offsets(location)
    missing = [m for m in members if m not in where]
    if missing:
        raise DataFormatError(f"{location}: {missing[0]} is listed but not a plain member of the archive.")
    offset = np.asarray([where[m][0] for m in members], np.int64)
    size = np.asarray([where[m][1] for m in members], np.int64)
    return Samples([str(location)], np.zeros(n, np.int32), offset, size, [f"{location}:{m}" for m in members], labels,
                   classes, str(location))


def _tar_offsets(path: Path) -> dict[str, tuple[int, int]]:
    """{member name: (offset of its data, size)} of an uncompressed tar, from its headers alone."""
    try:
        with tarfile.open(path, "r:") as archive:
            return {m.name.lstrip("./"): (m.offset_data, m.size) for m in archive if m.isfile()}
    except tarfile.ReadError as error:
        raise DataFormatError(f"{path}: a compressed archive cannot be read at random, so it cannot stream ({error}). "
                              "Unpack it to a folder, or pack it into shards: infomax data pack SRC OUT.") from None
