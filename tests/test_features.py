import json

import numpy as np
import pytest
import torch

from infomax.data.augment import center_resize, to_float_images
from infomax.data.dataset import Dataset
from infomax.data import features as features_module
from infomax.data.features import extract_features, pool_tokens
from infomax.models import build_encoder


@pytest.fixture
def toy():
    images = np.random.default_rng(0).integers(0, 256, size=(40, 16, 16, 3), dtype=np.uint8)
    return Dataset("toy", "train", images, np.arange(40) % 4, list("abcd"), "memory")


@pytest.fixture
def encoder():
    return build_encoder("convnet", width=8).eval()


def _extract(encoder, dataset, tmp_path, **kwargs):
    options = {"resolution": 16, "views": 1, "batch_size": 16, "cache_dir": tmp_path / "features", "progress": False, "token_grid": None}
    return extract_features(encoder, dataset, **{**options, **kwargs})


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_plain_view_matches_the_encoder_and_augmented_view_differs(encoder, toy, tmp_path, precision):
    features = _extract(encoder, toy, tmp_path, precision=precision)
    assert features.num_views == 2 and features.pooled(1).shape == (40, encoder.dim) and features.pooled(0).dtype == np.float16
    assert features.manifest.get("precision", "32-true") == precision
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
        direct = encoder(center_resize(to_float_images(torch.from_numpy(toy.images)), 16))
    torch.testing.assert_close(features.load(slice(None), 0)[1], direct.pooled.float(), atol=2e-3, rtol=2e-3)
    assert features.load([0], 1)[0].shape[1] == direct.tokens.shape[1]
    assert not torch.allclose(features.load(slice(None), 1)[1], direct.pooled.float(), atol=1e-2)
    assert np.array_equal(features.labels, toy.labels) and features.classes == list("abcd")


def test_second_call_reads_the_cache_without_running_the_encoder(encoder, toy, tmp_path, monkeypatch):
    first = _extract(encoder, toy, tmp_path)
    monkeypatch.setattr(type(encoder), "encode", lambda self, x: (_ for _ in ()).throw(AssertionError("recomputed")))
    again = _extract(encoder, toy, tmp_path)
    assert again.folders == first.folders and np.array_equal(again.pooled(1), first.pooled(1))


@pytest.mark.parametrize("change", ["weights", "seed", "views", "resolution", "data", "chunk"])
def test_any_change_gives_a_new_cache(encoder, toy, tmp_path, change):
    base = _extract(encoder, toy, tmp_path).folders
    kwargs = {}
    if change == "weights":
        with torch.no_grad():
            next(encoder.parameters())[0].add_(1e-3)
    elif change == "data":
        toy.images[0, 0, 0, 0] ^= 1
    else:
        kwargs = {"seed": {"seed": 1}, "views": {"views": 2}, "resolution": {"resolution": 12}, "chunk": {"batch_size": 8}}[change]
    changed = _extract(encoder, toy, tmp_path, **kwargs).folders
    assert changed[-1] != base[-1]
    assert (changed[0] == base[0]) == (change in ("seed", "views", "chunk"))  # the plain view is shared


def test_interrupted_extraction_resumes_to_the_same_bytes(encoder, toy, tmp_path, monkeypatch):
    reference = _extract(encoder, toy, tmp_path / "a")
    original, calls = type(encoder).encode, {"n": 0}

    def dying(self, x):
        calls["n"] += 1
        if calls["n"] == 3:  # the first call probes the shapes, then one call per chunk of the plain view
            raise KeyboardInterrupt
        return original(self, x)

    monkeypatch.setattr(type(encoder), "encode", dying)
    with pytest.raises(KeyboardInterrupt):
        _extract(encoder, toy, tmp_path / "b")
    folder = next(p for p in (tmp_path / "b" / "features").iterdir() if p.is_dir())
    assert json.loads((folder / "progress.json").read_text())["done"] == 16
    assert not (folder / "manifest.json").exists()
    monkeypatch.setattr(type(encoder), "encode", original)
    resumed = _extract(encoder, toy, tmp_path / "b")
    for (pooled, tokens), (ref_pooled, ref_tokens) in zip(resumed.groups, reference.groups):
        assert np.array_equal(pooled, ref_pooled) and np.array_equal(tokens, ref_tokens)


def test_token_pooling_and_bad_settings(encoder, toy, tmp_path):
    tokens = torch.arange(16.0).view(1, 16, 1).repeat(2, 1, 3)
    pooled = pool_tokens(tokens, 2)
    assert pooled.shape == (2, 4, 3) and pooled[0, 0, 0].item() == pytest.approx((0 + 1 + 4 + 5) / 4)
    with pytest.raises(ValueError, match="square grid"):
        pool_tokens(torch.zeros(1, 5, 3), 2)
    assert _extract(encoder, toy, tmp_path, token_grid=0).token_dim is None
    assert _extract(encoder, toy, tmp_path, token_grid=1).load([0], 0)[0].shape == (1, 1, encoder.token_dim)
    with pytest.raises(ValueError, match="augmented views"):
        _extract(encoder, toy, tmp_path, views=-1)


