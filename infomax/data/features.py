"""The frozen-feature cache: a frozen backbone's outputs computed once, stored as fp16 memmaps.

Per image it stores view 0 (the plain view: centre resize to `resolution`) and K augmented
views drawn from `augment` (a ViewSpec; TwinTURBO's augmented view by default), the pooled
vector and optionally the tokens pooled to a `token_grid` x `token_grid` grid. The plain view
and the augmented views are two entries; each folder name is a hash of everything that changes
its numbers (weights fingerprint, encoder config, the dataset's bytes, resolution,
and for augmented views the view spec, seed, K and chunk size), so any change is a new entry.

Extraction is resumable: rows are written in chunks, and `progress.json` (replaced atomically
after the chunk's data is flushed) records how many are done. Views of chunk c are drawn from
a generator seeded by (seed, c), so a resumed extraction writes exactly what an uninterrupted
one would. `manifest.json` appears last and marks the cache complete.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..models.base import Encoder, fingerprint
from ..precision import native_precision
from .augment import center_resize, to_float_images
from .dataset import Dataset
from .root import cache_root
from .views import ViewSpec, get_view_set, make_view
from ..runs.atomic import write_json

FORMAT_VERSION = 1


@dataclass
class Features:
    """Views of every image: view 0 is the plain view, 1..K the augmented ones. `groups` holds
    (pooled (v, N, D), tokens (v, N, T, C) or None) per cache entry, fp16, memory-mapped."""

    groups: list[tuple[np.ndarray, np.ndarray | None]]
    labels: np.ndarray
    classes: list[str]
    manifest: dict
    folders: list[Path]

    @property
    def num_views(self) -> int:
        return sum(pooled.shape[0] for pooled, _ in self.groups)

    @property
    def dim(self) -> int:
        return self.groups[0][0].shape[-1]

    @property
    def token_dim(self) -> int | None:
        tokens = self.groups[0][1]
        return None if tokens is None else tokens.shape[-1]

    def __len__(self) -> int:
        return len(self.labels)

    def _locate(self, view: int) -> tuple[np.ndarray, np.ndarray | None, int]:
        for pooled, tokens in self.groups:
            if view < pooled.shape[0]:
                return pooled, tokens, view
            view -= pooled.shape[0]
        raise IndexError(f"view {view} out of range; the cache holds {self.num_views} views.")

    def pooled(self, view: int = 0) -> np.ndarray:
        pooled, _, v = self._locate(view)
        return pooled[v]

    def load(self, index, view: int = 0, device="cpu", tokens: bool = True) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(tokens, pooled) of rows `index` of one view as float32 tensors (tokens None if absent or not asked)."""
        pooled, stored, v = self._locate(view)
        as_tensor = lambda a: torch.from_numpy(np.asarray(a[v][index], dtype=np.float32)).to(device)  # noqa: E731
        return (None if stored is None or not tokens else as_tensor(stored)), as_tensor(pooled)

    def load_views(self, index: np.ndarray, views: np.ndarray, device="cpu", tokens: bool = True) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(tokens, pooled) of rows `index`, row i taken from view `views[i]`."""
        index, views = np.asarray(index), np.asarray(views)
        if index.shape != views.shape:
            raise ValueError(f"`index` and `views` must have one entry per row, got shapes {index.shape} and {views.shape}.")
        wanted, tokens, pooled = tokens, None, torch.empty(len(index), self.dim)
        for view in np.unique(views):
            rows = np.flatnonzero(views == view)
            part_tokens, pooled[rows] = self.load(index[rows], int(view), tokens=wanted)
            if part_tokens is not None:
                tokens = torch.empty(len(index), *part_tokens.shape[1:]) if tokens is None else tokens
                tokens[rows] = part_tokens
        return (None if tokens is None else tokens.to(device)), pooled.to(device)

    def in_memory(self) -> Features:
        """A copy held in RAM (fast random access for training heads)."""
        groups = [(np.array(p), None if t is None else np.array(t)) for p, t in self.groups]
        return dataclasses.replace(self, groups=groups)


def dataset_digest(dataset: Dataset) -> str:
    digest = hashlib.blake2b(digest_size=16)
    if dataset.streamed:  # what its decoded views depend on, not the views themselves (decoding all to hash them costs an epoch)
        digest.update(dataset.images.digest().encode())
    for start in range(0, 0 if dataset.streamed else len(dataset), 8192):
        digest.update(np.ascontiguousarray(dataset.images[start : start + 8192]).tobytes())
    digest.update(np.ascontiguousarray(dataset.labels).tobytes())
    return digest.hexdigest()


def base_spec(encoder: Encoder, dataset: Dataset, resolution: int) -> dict:
    return {
        "version": FORMAT_VERSION, "encoder": encoder.name, "encoder_config": encoder.config,
        "weights": fingerprint(encoder), "dataset": dataset.name, "split": dataset.split, "images": len(dataset),
        "data": dataset_digest(dataset), "resolution": resolution, "dtype": "float16",
    }


def extract_features(encoder: Encoder, dataset: Dataset, *, resolution: int | None = None, views: int = 1,
                     augment: ViewSpec | None = None, seed: int = 0, token_grid: int | None = 0, batch_size: int = 256,
                     device: str | torch.device = "cpu", cache_dir: Path | None = None, progress: bool = True,
                     precision: str = "32-true") -> Features:
    """Features of every image of `dataset`, from the cache when there, else computed and cached.

    The plain view and the K augmented views are separate cache entries, so evaluation (plain
    only) and fine-tuning (plain + augmented) share the plain one. token_grid: 0 stores no
    tokens, None the encoder's native grid, G an average-pooled G x G grid; an entry holding
    tokens also serves requests without them. precision: "32-true" (the default: evaluation measures in fp32,
    as every committed table did), or "auto": bf16 autocast where the device computes bf16 natively, 1.7x
    EfficientNet-Lite0's fp32 forward on this project's CPUs, which finetune's training cache takes
    (benchmarks/results/feature_precision.md: what it changes in kNN and linear accuracy).
    """
    resolution = resolution or default_resolution(encoder, dataset)
    if views < 0 or isinstance(views, bool):
        raise ValueError(f"`views` (augmented views per image) must be >= 0, got {views!r}.")
    if views and augment is None:
        augment = get_view_set("twinturbo", resolution)[-1]
    if token_grid and encoder.token_dim is None:
        raise ValueError(f"encoder {encoder.name!r} has no tokens; use token_grid=0.")
    base = base_spec(encoder, dataset, resolution)
    precision = native_precision(torch.device(device).type) if precision == "auto" else precision
    if precision not in ("32-true", "bf16-mixed"):
        raise ValueError(f"feature precision must be auto, 32-true or bf16-mixed, got {precision!r}.")
    if precision != "32-true":  # fp32 entries keep the keys they had before precision was a choice
        base["precision"] = precision
    specs = [{**base, "group": "plain", "views": 1}]
    if views:  # augmented views are drawn per chunk, so the chunk size is part of what they are
        specs.append({**base, "group": "augmented", "views": views, "seed": seed, "augment": dataclasses.asdict(augment), "chunk": batch_size})
    root = Path(cache_dir or cache_root() / "features")
    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{dataset.name}-{dataset.split}-{encoder.name}")  # hf:org/id has '/'
    folders, limits = [], []
    for spec in specs:
        key = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:20]
        stem = root / f"{label}-{spec['group']}-{key}"
        folder = _serving(stem, token_grid) or (_more_views(root, label, spec, token_grid) if spec["group"] == "augmented" else None)
        if folder is None:
            folder = stem.with_name(f"{stem.name}-grid{'native' if token_grid is None else token_grid}")
            with _locked(folder):  # a concurrent run extracting the same entry waits, then finds it complete
                if not _complete(folder):
                    _Extraction(encoder, dataset, {**spec, "token_grid": token_grid}, augment, folder, torch.device(device),
                                progress, batch_size).run()
        folders.append(folder)
        limits.append(spec["views"])
    return open_features(folders, keep_tokens=token_grid != 0, views=limits)


def default_resolution(encoder: Encoder, dataset: Dataset) -> int:
    """The side images are resized to when none is asked: 4x the dataset's own side in steps of 32
    (CIFAR's 32 -> 128, digits' 8 -> 32), at most the encoder's input size (224 for EfficientNet-Lite0).
    Blowing 8-pixel digits up to 224 costs 49x the compute of 32 and shows the backbone nothing more."""
    side = max(32, 32 * round(4 * min(dataset.image_shape[:2]) / 32))
    return min(side, encoder.input_size) if encoder.input_size else side


def _complete(folder: Path) -> bool:
    return (folder / "manifest.json").exists()


def _serving(stem: Path, token_grid: int | None) -> Path | None:
    """A complete entry of this spec with the asked tokens (any, when no tokens are asked), or None.

    Each token grid has its own entry (`<stem>-grid<G>`), so runs with different grids neither
    replace each other's features nor read a half-written one; `<stem>` is the older, unsuffixed name."""
    candidates = [stem.with_name(f"{stem.name}-grid{'native' if token_grid is None else token_grid}"), stem]
    if token_grid == 0:
        candidates += sorted(stem.parent.glob(f"{stem.name}-grid*"))
    for folder in candidates:
        if _complete(folder):
            stored = json.loads((folder / "manifest.json").read_text())["token_grid"]
            if token_grid == 0 or stored == token_grid:
                return folder
    return None


