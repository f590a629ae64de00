"""engine/monitors.py: what the loop watches. The kNN monitor scores eval-mode features (batch norm in
train mode skews them and moves the running statistics: lightly #1440) with the k and T it is given
(lightly #1840), on the epochs asked, on rank 0 only; the collapse monitor is the spread of unit rows and
RankMe; SMI's ratio is |redundancy| / |alignment|. Every expected value is computed here by hand."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from infomax.data.dataset import load_dataset
from infomax.engine.monitors import Collapsed, HeldOut, KNNMonitor, embedding_spread, redundancy_to_alignment
from infomax.models import build_encoder


def reference_knn_top1(bank, bank_labels, query, query_labels, k, temperature) -> float:
    """Weighted kNN top-1 in percent: cosine similarity, the k nearest vote with exp(sim / T)."""
    similarity = F.normalize(query.double(), dim=1) @ F.normalize(bank.double(), dim=1).T
    nearest, index = similarity.topk(k, dim=1)
    votes = torch.zeros(len(query), int(bank_labels.max()) + 1, dtype=torch.float64)
    votes.scatter_add_(1, bank_labels[index], torch.exp(nearest / temperature))
    return 100.0 * float((votes.argmax(1) == query_labels).double().mean())


class Model(nn.Module):
    """What the monitor asks of a method: `embed`, the encoder's pooled output."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    @torch.no_grad()
    def embed(self, images):
        return self.encoder(images).pooled


def batch_norm_state(module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items() if "running" in k or "num_batches" in k}


def test_the_knn_monitor_scores_eval_mode_features_and_leaves_batch_norm_alone():
    torch.manual_seed(0)
    digits = load_dataset("digits", "train")
    model = Model(build_encoder("convnet", width=4))
    for _ in range(3):  # running statistics of its own, unlike batch statistics of the monitor's rows
        model.encoder(torch.rand(16, 1, 8, 8) * 0.5)
    model.train()
    bank, query = np.arange(400), np.arange(400, 600)
    stats = batch_norm_state(model)
    top1 = KNNMonitor(HeldOut(digits, query, 8), bank, k=7, temperature=0.1, every=1).score(model, "cpu")
    assert model.training  # handed back in the mode it came in
    after = batch_norm_state(model)
    assert all(torch.equal(stats[k], after[k]) for k in stats)  # no forward in train mode
    model.eval()
    pixels = torch.from_numpy(np.array(digits.images)).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        features = model.encoder(pixels).pooled
    labels = torch.from_numpy(digits.labels).long()
    expected = reference_knn_top1(features[bank], labels[bank], features[query], labels[query], k=7, temperature=0.1)
    assert top1 == pytest.approx(expected, abs=1e-9)


class Pixels(nn.Module):
    """A method whose embedding is the image's pixels: the kNN geometry is set by the images."""

    @torch.no_grad()
    def embed(self, images):
        return images.flatten(1)


def near_miss_dataset() -> SimpleNamespace:
    """4 queries (rows 0-3, class i, 200 at pixel i); each has in the bank one exact copy of its own class
    (cosine 1) and 20 near copies of another class (200 at pixel i, 20 at one more pixel: cosine 0.995).
    By hand: k = 1 finds the copy; k = 21 at T = 0.07 gives the copy weight 1 against 20 exp(-0.005 / 0.07)
    = 18.6 (wrong); at T = 0.001 against 20 exp(-5) = 0.13 (right)."""
    images, labels = [], []
    for i in range(4):
        query = np.zeros(64, np.uint8)
        query[i] = 200
        images.append(query)
        labels.append(i)
    for i in range(4):
        images.append(images[i].copy())
        labels.append(i)
        for j in range(20):
            near = images[i].copy()
            near[10 + j] = 20
            images.append(near)
            labels.append((i + 1) % 4)
    return SimpleNamespace(images=np.stack(images).reshape(-1, 8, 8, 1), labels=np.array(labels))


