"""`infomax continue` end to end on scikit-learn's digits with a small ConvNet: partial fine-tuning on
cached trunk activations, the before/after evaluation and report, heads kept from a pretrain run of the
same method, and bad input refused with exit code 2 before anything is written."""
import json
import sys

import numpy as np
import pytest
import torch

from infomax.cli import main
from infomax.data.cached_views import CachedViewBatches
from infomax.data.features import Features
from infomax.models.registry import load_encoder

TINY = ["--dataset", "digits", "--batch-size", "64", "--epochs", "2", "--set", "method.projector_hidden=32",
        "--set", "method.projector_out=32", "--cached-views", "2"]


def run(*argv) -> int:
    return main(["continue", *argv])


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    """A small ConvNet encoder file to continue from (random weights: the protocol, not the numbers, is tested)."""
    from infomax.models import build_encoder, save_encoder

    torch.manual_seed(0)
    return str(save_encoder(build_encoder("convnet", width=8), tmp_path_factory.mktemp("start") / "encoder.safetensors"))


def test_partial_continue_trains_the_tail_only_and_reports_before_and_after(tmp_path, start, capsys):
    out = tmp_path / "run"
    assert run("--init", start, "--method", "vicreg", "--add", "e2mc", "--train-from", "block2", *TINY, "--out", str(out)) == 0
    result = json.loads((out / "metrics.json").read_text())
    assert result["created"] == ["projector"] and "created afresh" in capsys.readouterr().err
    from infomax.data.dataset import load_dataset

    assert result["steps"] == 2 * (len(load_dataset("digits", "train")) // 64)  # every training image: no held-out slice
    for key in ("knn_top1", "linear_top1", "fewshot_1pct_top1_mean", "fewshot_10pct_top1_mean", "nn_distance_overlap"):
        assert result[f"delta/{key}"] == pytest.approx(result[f"after/{key}"] - result[f"before/{key}"])
    before, after = load_encoder(start).state_dict(), load_encoder(out / "encoder.safetensors").state_dict()
    changed = {k.split(".")[1] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"2", "3"}, changed  # features.0 and features.1 are the frozen trunk
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"loss/e2mc", "loss/e2mc/entropy", "loss/e2mc/covariance"} <= set(logged[-1])
    for name in ("before", "after"):
        for plot in ("nn_distances", "marginals_2d", "projector_marginals_2d"):
            assert (out / name / "plots" / f"{plot}.png").exists(), plot
    html = (out / "report.html").read_text()
    assert "before" in html and "after" in html and "fewshot_1pct_top1_mean" in html
    config = (out / "config.yaml").read_text()
    assert "lr: 0.003" in config and "decay: constant" in config and "train_from: block2" in config
    assert "beta: 1000.0" in config and "space: hypercube" in config  # the add-on saved with its paper weights written out


def test_heads_come_from_a_pretrain_run_of_the_same_method(tmp_path):
    pre = tmp_path / "pre"
    assert main(["pretrain", "--method", "vicreg", "--dataset", "digits", "--batch-size", "64", "--max-steps", "3",
                 "--set", "model.options.width=8", "--set", "method.projector_hidden=32", "--set", "method.projector_out=32",
                 "--set", "run.knn_every=0", "--out", str(pre)]) == 0
    out = tmp_path / "cont"
    assert run("--init", str(pre), "--dataset", "digits", "--batch-size", "64", "--epochs", "1", "--cached-views", "2",
               "--out", str(out)) == 0  # no --method, no projector sizes: the run's own recipe
    assert json.loads((out / "metrics.json").read_text())["created"] == []
    from infomax import config as C

    before, after = C.load(pre / "config.yaml"), C.load(out / "config.yaml")
    assert after.method == before.method and after.data.resolution == before.data.resolution
    assert after.data.views == before.data.views and after.optim.lr == pytest.approx(before.optim.lr * 0.01)
    assert after.schedule.max_steps is None and after.schedule.decay == "constant"
    assert run("--init", str(pre), "--method", "simsiam", *TINY, "--out", str(tmp_path / "other")) == 2
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize("extra,message", [
    (["--method", "vicreg", "--train-from", "block7"], "its blocks, in order: block0, block1, block2, block3"),
    (["--method", "vicreg", "--add", "e2mc", "--batch-size", "2"], r"n > sqrt\(n\) \+ 1"),
    (["--method", "smi", "--add", "e2mc"], "the paper gives weights for vicreg, swav, simsiam only"),
    (["--method", "vicreg", "--add", "mmcr:embedding=tokens"], "gives no 'tokens' embedding"),
    (["--method", "vicreg", "--add", "entropy"], "unknown add-on"),
    (["--method", "vicreg", "--lr-scale", "0"], "continued.lr_scale must be positive"),
    (["--method", "vicreg", "--train-images", "10"], "--train-images must lie in"),
    (["--method", "swav", "--train-from", "block2", "--set", "data.views=multicrop", "--set", "method.num_prototypes=16"],
     "caches views of one size"),
])
def test_bad_input_is_refused_before_anything_is_written(tmp_path, start, capsys, extra, message):
    out = tmp_path / "bad"
    argv = ["--init", start, *TINY, *extra, "--out", str(out)]
    assert run(*argv) == 2
    import re

    assert re.search(message, capsys.readouterr().err), message
    assert not out.exists()