def test_an_interrupted_extraction_with_other_tokens_starts_over(encoder, toy, tmp_path, monkeypatch):
    original, calls = type(encoder).encode, {"n": 0}

    def dying(self, x):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, x)

    monkeypatch.setattr(type(encoder), "encode", dying)
    with pytest.raises(KeyboardInterrupt):
        _extract(encoder, toy, tmp_path, views=0, token_grid=1)
    monkeypatch.setattr(type(encoder), "encode", original)
    features = _extract(encoder, toy, tmp_path, views=0, token_grid=2)
    reference = _extract(encoder, toy, tmp_path / "fresh", views=0, token_grid=2)
    assert np.array_equal(features.groups[0][1], reference.groups[0][1])


def test_each_token_grid_keeps_its_own_entry_and_a_grid_free_request_shares_any(encoder, toy, tmp_path, monkeypatch):
    two = _extract(encoder, toy, tmp_path, views=0, token_grid=2)
    one = _extract(encoder, toy, tmp_path, views=0, token_grid=1)
    assert two.folders != one.folders and all(f.exists() for f in two.folders + one.folders)
    monkeypatch.setattr(type(encoder), "encode", lambda self, x: (_ for _ in ()).throw(AssertionError("recomputed")))
    assert _extract(encoder, toy, tmp_path, views=0, token_grid=2).folders == two.folders  # not replaced by grid 1
    assert _extract(encoder, toy, tmp_path, views=0, token_grid=0).folders[0] in two.folders + one.folders


def test_concurrent_extractions_of_one_entry_run_once_and_both_read_it_whole(encoder, toy, tmp_path, monkeypatch):
    import threading
    import time

    from infomax.data import features as features_module

    runs, original = [], features_module._Extraction.run

    def slow(self):
        runs.append(self.folder)
        time.sleep(0.5)  # long enough for the other thread to arrive while this one writes
        original(self)

    monkeypatch.setattr(features_module._Extraction, "run", slow)
    results = []
    threads = [threading.Thread(target=lambda: results.append(_extract(encoder, toy, tmp_path, views=0))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(runs) == 1 and len(results) == 2
    assert np.array_equal(results[0].pooled(0), results[1].pooled(0))


def test_default_resolution_scales_with_the_images_and_stops_at_the_encoders_input():
    from types import SimpleNamespace

    from infomax.data.features import default_resolution

    lite0, free = SimpleNamespace(input_size=224), SimpleNamespace(input_size=None)
    shape = lambda side: SimpleNamespace(image_shape=(side, side, 3))  # noqa: E731
    assert [default_resolution(lite0, shape(s)) for s in (8, 28, 32, 96)] == [32, 128, 128, 224]
    assert default_resolution(free, shape(96)) == 384


def test_an_entry_with_more_views_serves_a_request_for_fewer(encoder, toy, tmp_path, monkeypatch):
    fresh = _extract(encoder, toy, tmp_path / "fresh", views=1)
    three = _extract(encoder, toy, tmp_path, views=3)
    def refuse(self):
        raise RuntimeError("extracted again")

    monkeypatch.setattr(features_module._Extraction, "run", refuse)
    one = _extract(encoder, toy, tmp_path, views=1)
    assert one.num_views == 2 and three.num_views == 4
    assert np.array_equal(one.pooled(1), fresh.pooled(1)) and np.array_equal(one.pooled(1), three.pooled(1))
    with pytest.raises(RuntimeError, match="extracted again"):  # another seed is another set of views
        _extract(encoder, toy, tmp_path, views=1, seed=7)


def test_auto_precision_is_the_devices_native_one_and_each_precision_has_its_own_entry(encoder, toy, tmp_path, monkeypatch):
    from infomax import precision

    monkeypatch.setattr(precision, "_cpu_flags", lambda: {"avx512_bf16"})
    native = _extract(encoder, toy, tmp_path, views=0, precision="auto")
    fp32 = _extract(encoder, toy, tmp_path, views=0, precision="32-true")
    assert native.manifest["precision"] == "bf16-mixed" and "precision" not in fp32.manifest  # fp32 keys stay as before
    assert native.folders != fp32.folders
    monkeypatch.setattr(precision, "_cpu_flags", lambda: set())
    assert _extract(encoder, toy, tmp_path, views=0, precision="auto").folders == fp32.folders
    with pytest.raises(ValueError, match="auto, 32-true or bf16-mixed"):
        _extract(encoder, toy, tmp_path, precision="16-mixed")
