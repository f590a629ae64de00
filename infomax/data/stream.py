"""The streaming source: views decoded from the encoded files as training runs, for data too large to
decode once (an image folder, or webdataset shards: data/encoded.py, data/shards.py).

Torch DataLoader worker processes read each sample with one positioned read, decode it with Pillow
and cut every view's crop there: the boxes are drawn first from the image's header size, the JPEG
is decoded at the smallest scale (`draft`, 1/2 to 1/8) that still leaves every box at least its
view's side, and each box is resized straight to its view's side. A multi-crop view set gets all
its crops from that one decode. The uint8 crops go to the device, where the batched colour ops run
(views.photometric) on draws the worker made with the crops.

Every draw of a sample comes from a generator seeded by (seed, epoch, sample index), so the views do
not depend on the number of workers, ranks or nodes, and a resumed epoch skips its finished batches
and carries on exactly. Rows are shared over ranks as by the decoded source (batches.RankBatches).
An image that cannot be decoded is replaced by another drawn from the same generator, named once on
stderr and counted (`data_bad` in the metrics); the run stops only when the bad images pass
`max_bad_fraction` of the split.
"""
from __future__ import annotations

import io
import math
import sys
from typing import Callable, Iterator

import numpy as np
import torch

from ..config import DataConfig
from .augment import BOX_DRAWS, Draws, crop_box, to_float_images
from .batches import RankBatches
from .encoded import Samples
from .formats import DataFormatError
from .views import PHOTOMETRIC_DRAWS, ViewSet, photometric

TRIES = 16  # a bad image is replaced by another at most this many times per sample
CHECK_EVERY = 8  # batches between checks of the bad images against the limit (a collective under DDP)


class TooManyBadImages(DataFormatError):
    pass


VIEW_DRAWS = BOX_DRAWS + 1 + PHOTOMETRIC_DRAWS  # per view: its box, its flip, its colour ops


def sample_draws(seed: int, epoch: int, row: int) -> np.random.Generator:
    """The generator of every draw of sample `row` in `epoch`: the same in any worker, rank or batch."""
    return np.random.default_rng([seed, epoch, row])


class ViewDecoder(torch.utils.data.Dataset):
    """Item (epoch, row): (one uint8 (size, size, 3) crop per view, the (views, PHOTOMETRIC_DRAWS) colour
    draws, [(row, reason)] of the images it had to replace, the row it decoded: `row` or its stand-in)."""

    def __init__(self, samples: Samples, rows: np.ndarray, views: ViewSet, seed: int):
        self.samples, self.rows, self.views, self.seed = samples, rows, views, seed

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: tuple[int, int]):
        epoch, row = key
        rng = sample_draws(self.seed, epoch, row)
        bad = []
        for _ in range(TRIES):
            try:
                crops, draws = self.crops(row, rng.random((len(self.views), VIEW_DRAWS)))
                return crops, draws, bad, row
            except Exception as error:  # noqa: BLE001 - Pillow raises many types for a damaged file
                bad.append((row, f"{type(error).__name__}: {error}"))
                row = int(self.rows[rng.integers(len(self.rows))])
        raise TooManyBadImages(f"{TRIES} images in a row could not be decoded, the last {self.samples.names[row]} "
                               f"({bad[-1][1]}); check the data with `infomax data check`.")

    def crops(self, row: int, u: np.ndarray) -> tuple[list[np.ndarray], torch.Tensor]:
        """The crops of `row` from its (views, VIEW_DRAWS) uniforms `u`, and its colour draws."""
        from PIL import Image

        image = Image.open(io.BytesIO(self.samples.read(row)))
        width, height = image.size
        boxes = []
        for spec, draws in zip(self.views, u):
            if spec.scale is None:
                side = min(width, height)
                boxes.append(((width - side) / 2, (height - side) / 2, side, side))
            else:
                boxes.append(crop_box(draws[:BOX_DRAWS].tolist(), height, width, spec.scale, spec.ratio))
        shrink = min(min(w, h) / spec.size for (_, _, w, h), spec in zip(boxes, self.views))
        if shrink >= 2:  # JPEG: decode at 1/2, 1/4 or 1/8 scale while every box keeps >= its side
            image.draft("RGB", (math.ceil(width / shrink), math.ceil(height / shrink)))
        image = image.convert("RGB")
        fx, fy = image.width / width, image.height / height
        crops = []
        for (x0, y0, w, h), draws, spec in zip(boxes, u, self.views):
            crop = image.resize((spec.size, spec.size), Image.Resampling.BILINEAR,
                                box=(x0 * fx, y0 * fy, (x0 + w) * fx, (y0 + h) * fy))
            if draws[BOX_DRAWS] < spec.flip_p:
                crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            crops.append(np.asarray(crop, dtype=np.uint8))
        return crops, torch.from_numpy(u[:, BOX_DRAWS + 1:])


def collate(items):
    """The batch's crops stacked per view, in shared memory when in a worker (one copy, not two)."""
    crops, draws, bad, rows = zip(*items)
    views = []
    for v in range(len(crops[0])):
        out = torch.empty((len(crops), *crops[0][v].shape), dtype=torch.uint8)
        if torch.utils.data.get_worker_info() is not None:
            out.share_memory_()
        np.stack([c[v] for c in crops], out=out.numpy())
        views.append(out)
    return {"crops": views, "draws": torch.stack(draws), "bad": [b for found in bad for b in found],
            "rows": torch.tensor(rows, dtype=torch.int64)}


