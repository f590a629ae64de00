"""`infomax embed`: the pooled features of every image of a dataset or folder, for other tools.

OUT/features.safetensors holds `features` (N, D) float32 and `labels` (N,) int64 (-1: unlabelled),
OUT/files.txt one line per row (the image's file, or DATASET/SPLIT/ROW for a built-in dataset) and
OUT/embed.json what made them. Images go through the encoder's own preprocessing (the evaluation
resolution and normalisation) a batch at a time, and the features are streamed into the file, so
memory holds one batch whatever the dataset's size (streamed folders and shards included).
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import torch

from ..data.augment import center_resize, to_float_images
from ..data.dataset import load_dataset
from ..data.features import default_resolution
from ..models import build_encoder
from ..runs import rundir
from ..runs.atomic import replacing, write_atomic


def embed(encoder: str, dataset: str, out: Path, *, split: str = "test", data_root=None, resolution: int | None = None,
          batch_size: int = 256, overwrite: bool = False, download: bool = False, image_size: int | None = None,
          source: str = "auto", workers: int | None = None) -> dict:
    rundir.check_target(out, overwrite=overwrite)
    net = build_encoder(encoder).eval()
    data = load_dataset(dataset, split, data_root, download=download, image_size=image_size, source=source, workers=workers)
    if not len(data):
        raise ValueError(f"{dataset}/{split} holds no images; nothing to embed.")
    if not len(data):
        raise ValueError(f"{dataset}/{split} holds no images; nothing to embed.")
    resolution = resolution or default_resolution(net, data)
    out = rundir.prepare(out, overwrite=overwrite)
    n, labels, dim = len(data), np.asarray(data.labels, dtype=np.int64), net.dim
    with replacing(out / "features.safetensors") as tmp, open(tmp, "wb") as f:
        f.write(_header(n, dim, {"encoder": encoder, "dataset": dataset, "split": split, "resolution": str(resolution)}))
        start = f.tell()
        f.write(labels.tobytes())
        for _, _, images in data.batches(0, batch_size):
            with torch.no_grad():
                x = center_resize(to_float_images(images, channels=None), resolution)
                f.write(net(x).pooled.float().contiguous().numpy().astype("<f4", copy=False).tobytes())
        if f.tell() - start != 8 * n + 4 * n * dim:  # the header promised this many bytes: never leave a file that lies
            raise OSError(f"{dataset}/{split} gave {f.tell() - start} bytes of tensors for {n} images x {dim}; nothing was written.")
    files = data.files or [f"{dataset}/{split}/{row}" for row in range(n)]
    write_atomic(out / "files.txt", "".join(f"{name}\n" for name in files))
    summary = {"encoder": encoder, "dataset": dataset, "split": split, "images": n, "dim": dim, "resolution": resolution,
               "labelled": bool((labels >= 0).all()), "classes": list(data.classes),
               "unreadable": list(getattr(data.images, "bad", []))}  # streamed: embedded as black images, named here
    rundir.write_json(out / "embed.json", summary)
    return summary


def _header(n: int, dim: int, metadata: dict[str, str]) -> bytes:
    """The safetensors header for `labels` (n,) I64 then `features` (n, dim) F32, padded to 8 bytes; the
    tensors' bytes follow in that order (https://github.com/huggingface/safetensors, the format)."""
    labels_end = 8 * n
    header = {"__metadata__": metadata, "labels": {"dtype": "I64", "shape": [n], "data_offsets": [0, labels_end]},
              "features": {"dtype": "F32", "shape": [n, dim], "data_offsets": [labels_end, labels_end + 4 * n * dim]}}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text
