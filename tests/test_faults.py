"""Faults a user's machine will produce: a full disk mid-checkpoint, damaged cache files, spreadsheet
labels files. Each ends in a clear message (or a correct load), never a traceback or a corrupt file."""
import errno

import numpy as np
import torch
import pytest

from infomax.cli import main
from infomax.data.dataset import Dataset
from infomax.data.features import extract_features
from infomax.data.subsets import read_labels_file
from infomax.models import build_encoder
from infomax.runs import atomic

TINY = ["--dataset", "digits", "--batch-size", "64", "--set", "model.options.width=8", "--set", "method.projector_hidden=32",
        "--set", "method.projector_out=32", "--set", "run.knn_every=0", "--set", "data.holdout=200"]


def test_a_full_disk_during_a_checkpoint_keeps_the_last_one_and_says_so(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert main(["pretrain", "--method", "smi", *TINY, "--max-steps", "2", "--set", "schedule.decay=constant", "--out", str(out)]) == 0
    before = (out / "state.safetensors").read_bytes()
    real = atomic.save_tensors

    def full(path, tensors, metadata=None):
        if path.name == "state.safetensors":
            with atomic.replacing(path) as tmp:
                tmp.write_bytes(b"partial")
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, tensors, metadata)

    monkeypatch.setattr("infomax.runs.checkpoint.save_tensors", full)
    assert main(["pretrain", "--resume", "--max-steps", "4", "--out", str(out)]) == 1
    assert "the disk is full" in capsys.readouterr().err
    assert (out / "state.safetensors").read_bytes() == before  # the previous checkpoint, whole
    assert not [p for p in out.iterdir() if p.name.startswith(".state")]  # no temp file left behind
    monkeypatch.setattr("infomax.runs.checkpoint.save_tensors", real)
    assert main(["pretrain", "--resume", "--max-steps", "4", "--out", str(out)]) == 0


def test_a_damaged_feature_cache_entry_is_named_with_the_fix(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(20, 16, 16, 3), dtype=np.uint8)
    toy = Dataset("toy", "train", images, np.arange(20) % 2, ["a", "b"], "memory")
    options = dict(resolution=16, views=0, cache_dir=tmp_path, progress=False, token_grid=0)
    encoder = build_encoder("convnet", width=4)
    features = extract_features(encoder, toy, **options)
    pooled = features.folders[0] / "pooled.npy"
    pooled.write_bytes(pooled.read_bytes()[:200])  # truncated, as by a full disk or a copy cut short
    with pytest.raises(ValueError, match=f"{features.folders[0].name} is damaged.*delete that folder"):
        extract_features(encoder, toy, **options)


@pytest.mark.parametrize("text", [
    "\ufeffimage,class\n0,a\n1,b\n",  # Excel's UTF-8 byte-order mark
    '"image","class"\n"0","a"\n"1","b"\n',  # quoted cells
    "image,class,,\n0,a,,\n1,b,,\n",  # rows padded with empty cells
])
def test_labels_files_from_spreadsheets_load(tmp_path, text):
    (tmp_path / "labels.csv").write_text(text, encoding="utf-8")
    rows, labels = read_labels_file(tmp_path / "labels.csv", ["a", "b"], 10)
    assert rows.tolist() == [0, 1] and labels.tolist() == [0, 1]


def test_a_damaged_encoder_file_is_named_with_the_fix(tmp_path, capsys):
    from infomax.models import save_encoder

    path = save_encoder(build_encoder("convnet", width=4), tmp_path / "enc.safetensors")
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    assert main(["evaluate", "--encoder", str(path), "--dataset", "digits", "--out", str(tmp_path / "eval")]) == 2
    err = capsys.readouterr().err
    assert "enc.safetensors" in err and "Traceback" not in err


