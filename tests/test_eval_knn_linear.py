"""Weighted kNN, linear probe and few-label evaluation: known answers, references, errors."""
import inspect

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from infomax.eval.fewshot import balanced_subset, few_label_accuracy
from infomax.eval.knn import default_chunk_size, weighted_knn
from infomax.eval.linear import DEFAULT_WEIGHT_DECAY, linear_probe, objective_and_gradient, stratified_split


def blobs(n_per_class, classes, dim, spread, seed=0, scale=1.0, draw=None):
    """Gaussian blobs around `seed`'s centres; `draw` (default `seed`) seeds the samples."""
    centres = torch.randn(classes, dim, generator=torch.Generator().manual_seed(seed)) * scale
    g = torch.Generator().manual_seed(seed if draw is None else draw + 1000)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    labels = labels[torch.randperm(labels.numel(), generator=g)]
    return centres[labels] + spread * torch.randn(labels.numel(), dim, generator=g), labels


def brute_force_knn(train, train_labels, test, k, temperature, classes):
    """Full similarity matrix, top-k, scatter of exp(sim / T), in float64."""
    sim = F.normalize(test.double(), dim=1) @ F.normalize(train.double(), dim=1).T
    values, index = sim.topk(k, dim=1)
    votes = torch.zeros(test.shape[0], classes, dtype=torch.float64)
    votes.scatter_add_(1, train_labels[index], torch.exp(values / temperature))
    return votes / votes.sum(1, keepdim=True)


# ---------------------------------------------------------------- weighted kNN

def test_knn_two_tight_clusters_is_perfect_and_shuffled_labels_are_chance():
    train, labels = blobs(100, 10, 32, spread=0.05, seed=1)
    test, test_labels = blobs(30, 10, 32, spread=0.05, seed=1, draw=1)
    assert weighted_knn(train, labels, test, test_labels).accuracy["top1"] == 100.0
    shuffled = labels[torch.randperm(labels.numel(), generator=torch.Generator().manual_seed(5))]
    assert weighted_knn(train, shuffled, test, test_labels).accuracy["top1"] < 25.0  # chance is 10


def test_knn_k1_on_its_own_training_set_is_perfect():
    x, y = torch.randn(300, 16), torch.randint(0, 7, (300,))
    result = weighted_knn(x, y, x, y, k=1)
    assert result.accuracy["top1"] == 100.0
    assert torch.equal(result.predictions, y)


@pytest.mark.parametrize("chunk_size", [1, 7, 64])
def test_knn_chunked_equals_unchunked(chunk_size):
    train, labels, test = torch.randn(500, 24), torch.randint(0, 12, (500,)), torch.randn(130, 24)
    whole = weighted_knn(train, labels, test, chunk_size=130)
    chunked = weighted_knn(train, labels, test, chunk_size=chunk_size)
    assert torch.equal(whole.predictions, chunked.predictions)
    torch.testing.assert_close(whole.scores, chunked.scores)


def test_knn_matches_brute_force_reference():
    train, labels = torch.randn(400, 20), torch.randint(0, 10, (400,))
    test, test_labels = torch.randn(150, 20), torch.randint(0, 10, (150,))
    for k, temperature in [(20, 0.07), (5, 0.5), (1, 0.07)]:
        reference = brute_force_knn(train, labels, test, k, temperature, 10)
        result = weighted_knn(train, labels, test, test_labels, k=k, temperature=temperature, chunk_size=33)
        torch.testing.assert_close(result.scores.double(), reference, rtol=1e-5, atol=1e-6)
        assert torch.equal(result.predictions, reference.argmax(1))
        ranked = reference.sort(dim=1, descending=True, stable=True).indices
        hit5 = (ranked[:, :5] == test_labels[:, None]).any(1) & (reference.gather(1, test_labels[:, None]).squeeze(1) > 0)
        assert result.accuracy["top1"] == pytest.approx(100.0 * float((reference.argmax(1) == test_labels).double().mean()))
        assert result.accuracy["top5"] == pytest.approx(100.0 * float(hit5.double().mean()))


