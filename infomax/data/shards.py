"""Tar shards in the webdataset layout: `SPLIT-000000.tar`, each holding `KEY.jpg` (or .png, ...) and
`KEY.cls` (the class index as text), with `classes.txt` (one class name per line) and `manifest.json`
(each shard's image count, size and SHA-256) beside them.

`pack(src, out, shard_size)` writes them from an image folder: shard by shard, each written to a
temporary name and renamed when whole, the manifest rewritten after each, so a killed pack rerun
skips the shards it finished. `shard_samples(paths)` indexes shards for the streaming source from
their tar headers (data/encoded.py); `check(location)` verifies the checksums and decodes every image.
"""
from __future__ import annotations

import glob
import io
import json
import os
import re
import sys
import tarfile
from pathlib import Path

import numpy as np

from ..runs.atomic import write_json
from .encoded import Samples, folder_samples
from .formats import IMAGE_SUFFIXES, DataFormatError
from .root import file_digest

MANIFEST, CLASSES = "manifest.json", "classes.txt"
_BRACES = re.compile(r"\{(\d+)\.\.(\d+)\}")


def is_pattern(location: str) -> bool:
    return any(c in location for c in "*?[") or bool(_BRACES.search(location))


def find_shards(location: str | Path, split: str = "train") -> list[Path]:
    """The shards of `split`: a pattern (`train-*.tar`, webdataset's `train-{000000..000146}.tar`) as given,
    or a folder's `SPLIT-*.tar`."""
    text = str(location)
    if is_pattern(text):
        found = sorted({Path(p) for p in _expand(text) if Path(p).is_file()})
        if not found:
            raise DataFormatError(f"the shard pattern {text!r} matches no file; check the path (pack shards with "
                                  "`infomax data pack SRC OUT`).")
        return found
    folder = Path(text)
    if not folder.is_dir():
        raise DataFormatError(f"{folder}: no such folder of shards (or give a pattern such as {folder}/train-*.tar).")
    found = sorted(folder.glob(f"{split}-*.tar"))
    if not found:
        raise DataFormatError(f"{folder}: no {split}-*.tar shards; it has {sorted(p.name for p in folder.glob('*.tar'))[:5] or 'none'}. "
                              "Pack a folder with `infomax data pack SRC OUT`.")
    return found


def _expand(pattern: str) -> list[str]:
    match = _BRACES.search(pattern)
    if not match:
        return glob.glob(pattern)
    low, high = match.groups()
    head, tail = pattern[:match.start()], pattern[match.end():]
    return [p for i in range(int(low), int(high) + 1) for p in _expand(f"{head}{i:0{len(low)}d}{tail}")]


def shard_samples(paths: list[Path]) -> Samples:
    """Every image of the shards, by the order of `paths` and within each by archive order."""
    files, file, offset, size, names, labels = [], [], [], [], [], []
    for index, path in enumerate(paths):
        entries = _entries(path)
        if not entries:
            raise DataFormatError(f"{path}: the shard holds no images; delete it (or repack with `infomax data pack`).")
        files.append(str(path))
        for key, (image, label) in entries.items():
            file.append(index)
            offset.append(image[1])
            size.append(image[2])
            names.append(f"{path}:{image[0]}")
            labels.append(label)
    unlabelled = [n for n, y in zip(names, labels) if y is None]
    if unlabelled and len(unlabelled) < len(names):
        raise DataFormatError(f"{unlabelled[0]} has no .cls label while other samples have one; add KEY.cls (the class "
                              "index as text) or repack the folder with `infomax data pack`.")
    y = np.full(len(names), -1, np.int64) if unlabelled else np.asarray(labels, np.int64)
    return Samples(files, np.asarray(file, np.int32), np.asarray(offset, np.int64), np.asarray(size, np.int64), names, y,
                   _classes(Path(paths[0]).parent, y), str(Path(paths[0]).parent))


def _entries(path: Path) -> dict[str, tuple[tuple[str, int, int], int | None]]:
    """{key: ((image member, data offset, size), label or None)} from one shard's headers (and its .cls files)."""
    images, labels = {}, {}
    try:
        with tarfile.open(path, "r:") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                key, _, ext = member.name.partition(".")
                if f".{ext.lower()}" in IMAGE_SUFFIXES:
                    images[key] = (member.name, member.offset_data, member.size)
                elif ext == "cls":
                    labels[key] = _label(archive.extractfile(member).read(), f"{path}:{member.name}")
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DataFormatError(f"{path}: not a readable uncompressed tar ({error}); repack it with `infomax data pack`.") from None
    orphans = sorted(set(labels) - set(images))
    if orphans:
        raise DataFormatError(f"{path}: {orphans[0]}.cls has no image beside it; repack the shard.")
    return {key: (images[key], labels.get(key)) for key in images}


