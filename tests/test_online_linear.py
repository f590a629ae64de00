"""The online linear probe (engine/monitors.py OnlineLinear): it learns, reads only labelled rows, never
touches the method, and resumes exactly."""
import json
import os
import signal
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from infomax.cli import main
from infomax.engine.monitors import HeldOut, OnlineLinear

LOOP = SimpleNamespace(fabric=SimpleNamespace(world_size=1))


def clusters(n=600, dim=8, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    centres = 3 * torch.randn(classes, dim, generator=g)
    return centres[labels] + torch.randn(n, dim, generator=g), labels.numpy()


def probe_for(labels, dim=8, lr=0.1):
    dataset = SimpleNamespace(labels=labels, images=None)
    return OnlineLinear(HeldOut(dataset, np.arange(10), 16), dim, lr, every=1, seed=0)


def test_it_learns_separable_features_from_the_batches_rows():
    features, labels = clusters()
    probe = probe_for(labels)
    for step in range(60):
        rows = torch.from_numpy(np.random.default_rng(step).choice(len(labels), 64, replace=False))
        probe.learn(LOOP, {"rows": rows}, features[rows], factor=1.0)
    probe.head.eval()
    accuracy = (probe.head(features).argmax(1).numpy() == labels).mean()
    assert accuracy > 0.95 and probe.loss < 0.3


def test_unlabelled_rows_and_a_batch_without_rows_teach_nothing():
    features, labels = clusters()
    labels = labels.copy()
    labels[:300] = -1
    probe = probe_for(labels)
    before = {k: v.clone() for k, v in probe.head.state_dict().items()}
    probe.learn(LOOP, {"views": []}, features[:64], factor=1.0)  # no rows: a source that does not say
    probe.learn(LOOP, {"rows": torch.arange(64)}, features[:64], factor=1.0)  # every row unlabelled
    after = probe.head.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in ("1.weight", "1.bias"))
    probe.learn(LOOP, {"rows": torch.arange(300, 364)}, features[300:364], factor=1.0)
    assert not torch.equal(before["1.weight"], probe.head.state_dict()["1.weight"])


def pretrain(out, *extra):
    return main(["pretrain", "--method", "simclr", "--dataset", "digits", "--batch-size", "64",
                 "--set", "model.options.width=4", "--set", "method.projector_hidden=16", "--set", "method.projector_out=8",
                 "--set", "data.holdout=200", "--set", "run.knn_every=0", "--out", str(out), *extra])


def log(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_the_probe_changes_nothing_in_training_and_logs_each_epoch(tmp_path):
    assert pretrain(tmp_path / "on", "--epochs", "2") == 0
    assert pretrain(tmp_path / "off", "--epochs", "2", "--set", "run.linear_every=0") == 0
    on, off = (load_file(str(tmp_path / r / "encoder.safetensors")) for r in ("on", "off"))
    assert on.keys() == off.keys() and all(torch.equal(on[k], off[k]) for k in on)
    scores = [r["linear_top1"] for r in log(tmp_path / "on") if "linear_top1" in r]
    assert len(scores) == 2 and all(0 <= s <= 100 for s in scores)
    assert not any("linear_top1" in r for r in log(tmp_path / "off"))
    summary = json.loads((tmp_path / "on" / "metrics.json").read_text())
    assert summary["linear_top1_holdout"] == pytest.approx(scores[-1])
    assert summary["linear_top1_holdout"] > 20  # ten digit classes: well above chance after two epochs


def test_a_run_stopped_mid_epoch_resumes_the_probe_exactly(tmp_path):
    from infomax import config as C
    from infomax.engine.pretrain import pretrain as train

    tree = C.load_recipe("simclr-cpu")
    for assignment in ("data.dataset=digits", "optim.batch_size=64", "model.options.width=4", "method.projector_hidden=16",
                       "method.projector_out=8", "data.holdout=200", "run.knn_every=0", "run.log_every=1", "schedule.epochs=2"):
        C.set_value(tree, assignment)

    def stop_at_25(loop, terms):
        if loop.step == 25:
            os.kill(os.getpid(), signal.SIGINT)
        return {}

    train(C.build_config(tree), tmp_path / "whole")
    with pytest.raises(KeyboardInterrupt):
        train(C.build_config(tree), tmp_path / "split", watch=(stop_at_25,))
    train(C.build_config(tree), tmp_path / "split", resume=True)
    whole, split = (load_file(str(tmp_path / r / "state.safetensors")) for r in ("whole", "split"))
    probe = [k for k in whole if "probe0/" in k]
    assert any("momentum/" in k for k in probe) and any("running_mean" in k for k in probe)
    assert all(torch.equal(whole[k], split[k]) for k in probe)
    assert [r["linear_top1"] for r in log(tmp_path / "whole") if "linear_top1" in r] == \
        [r["linear_top1"] for r in log(tmp_path / "split") if "linear_top1" in r]


def test_under_ddp_the_heads_gradient_is_one_all_reduce_of_every_parameters_mean():
    """A stand-in fabric whose all-reduce halves the gradient (another rank's zeros): the probe then moves
    exactly as one at half the lr (SGD with momentum is linear in the gradient), in one call per step."""
    features, labels = clusters()
    calls = []

    def halve(tensor, reduce_op):
        calls.append((tensor.shape, reduce_op))
        return tensor * 0.5

    ddp = SimpleNamespace(fabric=SimpleNamespace(world_size=2, all_reduce=halve))
    shared, alone = probe_for(labels, lr=0.2), probe_for(labels, lr=0.1)
    for step in range(5):
        rows = torch.from_numpy(np.random.default_rng(step).choice(len(labels), 64, replace=False))
        shared.learn(ddp, {"rows": rows}, features[rows], factor=1.0)
        alone.learn(LOOP, {"rows": rows}, features[rows], factor=1.0)
    for (name, a), b in zip(shared.head.state_dict().items(), alone.head.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name
    assert calls == [(torch.Size([8 * 3 + 3]), "mean")] * 5


def test_the_knn_monitor_and_the_probe_embed_the_held_out_rows_once_per_state(monkeypatch):
    from infomax.engine import monitors

    images = np.random.default_rng(0).integers(0, 255, (40, 8, 8, 1), dtype=np.uint8)
    dataset = SimpleNamespace(images=images, labels=np.arange(40) % 4)
    held_out = HeldOut(dataset, np.arange(8), 8)
    method = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 6))
    method.embed = lambda x: method(x)
    calls = []
    real = monitors.embed_eval
    monkeypatch.setattr(monitors, "embed_eval", lambda m, imgs, *a: calls.append(len(imgs)) or real(m, imgs, *a))
    knn = monitors.KNNMonitor(held_out, np.arange(8, 40), k=3, temperature=0.1, every=1)
    probe = OnlineLinear(held_out, 6, 0.1, every=1, seed=0)
    knn.score(method, "cpu"), probe.score(method, "cpu")
    assert calls == [32, 8]  # the bank, then the held-out rows once for both
    with torch.no_grad():
        method[1].weight.add_(1.0)  # what an optimiser step does
    probe.score(method, "cpu")
    assert calls == [32, 8, 8]
