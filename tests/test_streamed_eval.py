"""Issue 23 point 8: evaluate, analyze, the feature caches and `continue` read streamed splits (shards, or a
folder with data.source=stream) batch by batch, never decoded whole, and see exactly the plain views the
decoded cache would hold: equal features and equal metrics; a bad image is a black image, named and
counted, and past max_bad_fraction reading stops with the file named."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from infomax.cli import main
from infomax.data.dataset import load_dataset
from infomax.data.features import extract_features
from infomax.data.formats import DataFormatError
from infomax.data.shards import pack
from infomax.models import build_encoder, save_encoder

SIDE = 24


def photo(rng, height: int, width: int, tint: int) -> np.ndarray:
    coarse = rng.random((height // 8 + 2, width // 8 + 2, 3))
    coarse[..., tint] += 0.6  # a class colour, so the metrics are above chance
    big = np.asarray(Image.fromarray((coarse / coarse.max() * 255).astype(np.uint8)).resize((width, height), Image.Resampling.BICUBIC))
    return np.clip(big + rng.normal(0, 6, big.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """train/ and test/ splits of 2 classes, images of mixed sizes (so a decoded cache needs image_size)."""
    root = tmp_path_factory.mktemp("split_photos")
    rng = np.random.default_rng(1)
    for split, count in (("train", 20), ("test", 10)):
        for c in range(2):
            (root / split / f"class{c}").mkdir(parents=True)
            for i in range(count):
                Image.fromarray(photo(rng, 30 + 3 * (i % 4), 36 + 2 * (i % 5), c)).save(root / split / f"class{c}/{i:02d}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def shards(folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("split_shards")
    pack(folder, out, shard_size=7)
    return out


@pytest.fixture(scope="module")
def encoder_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("encoder") / "convnet.safetensors"
    save_encoder(build_encoder("convnet", width=4), path)
    return path


def test_a_streamed_split_holds_the_decoded_caches_plain_views_and_is_never_decoded_whole(folder, shards):
    decoded = load_dataset("imagefolder", "test", folder, image_size=SIDE, source="decoded", workers=0)
    for streamed in (load_dataset("shards", "test", shards, image_size=SIDE, workers=2),
                     load_dataset("imagefolder", "test", folder, image_size=SIDE, source="stream", workers=0)):
        assert streamed.streamed and not decoded.streamed
        assert streamed.image_shape == decoded.image_shape and streamed.classes == decoded.classes
        np.testing.assert_array_equal(streamed.labels, decoded.labels)
        batches = list(streamed.batches(3, 4))
        assert [(a, b) for a, b, _ in batches] == [(3, 7), (7, 11), (11, 15), (15, 19), (19, 20)]
        np.testing.assert_array_equal(torch.cat([x for *_, x in batches]).numpy(), decoded.images[3:])
        np.testing.assert_array_equal(streamed.batch(np.array([5, 0])).numpy(), decoded.images[[5, 0]])
        np.testing.assert_array_equal(streamed.subset(np.array([2, 9]), "two").batch(slice(0, 2)).numpy(), decoded.images[[2, 9]])
        with pytest.raises(TypeError, match="never decoded whole"):
            np.asarray(streamed.images)


def test_features_of_a_streamed_split_equal_the_decoded_ones_and_key_on_the_files(folder, shards, encoder_file, tmp_path):
    encoder = build_encoder(str(encoder_file))
    decoded = load_dataset("imagefolder", "train", folder, image_size=SIDE, source="decoded", workers=0)
    streamed = load_dataset("shards", "train", shards, image_size=SIDE, workers=2)
    kw = dict(resolution=16, views=2, seed=3, batch_size=8, cache_dir=tmp_path, progress=False)
    a, b = extract_features(encoder, decoded, **kw), extract_features(encoder, streamed, **kw)
    for view in range(3):
        np.testing.assert_array_equal(a.pooled(view), b.pooled(view))
    assert a.folders != b.folders  # keyed by the shards' files, not by decoding them to hash the pixels
    assert extract_features(encoder, streamed, **kw).folders == b.folders  # the second read is the cache's


def test_evaluate_and_analyze_read_shards_with_the_metrics_of_the_decoded_folder(folder, shards, encoder_file, tmp_path):
    common = ["--encoder", str(encoder_file), "--image-size", str(SIDE), "--resolution", "16"]
    assert main(["evaluate", *common, "--protocol", "knn,linear", "--dataset", "imagefolder", "--data-root", str(folder),
                 "--source", "decoded", "--out", str(tmp_path / "decoded")]) == 0
    assert main(["evaluate", *common, "--protocol", "knn,linear", "--dataset", "shards", "--data-root", str(shards),
                 "--out", str(tmp_path / "shards")]) == 0
    import json

    a, b = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("decoded", "shards"))
    for key in ("knn_top1", "linear_top1", "train_images", "test_images"):
        assert a[key] == b[key], key
    assert a["knn_top1"] > 60  # the class tint is visible: the comparison is not of two chance scores
    assert main(["analyze", *common, "--dataset", "shards", "--data-root", str(shards), "--out", str(tmp_path / "geometry")]) == 0
    assert (tmp_path / "geometry" / "report.html").exists()


def test_a_bad_image_is_black_and_named_and_too_many_stop_with_the_file_named(folder, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    bad = copy / "test" / "class1" / "03.jpg"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated: the header reads, the pixels do not
    tolerant = load_dataset("imagefolder", "test", copy, image_size=SIDE, source="stream", workers=0, max_bad_fraction=0.1)
    images = torch.cat([x for *_, x in tolerant.batches(0, 8)])
    row = tolerant.files.index("test/class1/03.jpg")
    assert images[row].abs().sum() == 0 and images[row - 1].abs().sum() > 0
    assert tolerant.images.bad == [tolerant.images.bad[0]] and "03.jpg" in tolerant.images.bad[0]
    assert "03.jpg" in capsys.readouterr().err
    strict = load_dataset("imagefolder", "test", copy, image_size=SIDE, source="stream", workers=0)
    with pytest.raises(DataFormatError, match=r"03\.jpg.*infomax data check"):
        list(strict.batches(0, 8))


def test_continue_trains_on_a_streamed_folder(folder, tmp_path):
    from infomax.engine.continued import continue_pretraining, resolve

    assert main(["pretrain", "--method", "vicreg", "--dataset", "digits", "--batch-size", "16", "--max-steps", "1",
                 "--set", "model.options.width=4", "--set", "data.resolution=8", "--set", "run.knn_every=0",
                 "--set", "method.projector_hidden=16", "--set", "method.projector_out=8", "--out", str(tmp_path / "start")]) == 0
    flags = {"data.dataset": "imagefolder", "data.data_root": str(folder), "data.image_size": SIDE, "data.source": "stream",
             "data.resolution": 16, "data.workers": 1, "optim.batch_size": 16, "schedule.max_steps": 2}
    config = resolve(init=str(tmp_path / "start"), method="vicreg", recipe=None, addons=["e2mc"],
                     sets=["method.projector_hidden=16", "method.projector_out=8"], flags=flags, continued={"lr_scale": 1.0},
                     out=tmp_path / "continued", resume=False)
    continue_pretraining(config, tmp_path / "continued", evaluate=False)
    import json

    lines = [json.loads(line) for line in (tmp_path / "continued" / "metrics.jsonl").read_text().splitlines()]
    assert any("data_wait" in line for line in lines) and all(np.isfinite(line.get("loss", 0.0)) for line in lines)
