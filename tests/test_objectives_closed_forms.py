"""Closed forms, known results and direct transcriptions of the papers' pseudocode."""
import math

import pytest
import torch
import torch.nn.functional as F

import infomax.objectives as O
from infomax.objectives.smi import gaussian_mi
from infomax.objectives.twinturbo import twin_term


def test_gaussian_mi_matches_closed_form():
    rho = torch.linspace(-0.999, 0.999, 201, dtype=torch.float64)
    expected = -0.5 * torch.log(1 - rho**2)
    torch.testing.assert_close(gaussian_mi(rho, eps=1e-300), expected, rtol=1e-10, atol=1e-12)
    assert torch.allclose(gaussian_mi(torch.tensor([1.0]), eps=1e-3), torch.tensor([-0.5 * math.log(1e-3)]))
    small = torch.tensor([1e-3], dtype=torch.float64)
    assert gaussian_mi(small, eps=1e-300).item() == pytest.approx(small.item() ** 2 / 2, rel=1e-5)


def test_smi_matches_direct_transcription():
    z_a, z_b = torch.randn(7, 12, dtype=torch.float64), torch.randn(7, 12, dtype=torch.float64)
    eps, lambd = 1e-3, 0.7
    corr = lambda a, b: torch.tensor([[torch.corrcoef(torch.stack([a[i], b[j]]))[0, 1] for j in range(7)] for i in range(7)])  # noqa: E731
    mi = lambda r: -0.5 * torch.log(1 - r**2 + eps)  # noqa: E731
    off = ~torch.eye(7, dtype=torch.bool)
    r_ab, r_aa, r_bb = corr(z_a, z_b), corr(z_a, z_a), corr(z_b, z_b)
    expected = -mi(r_ab.diagonal()).mean() + lambd * (mi(r_ab[off]).mean() + mi(r_aa[off]).mean() + mi(r_bb[off]).mean())
    torch.testing.assert_close(O.smi(z_a, z_b, lambd=lambd, eps=eps), expected.double())
    cross_only = -mi(r_ab.diagonal()).mean() + lambd * mi(r_ab[off]).mean()
    torch.testing.assert_close(O.smi(z_a, z_b, lambd=lambd, eps=eps, within_view=False), cross_only.double())
    summed = O.smi(z_a, z_b, lambd=lambd, eps=eps, reduction="sum")
    expected_sum = -mi(r_ab.diagonal()).sum() + lambd * (mi(r_ab[off]).sum() + mi(r_aa[off]).sum() + mi(r_bb[off]).sum())
    torch.testing.assert_close(summed, expected_sum.double())


def test_smi_rewards_aligned_views():
    z = torch.randn(32, 256)
    aligned = O.smi(z, z + 0.01 * torch.randn_like(z))
    unrelated = O.smi(z, torch.randn_like(z))
    assert aligned < unrelated - 1.0


def uniform_m_spacings_mean(n, m):
    """E[H] for U[0, 1] columns: each m-spacing is Beta(m, n + 1 - m), E log = psi(m) - psi(n + 1)."""
    digamma = lambda v: torch.special.digamma(torch.tensor(float(v), dtype=torch.float64)).item()  # noqa: E731
    return math.log((n + 1) / m) + digamma(m) - digamma(n + 1)


# sd of one column's estimate for U[0, 1] at n = 20000, m = 141: 6.0e-4 (measured over 200 draws).
# 5 sd of a d-column mean rejects m + 1 (24 sd off at d = 4), m = n^(1/3) (38 sd) and m = 25 (40 sd).
M_SPACINGS_SD_20000 = 6.0e-4