def _mutants(raw: bytes, n: int, seed: int):
    """`n` damaged copies of `raw`: truncated, or a few bytes flipped, anywhere or (every other time)
    within the first 64 bytes, where headers live and damage is most often mishandled."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        data = bytearray(raw)
        span = len(data) if i % 4 < 2 else min(len(data), 64)
        if i % 2 == 0:
            data = data[: int(rng.integers(0, span))]
        else:
            for at in rng.integers(0, span, size=int(rng.integers(1, 8))):
                data[at] ^= int(rng.integers(1, 256))
        yield bytes(data)


def _assert_loads_or_names(read, name: str, raw: bytes, n: int = 80) -> None:
    for data in _mutants(raw, n, seed=len(raw)):
        try:
            read(data)
        except ValueError as error:  # DataFormatError is one: a message that names the file
            assert name in str(error), str(error)


def test_fuzzed_files_load_or_raise_a_named_error_never_crash(tmp_path):
    import gzip
    import pickle
    import struct


    from infomax.data.formats import decode_image, read_cifar_batch, read_idx
    from infomax.data.imagefolder import save_png
    from infomax.models.registry import load_encoder, save_encoder

    images = np.random.default_rng(0).integers(0, 256, size=(4, 28, 28), dtype=np.uint8)
    idx = struct.pack(">BBBB", 0, 0, 8, 3) + struct.pack(">3I", 4, 28, 28) + images.tobytes()

    def idx_reader(data, gz):
        path = tmp_path / ("x.idx.gz" if gz else "x.idx")
        path.write_bytes(gzip.compress(data) if gz is True else data)
        return read_idx(path)

    _assert_loads_or_names(lambda d: idx_reader(d, False), "x.idx", idx)
    _assert_loads_or_names(lambda d: idx_reader(d, "raw"), "x.idx.gz", gzip.compress(idx))  # damaged gzip itself
    batch = pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]})
    _assert_loads_or_names(lambda d: read_cifar_batch(d, "data_batch_1"), "data_batch_1", batch)
    png = save_png(np.zeros((8, 8, 3), np.uint8))
    _assert_loads_or_names(lambda d: decode_image(d, "img.png"), "img.png", png)
    encoder_file = save_encoder(build_encoder("convnet", width=2), tmp_path / "enc.safetensors")
    good = encoder_file.read_bytes()

    def encoder_reader(data):
        (tmp_path / "m.safetensors").write_bytes(data)
        return load_encoder(tmp_path / "m.safetensors")

    _assert_loads_or_names(encoder_reader, "m.safetensors", good)
    labels = "image,class\n0,a\n1,b\n".encode()

    def labels_reader(data):
        (tmp_path / "labels.csv").write_bytes(data)
        return read_labels_file(tmp_path / "labels.csv", ["a", "b"], 10)

    _assert_loads_or_names(labels_reader, "labels.csv", labels)
    import io
    import tarfile

    from infomax.data.imagefolder import read_imagefolder

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for rel in ("train/a/1.png", "train/b/2.png"):
            info = tarfile.TarInfo(rel)
            info.size = len(png)
            tar.addfile(info, io.BytesIO(png))

    def tree_reader(data):
        (tmp_path / "tree.tar.gz").write_bytes(data)
        return read_imagefolder(tmp_path / "tree.tar.gz")

    _assert_loads_or_names(tree_reader, "tree.tar.gz", buffer.getvalue())


@pytest.mark.slow
def test_sigkill_during_feature_extraction_then_rerun_gives_the_same_bytes(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from infomax.models import save_encoder

    encoder_file = save_encoder(build_encoder("convnet", width=32), tmp_path / "enc.safetensors")
    argv = [sys.executable, "-m", "infomax", "evaluate", "--encoder", str(encoder_file), "--dataset", "digits",
            "--protocol", "knn", "--resolution", "96"]
    env = {**os.environ, "INFOMAX_CACHE": str(tmp_path / "cut")}
    stop_after = int(np.random.default_rng(7).integers(1, 4)) * 256  # a random chunk boundary of the 1,437 training images
    proc = subprocess.Popen([*argv, "--out", str(tmp_path / "e1")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        progress = list((tmp_path / "cut").glob("features/*/progress.json"))
        if progress and json_done(progress[0]) >= stop_after:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not list((tmp_path / "cut").glob("features/*train*/manifest.json")), "extraction finished before the kill"
    subprocess.run([*argv, "--out", str(tmp_path / "e2")], env=env, check=True, capture_output=True)
    subprocess.run([*argv, "--out", str(tmp_path / "e3")], env={**env, "INFOMAX_CACHE": str(tmp_path / "fresh")},
                   check=True, capture_output=True)
    for name in ("pooled.npy",):
        cut = sorted((tmp_path / "cut").glob(f"features/*train*/{name}"))
        fresh = sorted((tmp_path / "fresh").glob(f"features/*train*/{name}"))
        assert cut and [p.read_bytes() for p in cut] == [p.read_bytes() for p in fresh]


def json_done(path) -> int:
    import json

    try:
        return json.loads(path.read_text())["done"]
    except (ValueError, KeyError, OSError):
        return 0


def test_encoder_metadata_that_is_not_json_is_named(tmp_path):
    from safetensors.torch import save_file

    from infomax.models.registry import load_encoder

    save_file({"w": torch.zeros(1)}, str(tmp_path / "enc.safetensors"), metadata={"infomax_encoder": "{not json"})
    with pytest.raises(ValueError, match="enc.safetensors.*not JSON"):
        load_encoder(tmp_path / "enc.safetensors")


def test_evaluate_writes_nothing_when_its_inputs_fail(tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", "--encoder", "convnet", "--dataset", "cifar10", "--data-root", str(tmp_path / "none"), "--out", str(out)]) == 2
    assert not out.exists()
    assert main(["evaluate", "--encoder", "convnet", "--dataset", "digits", "--protocol", ",", "--out", str(out)]) == 2
    assert "no protocol" in capsys.readouterr().err and not out.exists()