def _more_views(root: Path, label: str, spec: dict, token_grid: int | None) -> Path | None:
    """A complete augmented entry of this spec but with more views: the views of a chunk are drawn in
    order from one generator, so its first K views are exactly this spec's K, and it serves them."""
    wanted = {k: v for k, v in json.loads(json.dumps(spec, default=str)).items() if k != "views"}
    for folder in sorted(root.glob(f"{label}-augmented-*")):
        if not _complete(folder):
            continue
        stored = json.loads((folder / "manifest.json").read_text())
        same = {k: v for k, v in stored.items() if k in wanted} == wanted and stored.keys() >= wanted.keys()
        if same and stored["views"] >= spec["views"] and (token_grid == 0 or stored["token_grid"] == token_grid):
            return folder
    return None


@contextlib.contextmanager
def _locked(folder: Path):
    """An exclusive lock on `folder`'s entry (fcntl on a sibling .lock file) for the length of the block."""
    import fcntl

    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(folder.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_features(folders: list[Path], keep_tokens: bool = True, views: list[int] | None = None) -> Features:
    """`views`: how many views to read from each entry (default all)."""
    groups = []
    try:
        for folder, limit in zip(folders, views or [None] * len(folders)):
            tokens = folder / "tokens.npy"
            tokens = np.load(tokens, mmap_mode="r")[:limit] if keep_tokens and tokens.exists() else None
            groups.append((np.load(folder / "pooled.npy", mmap_mode="r")[:limit], tokens))
        manifest = json.loads((folders[0] / "manifest.json").read_text())
        labels = np.load(folders[0] / "labels.npy")
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"the feature cache entry {folder} is damaged ({error}); delete that folder and the features "
                         "are extracted again.") from None
    return Features(groups, labels, manifest["classes"], manifest, folders)