def test_m_spacings_entropy_of_uniforms_is_its_expected_value():
    n, d = 20000, 4
    u = torch.rand(n, d, dtype=torch.float64)
    expected = uniform_m_spacings_mean(n, round(math.sqrt(n)))  # -0.0035, the O(1/m) bias
    # a = 1e-3 puts the spacings within reach of the 1e-7 floor: a floor of 1e-3 adds log 2 there
    for a in (1.0, 0.1, 5.0, 1e-3):
        value = O.m_spacings_entropy(a * u).item()
        assert abs(value - (expected + math.log(a))) < 5 * M_SPACINGS_SD_20000 / math.sqrt(d), a


def test_m_spacings_entropy_of_gaussian_and_per_column():
    x = torch.randn(20000, 2, dtype=torch.float64) * torch.tensor([1.0, 3.0], dtype=torch.float64)
    per_col = O.m_spacings_entropy(x, reduction="none")
    expected = 0.5 * torch.log(2 * math.pi * math.e * torch.tensor([1.0, 9.0], dtype=torch.float64))
    torch.testing.assert_close(per_col, expected, atol=0.03, rtol=0)


def test_m_spacings_needs_more_samples_than_m():
    with pytest.raises(ValueError, match="m"):
        O.m_spacings_entropy(torch.rand(5, 3), m=5)


def reference_cov_estimator(x):
    """e2mc Algorithm 1, sample_cov_estimator."""
    n, d = x.shape
    x = x - x.mean(dim=0)
    cov = (x.T @ x) / (n - 1)
    return (cov - torch.diag(cov.diagonal())).pow(2).sum() / d


def test_offdiag_covariance_matches_algorithm_1_and_vanishes_for_independent_columns():
    x = torch.randn(50, 8, dtype=torch.float64)
    for form in ("feature", "sample"):
        torch.testing.assert_close(O.offdiag_covariance(x, form=form), reference_cov_estimator(x))
    independent = torch.rand(200000, 4, dtype=torch.float64)
    assert O.offdiag_covariance(independent).item() < 1e-6
    correlated = torch.cat([independent[:, :1], independent[:, :1]], 1)
    assert O.offdiag_covariance(correlated).item() == pytest.approx(2 * (1 / 12) ** 2 / 2, rel=0.02)


def reference_m_spacings_estimator(x):
    """e2mc Algorithm 1, m_spacings_estimator."""
    n = x.shape[0]  # batch size
    m = round(math.sqrt(n))  # window size
    eps = 1e-7  # small constant to avoid underflow
    x, _ = torch.sort(x, dim=0)  # order statistics
    x = x[m:] - x[:n - m]  # m-spaced differences
    x = x * (n + 1) / m
    marginal_ents = torch.log(x + eps).sum(dim=0) / (n - m)
    return marginal_ents.mean()


def reference_max_ent_criterion(x, type):
    """e2mc Algorithm 1, max_ent_criterion."""
    if type == "hypercube":
        x_hyper = torch.sigmoid(x)
    elif type == "hypersphere":
        x_hyper = 0.5 * (1 + torch.erf(x / math.sqrt(2)))
    return reference_m_spacings_estimator(x_hyper), reference_cov_estimator(x_hyper)


@pytest.mark.parametrize("n", [64, 50, 7])
def test_e2mc_terms_match_algorithm_1(n):
    z = torch.randn(n, 16, dtype=torch.float64)
    for space in ("hypercube", "hypersphere"):
        entropy, covariance = reference_max_ent_criterion(z, space)
        terms = O.e2mc(z, space=space)
        torch.testing.assert_close(terms["entropy"], entropy)
        torch.testing.assert_close(terms["covariance"], covariance)
    torch.testing.assert_close(O.m_spacings_entropy(z), reference_m_spacings_estimator(z))
    # a column of spacings near 1e-7: the floor is part of the estimator, not a detail
    tight = torch.rand(n, 2, dtype=torch.float64) * 1e-6
    torch.testing.assert_close(O.m_spacings_entropy(tight), reference_m_spacings_estimator(tight))
    with pytest.raises(ValueError, match="space"):
        O.e2mc(z, space="torus")


