"""Dataset sources, the decoded cache, `infomax data check`: real files where present, and
small files written here in each official format (so orientation and label maps are checked)."""
import gzip
import io
import json
import pickle
import struct
import tarfile
import time

import numpy as np
import pytest

from conftest import SHARED_DATA
from infomax.cli import main
from infomax.data import dataset as dataset_module
from infomax.data.dataset import load_dataset
from infomax.data.formats import DataFormatError
from infomax.data.imagefolder import save_png
from infomax.data.root import DatasetNotFound, download, file_digest

CIFAR_JPEG = SHARED_DATA / "cifar10-jpeg.tar.gz"
FASHION = SHARED_DATA / "fashion-mnist"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INFOMAX_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("INFOMAX_DATA", raising=False)


def _images(n, h=32, w=32, c=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, c), dtype=np.uint8)


@pytest.mark.skipif(not CIFAR_JPEG.exists(), reason=f"real CIFAR-10 not at {CIFAR_JPEG}")
def test_real_cifar10_from_jpeg_tar_and_fast_second_load():
    train = load_dataset("cifar10", "train", SHARED_DATA)
    assert len(train) == 50_000 and train.image_shape == (32, 32, 3)
    assert set(train.class_counts().values()) == {5000} and train.classes[0] == "airplane"
    started = time.perf_counter()
    test = load_dataset("cifar10", "test", SHARED_DATA)  # decoded in the same archive pass
    again = load_dataset("cifar10", "train", SHARED_DATA)
    assert time.perf_counter() - started < 2.0
    assert len(test) == 10_000 and isinstance(again.images, np.memmap)
    assert np.array_equal(again.batch(slice(0, 5)).numpy(), train.images[:5])


