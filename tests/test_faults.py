"""Faults a user's machine will produce: a full disk mid-checkpoint, damaged cache files, spreadsheet
labels files. Each ends in a clear message (or a correct load), never a traceback or a corrupt file."""
import errno

import numpy as np
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
    assert main(["pretrain", "--method", "smi", *TINY, "--max-steps", "2", "--out", str(out)]) == 0
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
