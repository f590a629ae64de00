"""MIRA's fixed point (Eq. 3-5) and SwAV's Sinkhorn-Knopp."""
import importlib
import inspect
import math

import pytest
import torch

from infomax.assign import mira, mira_objective, sinkhorn

TAU, BETA, ITERS = 0.225, 2 / 3, 30  # mira paper Sec. 4.1: tau_t = 0.225, beta = 2/3, 30 fixed-point steps


def cosine_logits(b=64, k=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    protos = torch.nn.functional.normalize(torch.randn(k, 16, generator=g), dim=1)
    z = torch.nn.functional.normalize(protos[torch.randint(0, k // 2, (b,), generator=g)] + 0.7 * torch.randn(b, 16, generator=g), dim=1)
    return (z @ protos.T).double()


def test_mira_satisfies_the_optimality_condition_eq4():
    logits = cosine_logits()
    w = mira(logits, TAU, BETA, iters=300)
    p = torch.softmax(logits / TAU, 1)
    a = 1 - BETA
    wbar = w.mean(0)
    rhs = wbar.pow(-BETA / a) * p.pow(1 / a)
    rhs = rhs / rhs.sum(1, keepdim=True)
    assert (w - rhs).abs().max().item() < 1e-6
    torch.testing.assert_close(w.sum(1), torch.ones(64, dtype=torch.float64))


def test_mira_is_the_unique_minimiser_of_eq3():
    logits = cosine_logits(seed=1)
    w = mira(logits, TAU, BETA, iters=300)
    best = mira_objective(w, logits, TAU, BETA)
    g = torch.Generator().manual_seed(2)
    for scale in (1e-3, 1e-2, 1e-1, 1.0):
        for _ in range(10):
            perturbed = w * torch.exp(scale * torch.randn(w.shape, generator=g, dtype=torch.float64))
            perturbed = perturbed / perturbed.sum(1, keepdim=True)
            assert mira_objective(perturbed, logits, TAU, BETA) > best


def test_mira_marginals_converge_and_fight_collapse():
    logits = cosine_logits()
    w, marginals = mira(logits, TAU, BETA, iters=50, return_marginals=True)
    assert marginals.shape == (51, 12)
    steps = (marginals[1:] - marginals[-1]).abs().sum(1)
    assert steps[-1] < 1e-8 and steps[5] < steps[0]
    torch.testing.assert_close(marginals[0], torch.softmax(logits / TAU, 1).mean(0))
    # the marginal-entropy term lifts rare clusters: the marginal is more even than
    # that of the same sharpening p^(1/(1-beta)) without the u^(-beta/(1-beta)) weights
    entropy = lambda q: -(q * q.clamp_min(1e-300).log()).sum()  # noqa: E731
    sharpened = torch.softmax(logits / TAU / (1 - BETA), 1)
    assert entropy(w.mean(0)) > entropy(sharpened.mean(0)) + 0.05
    assert w.dtype == logits.dtype and not w.requires_grad


def test_mira_beta_zero_is_the_sharpened_model_probability():
    logits = cosine_logits()
    torch.testing.assert_close(mira(logits, TAU, beta=0.0, iters=5), torch.softmax(logits / TAU, 1))


def test_mira_bad_input():
    with pytest.raises(ValueError, match="beta"):
        mira(torch.randn(4, 3), beta=1.0)
    with pytest.raises(ValueError, match="logits"):
        mira(torch.full((4, 3), float("nan")))
    assert torch.isfinite(mira(torch.randn(8, 5) * 1e6)).all()


def test_sinkhorn_equipartitions_prototypes():
    scores = cosine_logits(b=60, k=12).float()
    q = sinkhorn(scores, epsilon=0.05, iters=500)
    torch.testing.assert_close(q.sum(1), torch.ones(60))
    torch.testing.assert_close(q.sum(0), torch.full((12,), 60 / 12), atol=1e-3, rtol=0)
    rough = sinkhorn(scores, epsilon=0.05, iters=3)
    assert (rough.sum(0) - 5).abs().max() > (q.sum(0) - 5).abs().max()


def test_sinkhorn_matches_the_swav_linear_domain_recipe():
    scores = cosine_logits(b=32, k=8)
    q = torch.exp(scores / 0.05).T
    q /= q.sum()
    k, b = q.shape
    for _ in range(3):
        q /= q.sum(dim=1, keepdim=True)
        q /= k
        q /= q.sum(dim=0, keepdim=True)
        q /= b
    torch.testing.assert_close(sinkhorn(scores, 0.05, 3), (q * b).T)
    assert torch.isfinite(sinkhorn(scores * 1e6)).all()
    assert math.isclose(sinkhorn(scores, 0.05, 3).sum().item(), 32, rel_tol=1e-9)


def _log_domain_by_hand(scores, epsilon=0.05, iters=3):
    log_q = scores.double() / epsilon
    b, k = log_q.shape
    for _ in range(iters):
        log_q = log_q - torch.logsumexp(log_q, dim=0) - math.log(k)
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - math.log(b)
    return (log_q + math.log(b)).exp()


def test_sinkhorn_takes_the_scaling_path_at_swav_queue_size_and_the_log_domain_where_that_underflows(monkeypatch):
    module = importlib.import_module("infomax.assign.sinkhorn")  # the module, which the package's `sinkhorn` function shadows
    scores = torch.nn.functional.normalize(torch.randn(4096, 128), dim=1) @ torch.nn.functional.normalize(torch.randn(3000, 128), dim=1).T
    with monkeypatch.context() as patch:  # SwAV's regime (256 + 3840 queued rows, 3000 prototypes) never needs the slow path
        patch.setattr(module, "_log_domain", lambda *a: pytest.fail("cosine scores fell back to the log domain"))
        fast = sinkhorn(scores)
    torch.testing.assert_close(fast.double(), _log_domain_by_hand(scores), atol=1e-6, rtol=1e-4)  # float32 output
    far = cosine_logits(b=24, k=6)
    far[:12] -= 1e3  # half the rows underflow exp(S / eps) after the common shift
    torch.testing.assert_close(sinkhorn(far), _log_domain_by_hand(far), atol=1e-12, rtol=1e-9)


def defaults(fn):
    return {k: p.default for k, p in inspect.signature(fn).parameters.items() if p.default is not inspect.Parameter.empty}


def test_documented_defaults():
    logits = cosine_logits()
    assert {k: defaults(mira)[k] for k in ("temperature", "beta", "iters")} == {"temperature": TAU, "beta": BETA, "iters": ITERS}
    assert torch.equal(mira(logits), mira(logits, temperature=TAU, beta=BETA, iters=ITERS))
    w = mira(logits)
    assert defaults(mira_objective) == {"temperature": TAU, "beta": BETA}
    assert torch.equal(mira_objective(w, logits), mira_objective(w, logits, TAU, BETA))
    # SwAV (Caron et al., 2020, Sec. 3.1 and App. A): epsilon = 0.05, 3 Sinkhorn iterations
    assert {k: defaults(sinkhorn)[k] for k in ("epsilon", "iters")} == {"epsilon": 0.05, "iters": 3}
    assert torch.equal(sinkhorn(logits), sinkhorn(logits, epsilon=0.05, iters=3))


def test_mira_initialisations_reach_the_same_fixed_point_and_differ_on_the_way():
    logits = cosine_logits(b=96, k=12, seed=3)
    paper, code = mira(logits, iters=400), mira(logits, iters=400, init="sharpened")
    torch.testing.assert_close(paper, code, atol=1e-9, rtol=0)
    assert (mira(logits, iters=2) - mira(logits, iters=2, init="sharpened")).abs().max() > 1e-4
    _, marginals = mira(logits, iters=0, init="sharpened", return_marginals=True)  # the authors' u_0
    expected = torch.softmax(logits / (TAU * (1 - BETA)), 1).mean(0) ** (1 - BETA)
    torch.testing.assert_close(marginals[0], expected)
    assert defaults(mira)["init"] == "mean"
    with pytest.raises(ValueError, match="init"):
        mira(logits, init="uniform")


def _naive_sinkhorn(scores, epsilon=0.05, iters=3):
    """The linear-domain recipe, run in the input's dtype (the anchors' fp16 SwAV: swav #67)."""
    q = torch.exp(scores / epsilon).T
    q = q / q.sum()
    for _ in range(iters):
        q = q / q.sum(dim=1, keepdim=True) / q.shape[0]
        q = q / q.sum(dim=0, keepdim=True) / q.shape[1]
    return (q * q.shape[1]).T


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_assigners_stay_finite_where_the_linear_domain_recipe_overflows(dtype):
    scores = cosine_logits(b=64, k=12).to(dtype)  # cosine scores in [-1, 1]; exp(1 / 0.05) overflows float16
    big = scores * 30  # unnormalised embeddings (or a high lr) give scores far outside [-1, 1]
    assert not torch.isfinite(_naive_sinkhorn(big)).all()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for s in (scores, big):
            q, w = sinkhorn(s), mira(s)
            assert q.dtype == w.dtype == dtype and torch.isfinite(q).all() and torch.isfinite(w).all()
    torch.testing.assert_close(sinkhorn(scores).double(), sinkhorn(scores.double()), atol=1e-3, rtol=1e-2)  # float64 inside: only the output is rounded