def test_e2mc_hypersphere_makes_standard_normal_coordinates_uniform():
    n, d = 20000, 3
    big = O.e2mc(torch.randn(n, d, dtype=torch.float64), space="hypersphere")
    expected = uniform_m_spacings_mean(n, round(math.sqrt(n)))
    assert abs(big["entropy"].item() - expected) < 5 * M_SPACINGS_SD_20000 / math.sqrt(d)


def reference_barlow(z1, z2, lambd):
    """Barlow Twins Algorithm 1, with BatchNorm1d(affine=False) in training mode."""
    bn = torch.nn.BatchNorm1d(z1.shape[1], affine=False).double()
    c = bn(z1).T @ bn(z2) / z1.shape[0]
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    off_diag = (c - torch.diag(c.diagonal())).pow(2).sum()
    return on_diag + lambd * off_diag


@pytest.mark.parametrize("shape", [(16, 5), (5, 16)])
@pytest.mark.parametrize("form", ["auto", "feature", "sample"])
def test_barlow_twins_matches_paper_pseudocode(shape, form):
    z1, z2 = torch.randn(*shape, dtype=torch.float64), torch.randn(*shape, dtype=torch.float64)
    torch.testing.assert_close(O.barlow_twins(z1, z2, lambd=5e-3, form=form), reference_barlow(z1, z2, 5e-3))


def reference_vicreg(x, y, sim, var, cov):
    """VICReg reference implementation (Bardes et al., 2022, Algorithm 1)."""
    n, d = x.shape
    repr_loss = F.mse_loss(x, y)
    x, y = x - x.mean(dim=0), y - y.mean(dim=0)
    std_x, std_y = torch.sqrt(x.var(dim=0) + 1e-4), torch.sqrt(y.var(dim=0) + 1e-4)
    std_loss = torch.mean(F.relu(1 - std_x)) / 2 + torch.mean(F.relu(1 - std_y)) / 2
    cov_x, cov_y = (x.T @ x) / (n - 1), (y.T @ y) / (n - 1)
    off = lambda c: (c - torch.diag(c.diagonal())).pow(2).sum() / d  # noqa: E731
    return sim * repr_loss + var * std_loss + cov * (off(cov_x) + off(cov_y))


@pytest.mark.parametrize("form", ["feature", "sample"])
def test_vicreg_and_vcreg_match_reference(form):
    x, y = torch.randn(12, 9, dtype=torch.float64) * 0.5, torch.randn(12, 9, dtype=torch.float64) * 0.5
    torch.testing.assert_close(O.vicreg(x, y, form=form), reference_vicreg(x, y, 25.0, 25.0, 1.0))
    # VCReg is VICReg without invariance on one view: the reference with both views equal to x
    expected = reference_vicreg(x, x, 0.0, 1.0, 0.02)
    torch.testing.assert_close(O.vcreg(x, var=1.0, cov=0.04, form=form), expected)


def reference_nt_xent(z_a, z_b, tau):
    z = F.normalize(torch.cat([z_a, z_b]), dim=1)
    n2 = z.shape[0]
    losses = []
    for i in range(n2):
        pos = (i + n2 // 2) % n2
        others = torch.stack([z[i] @ z[k] / tau for k in range(n2) if k != i])
        losses.append(-(z[i] @ z[pos] / tau) + torch.logsumexp(others, 0))
    return torch.stack(losses).mean()


def test_info_nce_matches_loop_and_known_limits():
    z_a, z_b = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 4, dtype=torch.float64)
    torch.testing.assert_close(O.info_nce(z_a, z_b, temperature=0.3), reference_nt_xent(z_a, z_b, 0.3))
    n = 64
    random = O.info_nce(torch.randn(n, 4096), torch.randn(n, 4096), temperature=1.0)
    assert random.item() == pytest.approx(math.log(2 * n - 1), abs=0.02)
    basis = torch.eye(n)
    assert O.info_nce(basis, basis, temperature=0.01).item() < 1e-6


