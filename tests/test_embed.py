"""`infomax embed` (eval/embed.py): the streamed safetensors file is the encoder's features of every row."""
import json

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from infomax.cli import main
from infomax.data.augment import center_resize, to_float_images
from infomax.data.dataset import load_dataset
from infomax.models import build_encoder


def test_the_file_holds_every_rows_features_and_label_in_order(tmp_path, encoder_file):
    out = tmp_path / "embedded"
    assert main(["embed", "--encoder", str(encoder_file), "--dataset", "digits", "--split", "test", "--batch-size", "50",
                 "--resolution", "16", "--out", str(out)]) == 0
    tensors = load_file(str(out / "features.safetensors"))
    data = load_dataset("digits", "test")
    net = build_encoder(str(encoder_file)).eval()
    with torch.no_grad():
        expected = net(center_resize(to_float_images(data.batch(slice(None)), channels=None), 16)).pooled
    assert tensors["features"].shape == (len(data), net.dim) and tensors["features"].dtype == torch.float32
    torch.testing.assert_close(tensors["features"], expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(tensors["labels"], torch.from_numpy(data.labels.astype(np.int64)))
    files = (out / "files.txt").read_text().splitlines()
    assert len(files) == len(data) and files[3] == "digits/test/3"
    with safe_open(str(out / "features.safetensors"), "pt") as f:
        assert f.metadata()["encoder"] == str(encoder_file) and f.metadata()["resolution"] == "16"
    summary = json.loads((out / "embed.json").read_text())
    assert summary["images"] == len(data) and summary["labelled"]


def test_an_unlabelled_folder_streams_with_its_file_names(tmp_path, encoder_file):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "embedded"
    assert main(["embed", "--encoder", str(encoder_file), "--dataset", "imagefolder", "--data-root", str(folder),
                 "--source", "stream", "--split", "train", "--batch-size", "2", "--out", str(out)]) == 0
    tensors = load_file(str(out / "features.safetensors"))
    assert (tensors["labels"] == -1).all() and tensors["features"].shape[0] == 5
    assert (out / "files.txt").read_text().splitlines() == [f"{i}.png" for i in range(5)]
    assert not json.loads((out / "embed.json").read_text())["labelled"]


def test_bad_input_is_refused_before_anything_is_written(tmp_path, encoder_file, capsys):
    out = tmp_path / "embedded"
    assert main(["embed", "--encoder", "no-such-net", "--dataset", "digits", "--out", str(out)]) == 2
    assert not out.exists()
    assert main(["embed", "--encoder", str(encoder_file), "--dataset", "digits", "--batch-size", "0", "--out", str(out)]) == 2
    assert "--batch-size" in capsys.readouterr().err and not out.exists()