def test_knn_vote_weighting_changes_the_answer():
    # one very close neighbour of class 0, two farther ones of class 1: weighted and plain majority disagree
    train = torch.tensor([[1.0, 0.14], [1.0, 1.0], [1.0, 1.1]])
    labels = torch.tensor([0, 1, 1])
    query = torch.tensor([[1.0, 0.0]])
    assert weighted_knn(train, labels, query, k=3, temperature=0.07).predictions.item() == 0
    assert weighted_knn(train, labels, query, k=3, temperature=1e3).predictions.item() == 1  # ~ unweighted vote


def test_knn_top5_at_least_top1_and_few_classes():
    train, labels = torch.randn(300, 8), torch.randint(0, 20, (300,))
    test, test_labels = torch.randn(200, 8), torch.randint(0, 20, (200,))
    acc = weighted_knn(train, labels, test, test_labels).accuracy
    assert acc["top5"] >= acc["top1"]
    small = weighted_knn(train, labels % 3, test, test_labels % 3, k=50).accuracy  # 3 classes, every one voted
    assert small["top5"] == 100.0


def test_knn_small_temperature_stays_finite_and_half_precision_is_accepted():
    train, labels, test = torch.randn(200, 16), torch.randint(0, 5, (200,)), torch.randn(40, 16)
    cold = weighted_knn(train, labels, test, temperature=1e-3)
    assert torch.isfinite(cold.scores).all()
    torch.testing.assert_close(cold.scores.sum(1), torch.ones(40))
    half = weighted_knn(train.half(), labels, test.half())
    full = weighted_knn(train.half().float(), labels, test.half().float())
    assert half.scores.dtype == torch.float32
    torch.testing.assert_close(half.scores, full.scores)


def test_knn_documented_defaults():
    # knn.py docstring and the DINO / MIRA protocol (mira paper Sec. 4.2): k = 20, T = 0.07
    parameters = inspect.signature(weighted_knn).parameters
    assert (parameters["k"].default, parameters["temperature"].default, parameters["topk"].default) == (20, 0.07, (1, 5))
    train, labels = torch.randn(300, 16), torch.randint(0, 6, (300,))
    test, test_labels = torch.randn(80, 16), torch.randint(0, 6, (80,))
    default = weighted_knn(train, labels, test, test_labels)
    explicit = weighted_knn(train, labels, test, test_labels, k=20, temperature=0.07, topk=(1, 5))
    assert torch.equal(default.scores, explicit.scores) and default.accuracy == explicit.accuracy


def test_knn_default_chunk_respects_the_budget():
    assert default_chunk_size(50_000) * 50_000 * 4 <= 256 * 2**20
    assert default_chunk_size(10**12) == 1


@pytest.mark.parametrize("case, match", [
    (lambda x, y: weighted_knn(x[:10], y[:10], x, k=20), "lower `k`"),
    (lambda x, y: weighted_knn(x, y[:-1], x), "one label per row"),
    (lambda x, y: weighted_knn(x, y, x, y[:5]), "one label per row"),
    (lambda x, y: weighted_knn(x.index_fill(0, torch.tensor([3]), float("nan")), y, x), "NaN"),
    (lambda x, y: weighted_knn(x, y, x[:0]), "at least 1 rows"),
    (lambda x, y: weighted_knn(x, y, x[:, :5]), "dimensions"),
    (lambda x, y: weighted_knn(x, y, x, temperature=0.0), "temperature"),
    (lambda x, y: weighted_knn(x, y, x, y, num_classes=2), "num_classes"),
    (lambda x, y: weighted_knn(x, y.float(), x), "integer"),
    (lambda x, y: weighted_knn(x, y, x, chunk_size=0), "chunk_size"),
])
def test_knn_errors(case, match):
    x, y = torch.randn(50, 8), torch.randint(0, 4, (50,))
    with pytest.raises(ValueError, match=match):
        case(x, y)


# ---------------------------------------------------------------- linear probe

def test_linear_probe_separates_gaussian_blobs():
    train, labels = blobs(60, 4, 16, spread=0.3, seed=2, scale=2.0)
    test, test_labels = blobs(50, 4, 16, spread=0.3, seed=2, scale=2.0, draw=1)
    result = linear_probe(train, labels, test, test_labels)
    assert result.accuracy["top1"] >= 99.0
    assert result.accuracy["top5"] == 100.0
    assert len(result.search) > 1 and result.weight_decay in [r["weight_decay"] for r in result.search]
    torch.testing.assert_close(result.logits(test).argmax(1), result.predictions)