def test_hydes_signs_and_values():
    m, d, kappa = 16, 64, 1.0
    ids = torch.arange(m).repeat(2)
    collapsed = torch.ones(2 * m, d)
    assert O.hydes(collapsed, ids, kappa=kappa).item() == pytest.approx(0.0, abs=1e-6)
    spread = torch.eye(d)[:m].repeat(2, 1)
    terms = O.hydes(spread, ids, kappa=kappa, return_terms=True)
    # positives coincide (H_local = -kappa); the other 2m-2 views are orthogonal
    h_global = -math.log((math.exp(kappa) + (2 * m - 2)) / (2 * m - 1))
    assert terms["local_entropy"].item() == pytest.approx(-kappa, abs=1e-6)
    assert terms["global_entropy"].item() == pytest.approx(h_global, abs=1e-6)
    assert terms["loss"].item() < -0.9 * kappa
    opposed = torch.cat([torch.eye(d)[:m], -torch.eye(d)[:m]])  # spread, views pointing apart
    assert O.hydes(opposed, ids, kappa=kappa).item() > 0.9 * kappa
    with pytest.raises(ValueError, match="two views"):
        O.hydes(torch.randn(4, 3), torch.tensor([0, 0, 1, 2]))


def test_alignment_uniformity_mmcr_closed_forms():
    z = torch.randn(10, 5)
    assert O.alignment(z, 3 * z).item() == pytest.approx(0.0, abs=1e-6)
    assert O.alignment(z, -z).item() == pytest.approx(4.0, abs=1e-5)
    antipodal = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert O.uniformity(antipodal, t=2.0).item() == pytest.approx(-8.0, abs=1e-5)
    assert O.uniformity(torch.ones(5, 3)).item() == pytest.approx(0.0, abs=1e-5)
    sphere = torch.randn(2000, 3, dtype=torch.float64)
    # on S^2 the inner product u.v is uniform on [-1, 1]: E exp(-4(1 - s)) = (1 - e^-8) / 8
    assert O.uniformity(sphere).item() == pytest.approx(math.log((1 - math.exp(-8)) / 8), abs=0.05)
    basis = torch.eye(6)
    assert O.mmcr([basis, basis]).item() == pytest.approx(-6.0, abs=1e-5)
    assert O.mmcr([basis, -basis]).item() == pytest.approx(0.0, abs=1e-5)


def test_swapped_prediction_is_cross_entropy_of_swapped_views():
    w1, w2 = torch.softmax(torch.randn(8, 5), 1), torch.softmax(torch.randn(8, 5), 1)
    s1, s2 = torch.randn(8, 5), torch.randn(8, 5)
    ce = lambda w, s: -(w * torch.log_softmax(s / 0.1, 1)).sum(1).mean()  # noqa: E731
    expected = (ce(w1, s2) + ce(w2, s1)) / 2
    torch.testing.assert_close(O.swapped_prediction([w1, w2], [s1, s2]), expected)
    s3 = torch.randn(8, 5)
    multi = O.swapped_prediction([w1, w2], [s1, s2, s3])
    torch.testing.assert_close(multi, (ce(w1, s2) + ce(w1, s3) + ce(w2, s1) + ce(w2, s3)) / 4)


def test_swapped_prediction_targets_carry_no_gradient():
    target_logits = torch.randn(8, 5, requires_grad=True)
    s1, s2 = torch.randn(8, 5, requires_grad=True), torch.randn(8, 5, requires_grad=True)
    w = torch.softmax(target_logits, 1)
    O.swapped_prediction([w, w], [s1, s2]).backward()
    assert target_logits.grad is None and s1.grad is not None and s2.grad is not None