class StreamBatches(RankBatches):
    """Batches of views streamed from `samples` (see the module docstring); the batches protocol of the Loop."""

    def __init__(self, samples: Samples, rows: np.ndarray, views: ViewSet, batch_size: int, *, seed: int, rank: int = 0,
                 world_size: int = 1, device: torch.device | str = "cpu", workers: int = 0,
                 prefetch: int = DataConfig.prefetch, max_bad_fraction: float = DataConfig.max_bad_fraction,
                 total: Callable[[int], int] | None = None):
        """`total(count)`: the sum of `count` over ranks (a collective every rank calls alike), so every rank
        stops at the same batch when bad images pass the limit; None: one process."""
        super().__init__(rows, batch_size, seed=seed, rank=rank, world_size=world_size)
        self.samples, self.views, self.device = samples, views, torch.device(device)
        self.decoder = ViewDecoder(samples, self.rows, views, seed)
        self.workers, self.prefetch, self.max_bad_fraction = workers, prefetch, max_bad_fraction
        self.total = total or (lambda count: count)
        self.limit = int(max_bad_fraction * len(self.rows))  # more distinct bad images than this stop the run
        self.bad: dict[int, str] = {}

    def loader(self, epoch: int, skip: int = 0):
        batches = [[(epoch, int(r)) for r in batch] for batch in self.rows_of(epoch)[skip:]]
        return torch.utils.data.DataLoader(self.decoder, batch_sampler=batches, num_workers=self.workers,
                                           collate_fn=collate, pin_memory=self.device.type == "cuda",
                                           prefetch_factor=self.prefetch if self.workers else None)

    def epoch(self, epoch: int, skip: int = 0) -> Iterator[dict]:
        for index, raw in enumerate(self.loader(epoch, skip)):
            self._count(raw["bad"], check=index % CHECK_EVERY == 0)
            views = []
            for v, spec in enumerate(self.views):
                x = to_float_images(raw["crops"][v].to(self.device, non_blocking=True), channels=None)
                views.append(photometric(x, spec, Draws(raw["draws"][:, v])))
            yield {"views": views, "rows": raw["rows"]}

    def _count(self, bad: list[tuple[int, str]], check: bool) -> None:
        for row, reason in bad:
            if row not in self.bad:
                self.bad[row] = reason
                print(f"[data] skipped {self.samples.names[row]} ({reason}); {len(self.bad)} skipped so far",
                      file=sys.stderr, flush=True)
        if not check:
            return
        found = self.total(len(self.bad))
        if found > self.limit:
            first = next(iter(self.bad), None)
            named = f"{self.samples.names[first]} ({self.bad[first]})" if first is not None else "on another rank"
            raise TooManyBadImages(
                f"{found} of the {len(self.rows)} training images could not be decoded, more than "
                f"data.max_bad_fraction={self.max_bad_fraction}; the first: {named}. Fix or remove them (`infomax data check` lists every one), or raise "
                "data.max_bad_fraction; the last checkpoint is kept, so --resume goes on from it.")

    def log_values(self) -> dict[str, float]:
        return {"data_bad": float(len(self.bad))}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The bad rows found so far, padded with -1 to a size every rank shares (the checkpoint gathers them)."""
        rows = torch.full((self.limit + 1,), -1, dtype=torch.int64)
        found = sorted(self.bad)[: self.limit + 1]
        rows[: len(found)] = torch.tensor(found, dtype=torch.int64)
        return {"bad_rows": rows}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        rows = state.get("bad_rows", torch.zeros(0, dtype=torch.int64))
        self.bad = {int(r): "found before the resume" for r in rows if r >= 0}


# ------------------------------------------------------------------------------------------ choosing


def open_samples(data, split: str = "train") -> Samples:
    """The encoded images of `split` for data config `data`: webdataset shards or an image folder."""
    from pathlib import Path

    from .encoded import folder_samples
    from .shards import find_shards, shard_samples

    if data.dataset == "shards":
        if not data.data_root:
            raise ValueError("--dataset shards needs --data-root: the shards' folder or a pattern such as DIR/train-*.tar.")
        return shard_samples(find_shards(data.data_root, split))
    if data.dataset != "imagefolder":
        raise ValueError(f"data.source=stream reads image folders and shards; {data.dataset!r} is a built-in dataset that "
                         "decodes once into its cache: use data.source=decoded (or auto).")
    from .dataset import locate

    return folder_samples(Path(locate("imagefolder", data.data_root)), split)


def resolve_source(data, split: str = "train") -> tuple[str, Samples | None]:
    """(decoded or stream, the encoded samples when it streams), for data.source=auto: shards stream; an
    image folder streams when its decoded cache (image_size, else its first image's size, squared x 3 bytes
    per image) would pass data.decoded_max_gb."""
    if data.dataset == "shards" and data.source == "decoded":
        raise ValueError("shards are read by streaming; use data.source=stream (or auto).")
    if data.source == "stream" or data.dataset == "shards":
        return "stream", open_samples(data, split)
    if data.source == "decoded" or data.dataset != "imagefolder":
        return "decoded", None
    samples = open_samples(data, split)
    side = data.image_size or max(header_size(samples, 0))
    streams = len(samples) * side * side * 3 / 1e9 > data.decoded_max_gb
    return ("stream", samples) if streams else ("decoded", None)


def header_size(samples: Samples, row: int) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(samples.read(row))) as image:
        return image.size


def plain_images(samples: Samples, rows: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 (n, side, side, 3) plain views, the rows that decoded) of `rows`: the kNN monitor's few images."""
    from .decode import decode_resized

    images, kept = [], []
    for row in rows:
        try:
            images.append(decode_resized(samples.read(int(row)), samples.names[row], side))
            kept.append(row)
        except Exception as error:  # noqa: BLE001 - a monitor image that does not decode is left out, said once
            print(f"[data] the kNN monitor leaves out {samples.names[row]} ({error})", file=sys.stderr, flush=True)
    return np.stack(images) if images else np.zeros((0, side, side, 3), np.uint8), np.asarray(kept, np.int64)
