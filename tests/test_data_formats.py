"""On-disk format readers against real files (../shared/data) and small files made here."""
import gzip
import hashlib
import io
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

from conftest import SHARED_DATA
from infomax.data.formats import DataFormatError, read_cifar_batch, read_idx, read_image_tree, tar_entries

FASHION = SHARED_DATA / "fashion-mnist"


@pytest.mark.skipif(not FASHION.exists(), reason=f"real Fashion-MNIST not at {FASHION}")
def test_read_idx_real_fashion_mnist_matches_the_data_readme_md5():
    labels = read_idx(FASHION / "t10k-labels-idx1-ubyte.gz")
    images = read_idx(FASHION / "t10k-images-idx3-ubyte.gz")
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert np.bincount(labels).tolist() == [1000] * 10
    raw = gzip.open(FASHION / "t10k-labels-idx1-ubyte.gz").read()
    assert hashlib.md5(raw).hexdigest() == "15d484375f8d13e6eb1aabb0c3f46965"  # ../shared/data/README.md, decompressed


def test_read_idx_rejects_truncated_and_foreign_files(tmp_path):
    good = bytes([0, 0, 8, 1]) + (5).to_bytes(4, "big") + bytes(range(5))
    (tmp_path / "ok.idx").write_bytes(good)
    assert read_idx(tmp_path / "ok.idx").tolist() == [0, 1, 2, 3, 4]
    (tmp_path / "short.idx").write_bytes(good[:-2])
    with pytest.raises(DataFormatError, match="truncated"):
        read_idx(tmp_path / "short.idx")
    (tmp_path / "text.idx").write_bytes(b"hello world")
    with pytest.raises(DataFormatError, match="magic"):
        read_idx(tmp_path / "text.idx")


def test_cifar_batch_reader_loads_arrays_and_refuses_code():
    images = np.random.default_rng(0).integers(0, 255, (4, 3072), dtype=np.uint8)
    raw = pickle.dumps({b"data": images, b"labels": [1, 2, 3, 4]})
    x, y = read_cifar_batch(raw, "batch")
    assert x.shape == (4, 32, 32, 3) and y.tolist() == [1, 2, 3, 4]
    assert (x[0, :, :, 0].reshape(-1) == images[0, :1024]).all()

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with pytest.raises(DataFormatError, match="refusing"):
        read_cifar_batch(pickle.dumps({b"data": Evil()}), "evil")


def _png(colour):
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_image_tree_from_tar_names_corrupt_files(tmp_path):
    path = tmp_path / "tree.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in (("train/cat/1.png", _png("red")), ("train/dog/2.png", _png("blue")), ("test/cat/3.png", _png("red"))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    images, labels, classes = read_image_tree(tar_entries(path), str(path), split="train")
    assert classes == ["cat", "dog"] and labels.tolist() == [0, 1] and images.shape == (2, 4, 4, 3)
    assert images[1, 0, 0].tolist() == [0, 0, 255]
    with tarfile.open(tmp_path / "bad.tar", "w") as tar:
        info = tarfile.TarInfo("train/cat/broken.jpg")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"notjp"))
    with pytest.raises(DataFormatError, match="broken.jpg"):
        read_image_tree(tar_entries(tmp_path / "bad.tar"), "bad.tar", split="train")