def pool_tokens(tokens: torch.Tensor, grid: int | None) -> torch.Tensor:
    """(N, T, C) row-major square grid -> (N, grid^2, C) by average pooling (None keeps T)."""
    if grid is None:
        return tokens
    side = round(tokens.shape[1] ** 0.5)
    if side * side != tokens.shape[1]:
        raise ValueError(f"{tokens.shape[1]} tokens are not a square grid; use token_grid=None or 0.")
    maps = tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], side, side)
    return F.adaptive_avg_pool2d(maps, grid).flatten(2).transpose(1, 2)


class _Extraction:
    def __init__(self, encoder, dataset, spec, augment, folder, device, progress, batch_size):
        self.encoder, self.dataset, self.spec, self.augment = encoder, dataset, spec, augment
        self.folder, self.device, self.progress = folder, device, progress
        self.batch_size = spec.get("chunk", batch_size)

    def run(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "spec.json").write_text(json.dumps(self.spec, indent=1, default=str))
        done = self._resume_point()
        was_training = self.encoder.training
        self.encoder.eval().to(self.device)
        try:
            self._extract_from(done)
        finally:
            self.encoder.train(was_training)
        np.save(self.folder / "labels.npy", self.dataset.labels)
        write_json(self.folder / "manifest.json", {**self.spec, "classes": self.dataset.classes, "complete": True})

    def _resume_point(self) -> int:
        """Rows already written by an interrupted extraction of exactly this spec, else 0."""
        progress = self.folder / "progress.json"
        if not progress.exists():
            return 0
        record = json.loads(progress.read_text())
        return record["done"] if record.get("token_grid", "missing") == self.spec["token_grid"] else 0

    def _outputs(self, first_batch: torch.Tensor, mode: str):
        out = self._forward(first_batch[:2], augmented=False, generator=None)
        n, v = len(self.dataset), self.spec["views"]
        arrays = {"pooled": np.lib.format.open_memmap(self.folder / "pooled.npy", mode=mode, dtype=np.float16, shape=(v, n, out[1].shape[1]))}
        if out[0] is not None:
            shape = (v, n, *out[0].shape[1:])
            arrays["tokens"] = np.lib.format.open_memmap(self.folder / "tokens.npy", mode=mode, dtype=np.float16, shape=shape)
        return arrays

    @torch.inference_mode()
    def _forward(self, images: torch.Tensor, augmented: bool, generator: torch.Generator | None):
        x = to_float_images(images.to(self.device), channels=None)
        x = make_view(x, self.augment, generator) if augmented else center_resize(x, self.spec["resolution"])
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.spec.get("precision") == "bf16-mixed"):
            pooled, tokens = self.encoder(x)
        grid = self.spec["token_grid"]
        tokens = None if grid == 0 or tokens is None else pool_tokens(tokens, grid).half().cpu()
        return tokens, pooled.half().cpu()

    def _extract_from(self, done: int) -> None:
        n = len(self.dataset)
        arrays = self._outputs(self.dataset.batch(slice(0, min(n, 2))), "r+" if done else "w+")
        meter = _Progress(n, done, self.progress, self.folder.name)
        for start, stop, images in self.dataset.batches(done, self.batch_size):
            generator = torch.Generator().manual_seed(hash_seed(self.spec.get("seed", 0), start // self.batch_size))
            for v in range(self.spec["views"]):
                tokens, pooled = self._forward(images, self.spec["group"] == "augmented", generator)
                arrays["pooled"][v, start:stop] = pooled.numpy()
                if "tokens" in arrays:
                    arrays["tokens"][v, start:stop] = tokens.numpy()
            for array in arrays.values():
                array.flush()
            write_json(self.folder / "progress.json", {"done": stop, "token_grid": self.spec["token_grid"]})
            meter.update(stop)
        meter.finish()


def hash_seed(*parts: int) -> int:
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:7], "little")


class _Progress:
    """One line of rate and ETA to stderr, at most every 2 seconds."""

    def __init__(self, total: int, done: int, enabled: bool, label: str):
        self.total, self.start_done, self.enabled, self.label = total, done, enabled, label
        self.started = self.last = time.perf_counter()

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if not self.enabled or now - self.last < 2:
            return
        self.last = now
        rate = (done - self.start_done) / max(now - self.started, 1e-9)
        eta = (self.total - done) / max(rate, 1e-9)
        print(f"[features] {done}/{self.total} images, {rate:.0f}/s, ETA {eta:.0f}s", file=sys.stderr, flush=True)

    def finish(self) -> None:
        if self.enabled:
            elapsed = time.perf_counter() - self.started
            print(f"[features] {self.total - self.start_done} images in {elapsed:.1f}s", file=sys.stderr, flush=True)