def _label(raw: bytes, name: str) -> int:
    try:
        value = int(raw.decode().strip())
    except (UnicodeDecodeError, ValueError):
        raise DataFormatError(f"{name}: a .cls file holds the class index as text, got {raw[:20]!r}.") from None
    if value < 0:
        raise DataFormatError(f"{name}: class index {value} is negative.")
    return value


def _classes(folder: Path, labels: np.ndarray) -> list[str]:
    if not len(labels) or labels.min() < 0:
        return []
    listed = folder / CLASSES
    names = listed.read_text().splitlines() if listed.exists() else [str(i) for i in range(int(labels.max()) + 1)]
    if labels.max() >= len(names):
        raise DataFormatError(f"{listed}: names {len(names)} classes but a shard holds class {int(labels.max())}.")
    return names


# ------------------------------------------------------------------------------------------ packing


def pack(src: Path, out: Path, shard_size: int, splits: tuple[str, ...] = ("train", "val", "test", "unlabelled")) -> dict:
    """Shards of every split of the image folder `src` in `out`; returns the manifest."""
    from .imagefolder import MissingSplit

    if shard_size < 1:
        raise ValueError(f"--shard-size must be at least 1 image, got {shard_size}.")
    out.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(out)
    if manifest.get("shard_size", shard_size) != shard_size:
        raise ValueError(f"{out} holds shards of {manifest['shard_size']} images; pack into a new folder, or pass "
                         f"--shard-size {manifest['shard_size']} to finish that pack.")
    manifest.update({"format": "webdataset", "source": str(src), "shard_size": shard_size})
    packed = {}
    for split in splits:
        try:
            samples = folder_samples(src, split)
        except MissingSplit:
            continue
        if split == "train" and samples.classes:
            (out / CLASSES).write_text("".join(f"{c}\n" for c in samples.classes))
        packed[split] = _pack_split(samples, split, out, shard_size, manifest)
    if not packed:
        raise DataFormatError(f"{src}: no images to pack.")
    return manifest


def _pack_split(samples: Samples, split: str, out: Path, shard_size: int, manifest: dict) -> int:
    done = manifest.setdefault("splits", {}).setdefault(split, {})
    starts = range(0, len(samples), shard_size)
    for number, start in enumerate(starts):
        name = f"{split}-{number:06d}.tar"
        if name in done and (out / name).exists() and (out / name).stat().st_size == done[name]["bytes"]:
            continue
        rows = range(start, min(start + shard_size, len(samples)))
        done[name] = _write_shard(samples, rows, out / name)
        write_json(out / MANIFEST, manifest)
        print(f"[pack] {name}: {len(rows)} images ({number + 1}/{len(starts)} of {split})", file=sys.stderr, flush=True)
    return len(samples)


def _write_shard(samples: Samples, rows, target: Path) -> dict:
    temp = target.with_name(f".{target.name}.tmp")
    with open(temp, "wb") as handle:
        with tarfile.open(fileobj=handle, mode="w", format=tarfile.USTAR_FORMAT) as archive:
            for row in rows:
                key, ext = f"{row:09d}", Path(samples.names[row]).suffix.lower()
                _add(archive, f"{key}{ext}", samples.read(row))
                if samples.labels[row] >= 0:
                    _add(archive, f"{key}.cls", str(int(samples.labels[row])).encode())
        handle.flush()
        os.fsync(handle.fileno())
    digest = file_digest(temp, "sha256")
    os.replace(temp, target)
    return {"images": len(rows), "bytes": target.stat().st_size, "sha256": digest}


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0  # mtime 0: the same folder packs to the same bytes
    archive.addfile(info, io.BytesIO(data))


def _read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DataFormatError(f"{path}: damaged ({error}); delete it and the shards to pack again.") from None


# ------------------------------------------------------------------------------------------ checking


def check(location: str | Path, split: str = "train") -> dict:
    """Counts, classes, checksums against the manifest, and every image that does not decode."""
    from PIL import Image

    paths = find_shards(location, split)
    manifest = _read_manifest(paths[0].parent).get("splits", {}).get(split, {})
    mismatched = [p.name for p in paths if p.name in manifest and file_digest(p, "sha256") != manifest[p.name]["sha256"]]
    samples = shard_samples(paths)
    bad = []
    for i in range(len(samples)):
        try:
            with Image.open(io.BytesIO(samples.read(i))) as image:
                image.load()
        except Exception as error:  # noqa: BLE001 - any decoder failure is a bad file to report
            bad.append(f"{samples.names[i]}: {error}")
    counts = np.bincount(samples.labels[samples.labels >= 0], minlength=len(samples.classes)) if samples.classes else []
    return {"shards": len(paths), "images": len(samples), "classes": samples.classes,
            "per_class": {c: int(n) for c, n in zip(samples.classes, counts)}, "checksum_mismatch": mismatched,
            "unchecked": [p.name for p in paths if p.name not in manifest], "bad": bad}