def test_an_init_that_is_no_encoder_is_refused(tmp_path, capsys):
    assert run("--init", str(tmp_path), "--method", "vicreg", *TINY, "--out", str(tmp_path / "x")) == 2
    assert "has no encoder.safetensors" in capsys.readouterr().err


def _slot(n: int, k: int, offset: float) -> Features:
    pooled = np.stack([np.full((n, 2), offset + v, np.float16) for v in range(k + 1)])
    return Features([(pooled, None)], np.zeros(n, np.int64), ["a"], {}, [])


def test_cached_views_change_every_epoch_and_cycle_through_all_pairs():
    k, n = 3, 12
    batches = CachedViewBatches([_slot(n, k, 0), _slot(n, k, 100)], 4, seed=0)
    for epoch in range(k * k):
        for batch in batches.epoch(epoch):
            a, b = (v[:, 0].long() for v in batch["views"])
            assert ((a >= 1) & (a <= k)).all() and ((b >= 101) & (b <= 100 + k)).all()  # never the plain view 0
    rows = np.arange(n)
    views = [batches.views_of(rows, e) for e in range(k * k)]
    per_image = [{(int(a[r]), int(b[r])) for a, b in views} for r in range(n)]
    assert all(len(p) == k * k for p in per_image)  # K^2 epochs: every pairing once
    assert all((views[e][0] != views[e + 1][0]).all() for e in range(k * k - 1))  # another view every epoch


def test_a_resumed_continue_ends_where_an_uninterrupted_one_does(tmp_path, start):
    argv = ["--init", start, "--method", "vicreg", "--add", "vcreg", "--train-from", "block2", *TINY]
    assert run(*argv, "--max-steps", "6", "--out", str(tmp_path / "whole")) == 0
    assert run(*argv, "--max-steps", "3", "--out", str(tmp_path / "cut")) == 0
    assert run(*argv[:4], *argv[6:], "--max-steps", "6", "--resume", "--out", str(tmp_path / "cut")) == 2  # --train-from, --cached-views
    assert run("--method", "vicreg", "--max-steps", "6", "--resume", "--out", str(tmp_path / "cut")) == 0
    whole = load_encoder(tmp_path / "whole" / "encoder.safetensors").state_dict()
    cut = load_encoder(tmp_path / "cut" / "encoder.safetensors").state_dict()
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
    assert json.loads((tmp_path / "cut" / "metrics.json").read_text())["steps"] == 6


def test_the_evaluation_of_the_same_features_is_computed_once(tmp_path, monkeypatch):
    from infomax.engine.continued import _memo

    monkeypatch.setenv("INFOMAX_CACHE", str(tmp_path))
    feats = {"train": torch.randn(20, 4), "test": torch.randn(10, 4)}
    y, y_test, calls = torch.arange(20) % 2, torch.arange(10) % 2, []
    first = _memo(feats, y, y_test, (0, 1), lambda: calls.append(1) or {"knn_top1": 50.0})
    again = _memo(feats, y, y_test, (0, 1), lambda: calls.append(1) or {"knn_top1": 0.0})
    other = _memo(feats, y, y_test, (0, 2), lambda: calls.append(1) or {"knn_top1": 1.0})
    assert first == again == {"knn_top1": 50.0} and other == {"knn_top1": 1.0} and len(calls) == 2


def test_the_whole_network_trains_on_fresh_views_without_train_from(tmp_path, start):
    out = tmp_path / "whole"
    assert run("--init", start, "--method", "simsiam", "--add", "mmcr", *TINY, "--set", "method.predictor_hidden=8",
               "--max-steps", "2", "--out", str(out)) == 0
    result = json.loads((out / "metrics.json").read_text())
    assert result["steps"] == 2 and result["created"] == ["projector", "predictor"]
    before, after = load_encoder(start).state_dict(), load_encoder(out / "encoder.safetensors").state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before if k.endswith("conv.weight") or k.endswith("0.weight"))
    assert "train_from: null" in (out / "config.yaml").read_text()


def test_trained_prototypes_continue_unfrozen_and_fresh_ones_stay_frozen_for_their_epoch(tmp_path, start):
    swav = ["--dataset", "digits", "--batch-size", "64", "--set", "method.num_prototypes=16", "--set", "method.projector_hidden=32",
            "--set", "method.projector_out=32", "--set", "data.views=simclr"]
    pre = tmp_path / "pre"
    assert main(["pretrain", "--method", "swav", *swav, "--max-steps", "3", "--set", "model.options.width=8",
                 "--set", "run.knn_every=0", "--out", str(pre)]) == 0
    from infomax import config as C
    from infomax.runs.rundir import load_tensors

    assert C.load(pre / "config.yaml").method.freeze_prototypes_epochs == 1
    out = tmp_path / "cont"
    assert run("--init", str(pre), "--epochs", "1", "--cached-views", "2", "--dataset", "digits", "--out", str(out)) == 0
    assert C.load(out / "config.yaml").method.freeze_prototypes_epochs == 0
    key = next(k for k in load_tensors(pre / "state.safetensors") if "prototypes" in k)
    assert not torch.equal(load_tensors(pre / "state.safetensors")[key], load_tensors(out / "state.safetensors")[key])
    fresh = tmp_path / "fresh"
    assert run("--init", start, "--method", "swav", *swav, "--epochs", "1", "--cached-views", "2", "--out", str(fresh)) == 0
    assert C.load(fresh / "config.yaml").method.freeze_prototypes_epochs == 1
