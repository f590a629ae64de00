"""Geometry metrics against known answers on constructed embeddings."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.special import i0

from infomax.eval import geometry as g


def _sphere(n: int, d: int, seed: int = 0) -> torch.Tensor:
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True)


@pytest.fixture(scope="module")
def gaussian() -> torch.Tensor:
    return torch.randn(4000, 32, generator=torch.Generator().manual_seed(1))


# --- rank ---------------------------------------------------------------------------------

def test_identity_and_orthonormal_rows_have_full_rank():
    d = 24
    q, _ = torch.linalg.qr(torch.randn(d, d, dtype=torch.float64))
    for z in (torch.eye(d), q, 3.0 * q):
        assert g.embedding_rank(z) == d
        assert g.effective_rank(z) == pytest.approx(d, rel=1e-4)  # RankMe's eps adds ~1e-5
    rows = q[:10]  # 10 orthonormal rows in R^24
    assert g.embedding_rank(rows) == 10
    assert g.effective_rank(rows) == pytest.approx(10, rel=1e-4)


def test_identical_rows_have_rank_one():
    z = torch.tensor([[0.3, -1.2, 2.0, 0.7]]).repeat(50, 1)
    assert g.embedding_rank(z) == 1
    assert g.effective_rank(z) == pytest.approx(1.0, abs=1e-3)
    assert g.anisotropy(z) == pytest.approx(1.0)
    assert g.centre_norm(z) == pytest.approx(1.0)
    assert g.embedding_rank(torch.zeros(5, 3)) == 0 and g.effective_rank(torch.zeros(5, 3)) == 0.0


def test_rank_of_a_known_low_rank_product_and_tolerance():
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(200, 5, generator=generator) @ torch.randn(5, 40, generator=generator)  # float32, rank 5
    assert g.embedding_rank(z) == 5
    assert g.embedding_rank(z, rtol=1e-30) > 5  # rounding noise counts when the tolerance is zero


def test_centroid_rank_counts_independent_class_means():
    y = torch.arange(60) % 5
    assert g.centroid_rank(torch.nn.functional.one_hot(y, 16).float(), y) == 5
    # two classes whose centroids coincide (both are the origin): rank 0
    z = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    assert g.centroid_rank(z, torch.tensor([0, 0, 1, 1])) == 0
    # string labels are mapped to classes
    assert g.centroid_rank(torch.eye(3), ["cat", "dog", "cat"]) == 2


# --- isotropy and redundancy ------------------------------------------------------------

def test_isotropic_gaussian_is_isotropic_and_decorrelated(gaussian):
    n, d = gaussian.shape
    assert abs(g.anisotropy(gaussian)) < 2e-3
    # expected |Pearson r| of independent features: E|N(0, 1/n)| = sqrt(2 / (pi n))
    assert g.mean_abs_correlation(gaussian) == pytest.approx(math.sqrt(2 / (math.pi * n)), rel=0.1)
    # ||sum of n random unit vectors||^2 ~ n, so the centre norm is about 1/sqrt(n)
    assert 0.5 < g.centre_norm(gaussian) * math.sqrt(n) < 1.5
    assert g.pairwise_angles(gaussian, max_samples=1000)["all_mean"] == pytest.approx(90.0, abs=0.5)
    assert float(g.per_dimension_std(gaussian).mean()) * math.sqrt(d) == pytest.approx(1.0, abs=0.02)


def test_anisotropy_closed_form_matches_all_pairs():
    z = torch.randn(30, 6) + 1.0
    u = torch.nn.functional.normalize(z.double(), dim=1)
    cos = u @ u.T
    assert g.anisotropy(z) == pytest.approx(float(cos[~torch.eye(30, dtype=torch.bool)].mean()))


def test_mean_abs_correlation_known_cases():
    t = torch.linspace(-1, 1, 50)
    assert g.mean_abs_correlation(torch.stack([t, -3 * t + 1], dim=1)) == pytest.approx(1.0)
    # a constant feature is left out; x and x^2 on a symmetric grid are uncorrelated
    assert g.mean_abs_correlation(torch.stack([t, t.square(), torch.full_like(t, 2.0)], dim=1)) == pytest.approx(0.0, abs=1e-6)
    assert math.isnan(g.mean_abs_correlation(torch.ones(10, 3)))


# --- class separation ----------------------------------------------------------------------

def test_sensitivity_index_hand_computed():
    deg = torch.tensor([0.0, 10.0, 90.0, 100.0]).deg2rad()
    z = torch.stack([deg.cos(), deg.sin()], dim=1)
    # within: cos 10 twice (sd 0); between: cos 90, 100, 80, 90 -> mean 0, var cos(80)^2 / 2
    expected = math.cos(math.radians(10)) / math.sqrt(math.cos(math.radians(80)) ** 2 / 2 / 2)
    assert g.sensitivity_index(z, torch.tensor([0, 0, 1, 1])) == pytest.approx(expected)


def test_sensitivity_index_separated_vs_random_labels():
    generator = torch.Generator().manual_seed(0)
    y = torch.arange(400) % 2
    centres = torch.zeros(2, 16)
    centres[0, 0], centres[1, 1] = 4.0, 4.0
    z = centres[y] + 0.5 * torch.randn(400, 16, generator=generator)
    assert g.sensitivity_index(z, y) > 5
    assert abs(g.sensitivity_index(torch.randn(400, 16, generator=generator), y)) < 0.2
    assert math.isnan(g.sensitivity_index(z, torch.zeros(400, dtype=torch.long)))  # one class: no between pairs


# --- angles, alignment, uniformity ---------------------------------------------------------

def test_pairwise_angles_known_cases():
    stats = g.pairwise_angles(torch.eye(8))
    assert stats["all_mean"] == pytest.approx(90.0) and stats["all_std"] == pytest.approx(0.0, abs=1e-9)
    theta = torch.rand(100, dtype=torch.float64) * 2 * math.pi
    z = torch.stack([theta.cos(), theta.sin()], dim=1)
    turned = torch.stack([(theta + math.radians(30)).cos(), (theta + math.radians(30)).sin()], dim=1)
    stats = g.pairwise_angles(z, turned)
    assert stats["positive_mean"] == pytest.approx(30.0) and stats["positive_std"] == pytest.approx(0.0, abs=1e-6)
    assert g.pairwise_angles(z, z)["positive_mean"] == pytest.approx(0.0, abs=1e-5)


def test_alignment_known_values():
    z = torch.randn(20, 5)
    assert g.alignment(z, z) == pytest.approx(0.0, abs=1e-6)
    assert g.alignment(z, -z) == pytest.approx(4.0, abs=1e-5)  # antipodal unit vectors: ||u + u||^2 = 4


def test_uniformity_on_the_sphere_matches_closed_forms():
    # Uniform on S^{d-1}: ||u - v||^2 = 2 - 2c, so uniformity = -2t + log E exp(2t c), t = 2.
    # S^1: c = cos(theta), theta uniform -> E exp(4c) = I_0(4) (modified Bessel function).
    # S^2: c is uniform on [-1, 1] (Archimedes) -> E exp(4c) = sinh(4) / 4.
    # E[kernel | x] is the same for every x, so the pair average has tiny O(1/N^2) variance.
    assert g.uniformity(_sphere(2000, 2)) == pytest.approx(-4 + math.log(i0(4.0)), abs=0.01)
    assert g.uniformity(_sphere(2000, 3)) == pytest.approx(-4 + math.log(math.sinh(4.0) / 4), abs=0.01)
    assert -4.0 < g.uniformity(_sphere(1000, 512)) < -3.9  # high d: ||x - y||^2 -> 2, value -> -4


# --- spectrum, neighbours, sparsity --------------------------------------------------------

def test_explained_variance_known_spectrum():
    z = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 1.0], [0.0, -1.0]])  # variances 8/3 and 2/3
    assert g.pca_spectrum(z).tolist() == pytest.approx([8 / 3, 2 / 3])
    cumulative = g.explained_variance(z)
    assert cumulative.tolist() == pytest.approx([0.8, 1.0])
    assert g.components_for(cumulative, 0.8) == 1 and g.components_for(cumulative, 0.9) == 2
    assert torch.isnan(g.explained_variance(torch.ones(4, 2))).all()


def test_nn_distances_on_an_evenly_spaced_line():
    z = torch.arange(300, dtype=torch.float64).unsqueeze(1) * 0.5  # spacing h = 0.5
    nn = g.nn_distance_overlap(z, k=100, normalize=False)
    assert torch.allclose(nn.nearest, torch.full((300,), 0.5, dtype=torch.float64))
    assert float(nn.kth.min()) == pytest.approx(25.0)  # interior points: 2 neighbours per distance, 50 h
    assert nn.overlap == 0.0 and nn.k == 100
    default = g.nn_distance_overlap(z, normalize=False)  # E2MC Fig. 4's 100th neighbour is the documented default
    assert default.k == 100 and torch.equal(default.kth, nn.kth)
    twice = torch.cat([z, z])  # a duplicate is a neighbour at distance 0, the point itself is not
    assert float(g.nn_distance_overlap(twice, k=1, normalize=False).nearest.max()) == 0.0
    with pytest.raises(ValueError, match="k"):
        g.nn_distance_overlap(z[:50], k=100)


def test_histogram_overlap_bounds():
    a = np.random.default_rng(0).normal(size=500)
    assert g.histogram_overlap(a, a) == pytest.approx(1.0)
    assert g.histogram_overlap(a, a + 100) == pytest.approx(0.0)
    assert g.histogram_overlap(np.ones(3), np.ones(4)) == 1.0


def test_sparsity_of_one_hot_and_dense():
    y = torch.arange(50) % 10
    assert g.sparsity(torch.nn.functional.one_hot(y, 10).float()) == pytest.approx(0.9)
    assert g.sparsity(torch.randn(100, 10) + 5) == 0.0


# --- the table ---------------------------------------------------------------------------

def test_geometry_table_is_flat_and_json_ready():
    z = torch.randn(300, 16)
    y = torch.arange(300) % 3
    table = g.geometry_table(z, y, z + 0.1 * torch.randn_like(z), max_samples=256)
    assert table["warnings"] == []
    for key in ("effective_rank", "embedding_rank", "centroid_rank", "anisotropy", "mean_abs_correlation",
                "centre_norm", "sensitivity_index", "angle_all_mean_deg", "angle_positive_mean_deg", "alignment",
                "uniformity", "feature_std_mean", "pca_components_90pct", "nn_distance_overlap", "sparsity"):
        assert isinstance(table[key], (int, float)) and math.isfinite(table[key]), key
    assert table["embedding_rank"] == 16 and table["centroid_rank"] == 3
    json.loads(json.dumps(table))


def test_geometry_table_on_a_collapsed_encoder_warns_instead_of_failing():
    for z in (torch.full((40, 8), 0.7), torch.zeros(40, 8)):
        table = g.geometry_table(z, torch.arange(40) % 2, z.clone())
        assert any("Collapse" in w for w in table["warnings"])
        assert table["embedding_rank"] <= 1 and table["effective_rank"] <= 1.001
        assert math.isnan(table["mean_abs_correlation"]) and math.isnan(table["sensitivity_index"])
    assert any("all zeros" in w for w in g.geometry_table(torch.zeros(40, 8))["warnings"])


def test_geometry_table_small_n_and_numpy_input():
    table = g.geometry_table(np.random.default_rng(0).normal(size=(12, 4)), labels=["a", "b"] * 6)
    assert table["nn_k"] == 11 and any("11th" in w for w in table["warnings"])
    assert g.geometry_table(torch.randn(2, 3))["n_samples"] == 2


@pytest.mark.parametrize("bad, kwargs, message", [
    (torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), {}, "NaN"),
    (torch.randn(1, 4), {}, "at least 2 rows"),
    (torch.randn(4, 2, 2), {}, r"shape \(N, D\)"),
    ([[1.0, 2.0]] * 3, {}, "torch.Tensor or numpy"),
    (torch.randn(5, 3), {"labels": torch.arange(4)}, "one label per row"),
    (torch.randn(5, 3), {"labels": torch.rand(5)}, "class indices"),
    (torch.randn(5, 3), {"z_pair": torch.randn(4, 3)}, "must have the shape of `z`"),
])
def test_geometry_table_rejects_bad_input_with_a_clear_message(bad, kwargs, message):
    with pytest.raises(ValueError, match=message):
        g.geometry_table(bad, **kwargs)