@pytest.mark.parametrize("rescale", ["softmax", "sigmoid"])
def test_twinturbo_task_losses(rescale):
    logits, y = torch.randn(9, 4, dtype=torch.float64), torch.randint(0, 4, (9,))
    p = torch.softmax(logits, 1) if rescale == "softmax" else torch.sigmoid(logits)
    p_y = p[torch.arange(9), y]
    torch.testing.assert_close(O.cat_cross(logits, y, rescale=rescale), -p_y.log().mean())
    known_term = torch.log(p[:, y].mean(dim=0)).mean()  # mean_i log mean_j sigma_{y_i}(l_j)
    torch.testing.assert_close(O.cat_twin(logits, y, rescale=rescale), O.cat_cross(logits, y, rescale=rescale) + known_term)
    torch.testing.assert_close(twin_term(p.log(), y), known_term)
    one_hot = F.one_hot(y, 4).double()
    bce = -(one_hot * p.log() + (1 - one_hot) * (1 - p).log()).sum(1).mean()
    torch.testing.assert_close(O.bin_cross(logits, y, rescale=rescale), bce)


def test_bin_cross_softmax_is_exact_for_confident_logits():
    logits = torch.tensor([[40.0, 0.0, -3.0]])
    value = O.bin_cross(logits, torch.tensor([1]), rescale="softmax")
    # log(1 - p_0) = log(e^0 + e^-3) - logsumexp(logits); p_0 rounds to 1 in float32
    lse = torch.logsumexp(logits.double(), 1)
    log_p = logits.double() - lse
    expected = -(log_p[0, 1] + torch.log(-torch.expm1(log_p[0, 2])) + torch.logsumexp(logits[0, 1:].double(), 0) - lse[0])
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    logits.requires_grad_(True)
    O.bin_cross(logits, torch.tensor([1]), rescale="softmax").backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0.5


def test_critic_losses_are_eq_26():
    real, fake = torch.randn(7, 1, dtype=torch.float64), torch.randn(5, 1, dtype=torch.float64)
    d_real, d_fake = torch.sigmoid(real), torch.sigmoid(fake)
    terms = O.critic_losses(real, fake)
    eq26 = d_real.log().mean() + (1 - d_fake).log().mean()
    torch.testing.assert_close(terms["discriminator"], -eq26)
    torch.testing.assert_close(terms["generator"], (1 - d_fake).log().mean())


def test_latent_nce_is_eq_27_with_detached_target():
    z = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    target = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    s = F.normalize(z, dim=1) @ F.normalize(target, dim=1).T
    expected = -(s.diagonal() - torch.log(s.exp().mean(1))).mean()
    loss = O.latent_nce(z, target)
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert target.grad is None and z.grad is not None
    same = torch.eye(6, dtype=torch.float64)
    assert O.latent_nce(same, same).item() == pytest.approx(-(1 - math.log((math.e + 5) / 6)), abs=1e-9)


def test_latent_nce_with_classes_keeps_only_other_classes_as_negatives():
    # Rows 0, 1 share class 0; rows 2, 3 are classes 1, 2. Anchor 0's denominator: itself, rows 2, 3.
    z = torch.eye(4, dtype=torch.float64)
    target = torch.tensor([[1.0, 0, 0, 0], [1.0, 0, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]], dtype=torch.float64)
    classes = torch.tensor([0, 0, 1, 2])
    e = math.e
    by_hand = [-(1 - math.log((e + 1 + 1) / 3)),  # s_00 = 1, s_02 = s_03 = 0
               -(0 - math.log((1 + 1 + 1) / 3)),  # anchor 1 = e_1 matches no target: s = 0 throughout
               -(1 - math.log((1 + 1 + e + 1) / 4)),  # class 1: every other row is another class
               -(1 - math.log((1 + 1 + 1 + e) / 4))]
    torch.testing.assert_close(O.latent_nce(z, target, classes), torch.tensor(by_hand, dtype=torch.float64).mean())
    # With every row its own class, nothing is masked: the all-rows form of the augment term.
    a, b = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(O.latent_nce(a, b, torch.arange(5)), O.latent_nce(a, b))