def test_linear_probe_regularisation_is_chosen_on_the_validation_split():
    g = torch.Generator().manual_seed(3)
    noise, labels = torch.randn(240, 40, generator=g), torch.randint(0, 3, (240,), generator=g)
    grid = (1e-4, 1e-2, 1.0)
    by_loss = linear_probe(noise, labels, noise[:30], labels[:30], weight_decays=grid, select="loss")
    assert by_loss.weight_decay == 1.0  # pure noise: the strongest regularisation predicts held-out data best
    assert min(by_loss.search, key=lambda r: r["val_loss"])["weight_decay"] == 1.0
    train, labels = blobs(40, 3, 10, spread=1.5, seed=4)
    result = linear_probe(train, labels, train[:20], labels[:20])
    top = max(r["val_top1"] for r in result.search)
    assert [r for r in result.search if r["weight_decay"] == result.weight_decay][0]["val_top1"] == top


def test_linear_probe_matches_scikit_learn():
    sklearn = pytest.importorskip("sklearn.linear_model")
    train, labels = blobs(80, 5, 12, spread=1.2, seed=6, scale=0.8)
    test, test_labels = blobs(200, 5, 12, spread=1.2, seed=6, scale=0.8, draw=1)
    weight_decay = 1e-2
    ours = linear_probe(train, labels, test, test_labels, weight_decays=(weight_decay,), tolerance=1e-7)
    mean, std = train.mean(0), train.std(0, correction=0)
    reference = sklearn.LogisticRegression(C=1 / (weight_decay * train.shape[0]), tol=1e-10, max_iter=10_000)
    reference.fit(((train - mean) / std).numpy(), labels.numpy())
    theirs = 100 * reference.score(((test - mean) / std).numpy(), test_labels.numpy())
    assert abs(ours.accuracy["top1"] - theirs) <= 2.0
    np.testing.assert_allclose(ours.weight.numpy(), reference.coef_, atol=2e-3)


def test_linear_probe_is_deterministic():
    train, labels = blobs(30, 4, 12, spread=1.0, seed=8)
    first = linear_probe(train, labels, train, labels, seed=3)
    second = linear_probe(train, labels, train, labels, seed=3)
    assert first.accuracy == second.accuracy and first.weight_decay == second.weight_decay
    assert torch.equal(first.weight, second.weight)


def test_linear_probe_one_sample_per_class_skips_the_split():
    train, labels = blobs(1, 5, 8, spread=0.1, seed=9)
    test, test_labels = blobs(10, 5, 8, spread=0.1, seed=9, draw=1)
    result = linear_probe(train, labels, test, test_labels)
    assert result.search == [] and result.weight_decay == DEFAULT_WEIGHT_DECAY
    assert result.accuracy["top1"] >= 90.0


def test_linear_probe_handles_classes_absent_from_the_validation_split():
    train, labels = blobs(20, 3, 8, spread=0.2, seed=10)
    train, labels = torch.cat([train, torch.full((1, 8), 5.0)]), torch.cat([labels, torch.tensor([3])])  # class 3: one sample
    fit, held = stratified_split(labels, 0.2, seed=0)
    assert 3 not in labels[held].tolist() and 3 in labels[fit].tolist()
    result = linear_probe(train, labels, train, labels)
    assert result.search and result.weight.shape == (4, 8)
    assert result.accuracy["top1"] >= 95.0


def test_stratified_split_is_a_seeded_partition():
    labels = torch.tensor([0] * 10 + [1] * 5 + [2] * 1)
    fit, held = stratified_split(labels, 0.2, seed=1)
    assert sorted(fit.tolist() + held.tolist()) == list(range(16))
    assert torch.bincount(labels[held], minlength=3).tolist() == [2, 1, 0]
    assert torch.equal(held, stratified_split(labels, 0.2, seed=1)[1])