@pytest.mark.skipif(not FASHION.exists(), reason=f"real Fashion-MNIST not at {FASHION}")
def test_real_fashion_mnist_and_its_checksums(capsys):
    test = load_dataset("fashion-mnist", "test", SHARED_DATA)
    assert len(test) == 10_000 and test.image_shape == (28, 28, 1) and test.classes[-1] == "Ankle boot"
    assert main(["data", "check", "fashion-mnist", "--data-root", str(SHARED_DATA)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["splits"]["train"]["images"] == 60_000
    assert set(summary["checksums"].values()) == {"ok"} and len(summary["checksums"]) == 4


def _cifar_pickle_tar(path, variant=10):
    def blob(images, labels):
        key = b"labels" if variant == 10 else b"fine_labels"
        data = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
        return pickle.dumps({b"data": data, key: labels.tolist()})

    folder, members = ("cifar-10-batches-py", {}) if variant == 10 else ("cifar-100-python", {})
    images, labels = _images(12), np.arange(12) % 3
    if variant == 10:
        for i in range(5):
            members[f"data_batch_{i + 1}"] = blob(images[2 * i : 2 * i + 2], labels[2 * i : 2 * i + 2])
        members["test_batch"] = blob(images[10:], labels[10:])
        members["batches.meta"] = pickle.dumps({b"label_names": [b"cat", b"dog", b"emu"]})
    else:
        members["train"], members["test"] = blob(images[:10], labels[:10]), blob(images[10:], labels[10:])
        members["meta"] = pickle.dumps({b"fine_label_names": [b"cat", b"dog", b"emu"]})
    with tarfile.open(path, "w:gz") as tar:
        for name, raw in members.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return images, labels


@pytest.mark.parametrize("variant", [10, 100])
def test_cifar_python_tarball_keeps_pixel_order_and_labels(tmp_path, variant):
    images, labels = _cifar_pickle_tar(tmp_path / f"cifar-{variant}-python.tar.gz", variant)
    train = load_dataset(f"cifar{variant}", "train", tmp_path)
    test = load_dataset(f"cifar{variant}", "test", tmp_path)
    assert np.array_equal(train.images, images[:10]) and np.array_equal(test.labels, labels[10:])
    assert train.classes == ["cat", "dog", "emu"]


def _write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_mnist_idx_folder_and_missing_file_message(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    images, labels = _images(6, 28, 28, 1)[..., 0], np.arange(6) % 10
    _write_idx(folder / "train-images-idx3-ubyte.gz", images)
    _write_idx(folder / "train-labels-idx1-ubyte.gz", labels)
    data = load_dataset("mnist", "train", tmp_path)
    assert np.array_equal(data.images[..., 0], images) and np.array_equal(data.labels, labels)
    with pytest.raises(DataFormatError, match=r"t10k-images-idx3-ubyte\[.gz\] is missing"):
        load_dataset("mnist", "test", tmp_path)


def test_svhn_mat_maps_label_10_to_digit_0(tmp_path):
    from scipy.io import savemat

    (tmp_path / "svhn").mkdir()
    images = _images(4)
    savemat(tmp_path / "svhn" / "test_32x32.mat", {"X": images.transpose(1, 2, 3, 0), "y": np.array([[10], [1], [2], [10]])})
    data = load_dataset("svhn", "test", tmp_path)
    assert np.array_equal(data.images, images) and data.labels.tolist() == [0, 1, 2, 0]


def test_stl10_binary_is_column_major_and_unlabelled_split(tmp_path):
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    images = _images(3, 96, 96, 3)
    images.transpose(0, 3, 2, 1).tofile(folder / "train_X.bin")
    np.array([1, 10, 2], dtype=np.uint8).tofile(folder / "train_y.bin")
    images[:2].transpose(0, 3, 2, 1).tofile(folder / "unlabeled_X.bin")
    (folder / "class_names.txt").write_text("\n".join(f"class{i}" for i in range(10)))
    train = load_dataset("stl10", "train", tmp_path)
    assert np.array_equal(train.images, images) and train.labels.tolist() == [0, 9, 1]
    unlabelled = load_dataset("stl10", "unlabeled", tmp_path)
    assert unlabelled.labels.tolist() == [-1, -1] and not unlabelled.labelled


def _image_folder(root, layout):
    for rel, image in layout.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(save_png(image))


def test_imagefolder_labelled_split_and_unlabelled_forms(tmp_path):
    images = _images(4, 8, 8)
    _image_folder(tmp_path / "tree", {"train/b/1.png": images[0], "train/a/2.png": images[1], "test/a/3.png": images[2], "unlabelled/4.png": images[3]})
    train = load_dataset("imagefolder", "train", tmp_path / "tree")
    assert train.classes == ["a", "b"] and train.labels.tolist() == [0, 1]
    assert np.array_equal(train.images, images[[1, 0]])
    assert load_dataset("imagefolder", "unlabelled", tmp_path / "tree").labels.tolist() == [-1]
    with pytest.raises(DataFormatError, match="no 'val' folder"):
        load_dataset("imagefolder", "val", tmp_path / "tree")


def test_imagefolder_needs_image_size_for_mixed_sizes_and_names_corrupt_files(tmp_path):
    _image_folder(tmp_path / "mixed", {"a/1.png": _images(1, 8, 8)[0], "b/2.png": _images(1, 12, 16)[0]})
    with pytest.raises(DataFormatError, match="--image-size"):
        load_dataset("imagefolder", "train", tmp_path / "mixed")
    assert load_dataset("imagefolder", "train", tmp_path / "mixed", image_size=6).image_shape == (6, 6, 3)
    (tmp_path / "mixed" / "b" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataFormatError, match=r"b/broken.jpg: corrupt"):
        load_dataset("imagefolder", "train", tmp_path / "mixed", image_size=6)


def test_decoded_cache_is_invalidated_by_a_changed_file(tmp_path):
    _image_folder(tmp_path / "f", {"a/1.png": _images(1, 8, 8, seed=1)[0], "b/2.png": _images(1, 8, 8, seed=2)[0]})
    first = load_dataset("imagefolder", "train", tmp_path / "f")
    replacement = _images(1, 8, 8, seed=3)[0]
    _image_folder(tmp_path / "f", {"a/1.png": replacement})
    time.sleep(0.01)
    second = load_dataset("imagefolder", "train", tmp_path / "f")
    assert not np.array_equal(first.images[0], second.images[0]) and np.array_equal(second.images[0], replacement)


def test_interrupted_cache_write_leaves_nothing_half_written(tmp_path, monkeypatch):
    _image_folder(tmp_path / "f", {"a/1.png": _images(1, 8, 8)[0], "b/2.png": _images(1, 8, 8)[0]})
    real_save = np.save

    def dying_save(path, array):
        if str(path).endswith("labels.npy"):
            raise KeyboardInterrupt
        real_save(path, array)

    monkeypatch.setattr(dataset_module.np, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        load_dataset("imagefolder", "train", tmp_path / "f")
    decoded = tmp_path / "cache" / "decoded"
    assert not [p for p in decoded.iterdir() if not p.name.startswith(".")]  # only the kept partial build and its lock
    monkeypatch.setattr(dataset_module.np, "save", real_save)
    assert len(load_dataset("imagefolder", "train", tmp_path / "f")) == 2


def test_missing_dataset_lists_expected_files_and_the_fix(tmp_path):
    with pytest.raises(DatasetNotFound, match=r"cifar-10-python.tar.gz.*--data-root.*--download"):
        load_dataset("cifar10", "train", tmp_path)
    with pytest.raises(ValueError, match="known: .*fashion-mnist"):
        load_dataset("imagenet-22k")
    with pytest.raises(ValueError, match="splits"):
        load_dataset("digits", "validation")


def test_bundled_datasets_need_no_files():
    digits, mnist = load_dataset("digits", "test"), load_dataset("mnist-5k", "train")
    assert len(digits) == 355 and digits.image_shape == (8, 8, 1) and digits.images.max() == 255
    assert len(mnist) == 4000 and set(mnist.class_counts().values()) == {400}


def test_download_is_atomic_and_verified(tmp_path):
    payload = tmp_path / "payload.bin"
    payload.write_bytes(b"x" * 1000)
    good = download(payload.as_uri(), tmp_path / "out" / "a.bin", md5=file_digest(payload))
    assert good.read_bytes() == payload.read_bytes()
    with pytest.raises(DatasetNotFound, match="checksum mismatch"):
        download(payload.as_uri(), tmp_path / "out" / "b.bin", md5="0" * 32)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.bin"]


def test_data_check_reports_checksum_mismatch_and_missing_data(tmp_path, capsys):
    _cifar_pickle_tar(tmp_path / "cifar-10-python.tar.gz")  # readable, but not the published file
    assert main(["data", "check", "cifar10", "--data-root", str(tmp_path)]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["splits"]["train"]["images"] == 10 and "MISMATCH" in summary["checksums"]["cifar-10-python.tar.gz"]
    assert main(["data", "check", "svhn", "--data-root", str(tmp_path)]) == 1
    assert "svhn/{train,test,extra}_32x32.mat" in json.loads(capsys.readouterr().out)["error"]


def test_imagefolder_splits_are_labelled_by_the_train_classes_by_name(tmp_path, capsys):
    images = _images(6, 8, 8)
    _image_folder(tmp_path / "tree", {"train/cat/1.png": images[0], "train/dog/2.png": images[1], "train/eel/3.png": images[2],
                                      "test/dog/4.png": images[3], "test/eel/5.png": images[4]})
    test = load_dataset("imagefolder", "test", tmp_path / "tree")
    assert test.classes == ["cat", "dog", "eel"] and test.labels.tolist() == [1, 2]  # dog is dog, not train's "cat"
    assert "no images of class(es) ['cat']" in capsys.readouterr().err
    _image_folder(tmp_path / "other", {"train/cat/1.png": images[0], "train/dog/2.png": images[1], "test/fox/3.png": images[5]})
    with pytest.raises(DataFormatError, match=r"\['fox'\] are not in train/"):
        load_dataset("imagefolder", "test", tmp_path / "other")


def test_imagefolder_names_every_unreadable_image_by_its_full_path(tmp_path):
    images = _images(2, 8, 8)
    _image_folder(tmp_path / "tree", {"train/a/1.png": images[0], "train/b/2.png": images[1], "test/a/3.png": images[0]})
    for rel in ("train/a/bad1.png", "train/b/bad2.jpg"):
        (tmp_path / "tree" / rel).write_bytes(b"not an image")
    with pytest.raises(DataFormatError, match=r"2 unreadable image\(s\)(.|\n)*train/a/bad1.png(.|\n)*train/b/bad2.jpg"):
        load_dataset("imagefolder", "train", tmp_path / "tree")