@pytest.mark.parametrize("k,temperature,expected", [(1, 0.07, 100.0), (21, 0.07, 0.0), (21, 0.001, 100.0)])
def test_the_knn_monitor_uses_its_own_k_and_temperature(k, temperature, expected):
    data = near_miss_dataset()
    monitor = KNNMonitor(HeldOut(data, np.arange(4), 8), np.arange(4, len(data.labels)), k=k, temperature=temperature, every=1)
    assert monitor.score(Pixels(), "cpu") == pytest.approx(expected)


def fake_loop(rank=0, world_size=1, abort_on_collapse=False, method=None):
    fabric = SimpleNamespace(global_rank=rank, world_size=world_size, device="cpu")
    return SimpleNamespace(fabric=fabric, method=method, step=7, run=SimpleNamespace(abort_on_collapse=abort_on_collapse))


def test_the_knn_monitor_runs_every_nth_epoch_on_rank_0_only():
    data = near_miss_dataset()
    every_2 = KNNMonitor(HeldOut(data, np.arange(4), 8), np.arange(4, len(data.labels)), k=1, temperature=0.07, every=2)
    ran = [epoch for epoch in range(1, 7) if every_2(fake_loop(method=Pixels()), epoch)]
    assert ran == [2, 4, 6]
    assert every_2(fake_loop(method=Pixels()), 4) == {"knn_top1": 100.0}
    assert every_2(fake_loop(rank=1, world_size=2, method=Pixels()), 4) == {}
    off = KNNMonitor(HeldOut(data, np.arange(4), 8), np.arange(4, len(data.labels)), k=1, temperature=0.07, every=0)
    assert all(off(fake_loop(method=Pixels()), epoch) == {} for epoch in range(1, 4))


def reference_rankme(z: torch.Tensor) -> float:
    """RankMe (Garrido et al., 2023, Eq. 1): exp of the entropy of the normalised singular values."""
    s = torch.linalg.svdvals(z.double())
    p = s / s.sum()
    return float(torch.exp(-(p * p.log()).sum()))


def test_the_spread_is_the_per_dimension_std_of_unit_rows_and_the_rank_is_rankme():
    torch.manual_seed(0)
    z = torch.randn(32, 6) * torch.linspace(0.5, 20, 32)[:, None]  # rows of very different lengths
    record = embedding_spread(fake_loop(), {"_embedding": z})
    unit = z / z.norm(dim=1, keepdim=True)
    std = np.std(unit.numpy().astype(np.float64), axis=0, ddof=1).mean()
    assert record["feature_std"] == pytest.approx(std, rel=1e-5)
    assert record["effective_rank"] == pytest.approx(reference_rankme(z), rel=1e-4)
    assert embedding_spread(fake_loop(), {"loss": torch.tensor(1.0)}) == {}


def test_a_collapsing_embedding_warns_or_stops_and_a_spread_one_does_not(capsys):
    torch.manual_seed(0)
    spread, collapsed = torch.randn(64, 16), torch.ones(64, 16) + 1e-4 * torch.randn(64, 16)
    embedding_spread(fake_loop(), {"_embedding": spread})
    assert "collapsing" not in capsys.readouterr().err
    embedding_spread(fake_loop(), {"_embedding": collapsed})
    assert "step 7: the embedding is collapsing" in capsys.readouterr().err
    with pytest.raises(Collapsed, match="abort-on-collapse"):
        embedding_spread(fake_loop(abort_on_collapse=True), {"_embedding": collapsed})
    embedding_spread(fake_loop(abort_on_collapse=True), {"_embedding": spread})  # no stop while it is spread


def test_the_redundancy_ratio_is_the_absolute_quotient():
    terms = {"redundancy": torch.tensor(-0.6), "alignment": torch.tensor(-2.4)}
    assert redundancy_to_alignment(fake_loop(), terms) == {"redundancy_to_alignment": pytest.approx(0.25)}
    assert redundancy_to_alignment(fake_loop(), {"alignment": torch.tensor(1.0)}) == {}