def test_logistic_gradient_matches_autograd():
    x, y = torch.randn(30, 6, dtype=torch.float64), torch.randint(0, 4, (30,))
    params = torch.randn(7, 4, dtype=torch.float64, requires_grad=True)
    loss = F.cross_entropy(x @ params[:-1] + params[-1], y) + 0.5 * 0.3 * params[:-1].square().sum()
    loss.backward()
    ours, grad = objective_and_gradient(params.detach(), x, y, 0.3)
    torch.testing.assert_close(ours, loss.detach())
    torch.testing.assert_close(grad, params.grad)


@pytest.mark.parametrize("kwargs, match", [
    ({"labels": torch.zeros(20, dtype=torch.long)}, "at least two classes"),
    ({"val_fraction": 1.0}, "val_fraction"),
    ({"weight_decays": ()}, "weight_decays"),
    ({"select": "best"}, "select"),
])
def test_linear_probe_errors(kwargs, match):
    x, labels = torch.randn(20, 4), kwargs.pop("labels", torch.arange(20) % 2)
    with pytest.raises(ValueError, match=match):
        linear_probe(x, labels, x, labels, **kwargs)


# ---------------------------------------------------------------- few-label subsets

def test_balanced_subset_counts_per_class_and_fraction():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    index = balanced_subset(labels, per_class=7, seed=0)
    assert torch.bincount(labels[index]).tolist() == [7, 7, 7]
    assert torch.equal(index, index.sort().values) and index.unique().numel() == 21
    assert torch.bincount(labels[balanced_subset(labels, fraction=0.1)]).tolist() == [3, 3, 3]  # round(10 / 3)
    assert torch.bincount(labels[balanced_subset(labels, fraction=0.001)]).tolist() == [1, 1, 1]  # at least one
    assert torch.equal(balanced_subset(labels.numpy(), per_class=7), index)  # numpy labels give the same subset


def test_balanced_subset_never_draws_unlabelled_rows():
    labels = torch.tensor([-1] * 40 + [0] * 10 + [1] * 10)
    index = balanced_subset(labels, fraction=0.5, seed=2)  # round(0.5 * 20 / 2) = 5 per class
    assert torch.bincount(labels[index]).tolist() == [5, 5]
    with pytest.raises(ValueError, match="no class label"):
        balanced_subset(torch.full((5,), -1), per_class=1)


def test_balanced_subset_is_seeded_and_nested():
    labels = torch.arange(1000) % 10
    a, b, c = (balanced_subset(labels, per_class=10, seed=s) for s in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    small = balanced_subset(labels, per_class=3, seed=0)
    assert set(small.tolist()) <= set(a.tolist())


@pytest.mark.parametrize("kwargs, match", [
    ({"per_class": 6}, "class 2 has only 5 images"),
    ({}, "exactly one"),
    ({"per_class": 2, "fraction": 0.1}, "exactly one"),
    ({"fraction": 1.5}, "fraction"),
    ({"per_class": 0}, "per_class"),
])
def test_balanced_subset_errors(kwargs, match):
    labels = torch.tensor([0] * 9 + [1] * 8 + [2] * 5)
    with pytest.raises(ValueError, match=match):
        balanced_subset(labels, **kwargs)
    with pytest.raises(ValueError, match="empty"):
        balanced_subset(torch.tensor([], dtype=torch.long), per_class=1)


@pytest.mark.parametrize("protocol", ["knn", "linear"])
def test_few_label_accuracy_over_seeds(protocol):
    train, labels = blobs(40, 4, 12, spread=0.3, seed=11, scale=2.0)
    test, test_labels = blobs(25, 4, 12, spread=0.3, seed=11, scale=2.0, draw=1)
    options = {"k": 5} if protocol == "knn" else {"weight_decays": (1e-2, 1e-1)}
    result = few_label_accuracy(train, labels, test, test_labels, per_class=5, seeds=(0, 1), protocol=protocol, **options)
    assert result["n_labelled"] == 20 and len(result["per_seed"]) == 2 and result["seeds"] == [0, 1]
    assert result["mean"] >= 95.0 and result["std"] >= 0.0 and result["min"] <= result["mean"] <= result["max"]
    with pytest.raises(ValueError, match="protocol"):
        few_label_accuracy(train, labels, test, test_labels, per_class=5, protocol="svm")
