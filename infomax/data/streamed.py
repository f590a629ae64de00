"""A split that stays encoded, seen as an array of plain views: what evaluation and the feature caches
read when the data streams (shards, or a folder whose decoded cache would be too large).

`StreamedImages` stands where a decoded cache's uint8 array stands in a `Dataset`: indexing decodes
those rows (the shorter side resized to `side`, centre cropped: decode.decode_resized, as the decoded
cache does), and `batches` decodes the rows in order in DataLoader worker processes, a few batches
ahead. Memory holds a few batches, never the split. An image that does not decode becomes a black
image, named once and counted; past `max_bad_fraction` of the split, reading stops with the file named.
"""
from __future__ import annotations

import hashlib
import os
import sys
from typing import Iterator

import numpy as np
import torch

from .encoded import Samples
from .formats import DataFormatError


class _PlainRows(torch.utils.data.Dataset):
    """Item i: (the plain view of sample rows[i], the reason it failed to decode or "")."""

    def __init__(self, samples: Samples, rows: np.ndarray, side: int):
        self.samples, self.rows, self.side = samples, rows, side

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[np.ndarray, str]:
        from .decode import decode_resized

        row = int(self.rows[i])
        try:
            return decode_resized(self.samples.read(row), self.samples.names[row], self.side), ""
        except Exception as error:  # noqa: BLE001 - any undecodable file is counted, whatever Pillow raised
            return np.zeros((self.side, self.side, 3), np.uint8), f"{self.samples.names[row]} ({error})"


def _stack(items: list[tuple[np.ndarray, str]]) -> tuple[torch.Tensor, list[str]]:
    return torch.from_numpy(np.stack([image for image, _ in items])), [bad for _, bad in items if bad]


class StreamedImages:
    """uint8 (N, side, side, 3) plain views of `samples` (rows `rows`, default all), decoded when read."""

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, samples: Samples, side: int, rows: np.ndarray | None = None, *, workers: int = 0,
                 max_bad_fraction: float = 0.001):
        self.samples, self.side, self.workers, self.max_bad_fraction = samples, side, workers, max_bad_fraction
        self.rows = np.arange(len(samples), dtype=np.int64) if rows is None else np.asarray(rows, np.int64)
        self.bad: list[str] = []  # each undecodable image, named once

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.rows), self.side, self.side, 3)

    def __len__(self) -> int:
        return len(self.rows)

    def __array__(self, *args, **kwargs):
        raise TypeError(f"a streamed split ({len(self)} images of {self.samples.location}) is read in batches "
                        "(StreamedImages.batches or an index), never decoded whole.")

    def __getitem__(self, index) -> np.ndarray:
        rows = self.rows[index]
        part = _PlainRows(self.samples, np.atleast_1d(rows), self.side)
        images, bad = _stack([part[i] for i in range(len(part))])
        self._count(bad)
        return images.numpy()[0] if np.ndim(rows) == 0 else images.numpy()

    def take(self, rows) -> StreamedImages:
        """The images at `rows` of this one, still encoded."""
        return StreamedImages(self.samples, self.side, self.rows[np.asarray(rows)], workers=self.workers,
                              max_bad_fraction=self.max_bad_fraction)

    def batches(self, start: int, size: int) -> Iterator[tuple[int, int, torch.Tensor]]:
        """(first, stop, uint8 images) of rows start.. in order, `size` at a time, decoded by the workers ahead."""
        part = _PlainRows(self.samples, self.rows[start:], self.side)
        loader = torch.utils.data.DataLoader(part, batch_size=size, num_workers=self.workers, collate_fn=_stack,
                                             prefetch_factor=2 if self.workers else None)
        first = start
        for images, bad in loader:
            self._count(bad)
            yield first, first + len(images), images
            first += len(images)

    def digest(self) -> str:
        """What the decoded views depend on: each sample's file, place and size, each file's size and
        modification time, and the side (the feature caches key on it instead of the decoded bytes)."""
        digest = hashlib.blake2b(repr(("plain", self.side, self.samples.location)).encode(), digest_size=16)
        for path in self.samples.files:
            stat = os.stat(path)
            digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
        for array in (self.rows, self.samples.file[self.rows], self.samples.offset[self.rows], self.samples.size[self.rows]):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()

    def _count(self, bad: list[str]) -> None:
        for reason in bad:
            if reason not in self.bad:
                self.bad.append(reason)
                print(f"[data] {reason}: read as a black image", file=sys.stderr, flush=True)
        if len(self.bad) > self.max_bad_fraction * len(self):
            raise DataFormatError(
                f"{len(self.bad)} of the {len(self)} images of {self.samples.location} could not be decoded, more than "
                f"max_bad_fraction={self.max_bad_fraction}; the first: {self.bad[0]}. Fix or remove them "
                "(`infomax data check` lists every one), or raise data.max_bad_fraction.")
