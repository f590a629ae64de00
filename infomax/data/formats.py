"""Readers for the on-disk formats datasets come in. Each returns uint8 images (N, H, W, C)
and int64 labels; none of them unpickles anything but plain arrays."""
from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


class DataFormatError(ValueError):
    """A file exists but is not what its format promises; the message names the file."""


def _open_maybe_gz(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST family), gzip or not: magic, dims, then big-endian data."""
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    try:
        with _open_maybe_gz(path) as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as error:
        raise DataFormatError(f"{path}: cannot read ({error}); the file is truncated or not gzip.") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in dtypes:
        raise DataFormatError(f"{path}: not an IDX file (bad magic number).")
    ndim, dtype = data[3], np.dtype(dtypes[data[2]])
    if len(data) < 4 + 4 * ndim:
        raise DataFormatError(f"{path}: the IDX header is cut short (truncated download?).")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = len(data) - 4 - 4 * ndim
    if body != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
        raise DataFormatError(f"{path}: header promises shape {shape} but the file holds {body} bytes of data (truncated download?).")
    return np.frombuffer(data, dtype=dtype, offset=4 + 4 * ndim).reshape(shape)


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Admits only what the CIFAR python batches contain: dicts of lists, bytes and numpy arrays."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only plain arrays are allowed")


def read_cifar_batch(raw: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10/100 python batch: 3072-byte rows (R, G, B planes of 32 x 32)."""
    try:
        batch = _ArrayOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
        labels = np.asarray(batch.get(b"labels", batch.get(b"fine_labels")), dtype=np.int64)
        images = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    except Exception as error:  # anything a damaged pickle can raise: name the file, never a traceback
        raise DataFormatError(f"{name}: not a CIFAR python batch ({type(error).__name__}: {error}); re-download it.") from None
    if labels.shape != (len(images),):
        raise DataFormatError(f"{name}: {len(images)} images but labels of shape {labels.shape}; re-download it.")
    return np.ascontiguousarray(images), labels


def read_cifar_meta(raw: bytes, key: bytes) -> list[str]:
    try:
        meta = _ArrayOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
        return [n.decode() for n in meta[key]]
    except Exception as error:
        raise DataFormatError(f"the CIFAR meta file: unreadable ({type(error).__name__}: {error}); re-download it.") from None


def decode_image(raw: bytes, name: str) -> np.ndarray:
    """RGB uint8 (H, W, 3); a file Pillow cannot read raises DataFormatError naming `name` and what is wrong."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw)) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except UnidentifiedImageError:
        raise DataFormatError(f"{name}: corrupt or unreadable image: not an image file (it starts {raw[:12]!r}, "
                              "which no image format Pillow reads does).") from None
    except (OSError, ValueError, SyntaxError, struct.error, Image.DecompressionBombError) as error:
        what = "truncated, the file ends early" if "runcated" in str(error) else "damaged"
        raise DataFormatError(f"{name}: corrupt or unreadable image: {what} ({error}).") from None


def _stack(images: list[np.ndarray], where: str) -> np.ndarray:
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise DataFormatError(f"{where}: images differ in size {sorted(shapes)[:3]}...; resize them to one size first.")
    return np.stack(images)


def read_image_tree(entries, where: str, split: str | None = None):
    """(relative path, bytes) pairs laid out as [split/]class/image -> images, labels, classes."""
    by_class: dict[str, list[tuple[str, bytes]]] = {}
    for rel, raw in entries:
        parts = Path(rel).parts
        if split is not None:
            if len(parts) < 3 or parts[0] != split:
                continue
            parts = parts[1:]
        if len(parts) != 2 or Path(parts[1]).suffix.lower() not in IMAGE_SUFFIXES:
            continue
        by_class.setdefault(parts[0], []).append((rel, raw()))
    if not by_class:
        raise DataFormatError(f"{where}: no images found as {'split/' if split else ''}class/image.jpg|png|webp.")
    classes = sorted(by_class)
    images, labels = [], []
    for label, name in enumerate(classes):
        for rel, raw in sorted(by_class[name]):
            images.append(decode_image(raw, f"{where}:{rel}"))
            labels.append(label)
    return _stack(images, where), np.asarray(labels, dtype=np.int64), classes


def tar_entries(path: Path):
    """(name, loader) pairs of the regular files in a tar(.gz), in archive order; each file's bytes are read
    as the archive is walked (a compressed archive cannot seek back), so the pairs hold them."""
    for name, read in tar_stream(path):
        data = read()
        yield name, (lambda data=data: data)


def tar_stream(path: Path):
    """(name, read) of each regular file in a tar(.gz) in archive order; `read()` gives the file's bytes and
    must be called before the next item is taken. Nothing is held, so an archive of any size streams."""
    def reader(archive, member):
        def read() -> bytes:
            try:
                return archive.extractfile(member).read()
            except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
                raise DataFormatError(f"{path}: cannot read {member.name} from the archive ({error}); re-download it.") from None
        return read

    try:
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                if member.isfile():
                    yield member.name.lstrip("./"), reader(archive, member)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise DataFormatError(f"{path}: cannot read the archive ({error}); re-download it.") from None


def tar_names(path: Path) -> list[str]:
    """The regular files' names in a tar(.gz), in archive order, without keeping their bytes."""
    return [name for name, _ in tar_stream(path)]


def folder_entries(root: Path):
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield str(path.relative_to(root)), path.read_bytes
