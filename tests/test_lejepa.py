"""SIGReg and LeJEPA (objectives/sigreg.py, methods/lejepa.py, the sigreg add-on) against closed forms."""
import pytest
import torch

import infomax.objectives as O
from infomax import methods
from infomax.methods.addons import WithAddOns, build_addons
from infomax.models import build_encoder
from infomax.objectives.sigreg import quadrature, slice_directions


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def directions(dim, slices=512, seed=0):
    a = torch.randn(dim, slices, generator=gen(seed), dtype=torch.float64)
    return a / a.norm(dim=0)


def test_gaussian_rows_score_the_expected_statistic_whatever_n():
    """E|ecf - phi|^2 = (1 - phi^2) / N for Gaussian projections, so E[T] = sum_k w_k (1 - phi_k^2)."""
    _, phi, weights = quadrature()
    expected = float((weights * (1 - phi.square())).sum())
    assert expected == pytest.approx(1.0525, abs=1e-4)
    for n in (128, 1024):
        scores = [float(O.sigreg(torch.randn(n, 32, generator=gen(s), dtype=torch.float64), directions(32, seed=s)))
                  for s in range(8)]
        assert sum(scores) / len(scores) == pytest.approx(expected, rel=0.1)


def test_collapsed_rows_score_n_times_the_closed_form():
    _, phi, weights = quadrature()
    for n in (64, 256):
        got = O.sigreg(torch.zeros(n, 16, dtype=torch.float64), directions(16))
        torch.testing.assert_close(got, n * (weights * (1 - phi).square()).sum())


def test_the_statistic_is_blind_to_row_order_and_to_a_rotation_of_embedding_and_directions():
    z, a = torch.randn(200, 8, generator=gen(1), dtype=torch.float64), directions(8, 64)
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=gen(2), dtype=torch.float64))
    base = O.sigreg(z, a)
    torch.testing.assert_close(O.sigreg(z[torch.randperm(200, generator=gen(3))], a), base)
    torch.testing.assert_close(O.sigreg(z @ q, q.T @ a), base)


def test_wrong_scale_scores_far_above_the_gaussian_and_descent_reaches_it():
    z = (0.2 * torch.randn(256, 8, generator=gen(4))).requires_grad_(True)
    a = directions(8, 64).float()
    assert float(O.sigreg(z.detach(), a)) > 20
    optimiser = torch.optim.Adam([z], lr=0.05)
    for _ in range(150):
        optimiser.zero_grad()
        O.sigreg(z, a).backward()
        optimiser.step()
    assert float(O.sigreg(z.detach(), directions(8, 256, seed=9).float())) < 2  # fresh directions: not fitted to a few
    assert float(z.detach().std(dim=0).mean()) == pytest.approx(1.0, abs=0.15)


def test_lejepa_is_the_convex_mix_of_the_centre_prediction_and_the_mean_sigreg():
    views = [torch.randn(32, 6, generator=gen(s), dtype=torch.float64) for s in range(5)]
    a = directions(6, 32)
    terms = O.lejepa(views, a, num_global=2, lambd=0.1)
    centre = (views[0] + views[1]) / 2
    prediction = sum(((centre - v) ** 2).mean() for v in views) / 5
    regulariser = sum(O.sigreg(v, a) for v in views) / 5
    torch.testing.assert_close(terms["prediction"], prediction)
    torch.testing.assert_close(terms["sigreg"], regulariser)
    torch.testing.assert_close(terms["loss"], 0.9 * prediction + 0.1 * regulariser)
    same = O.lejepa([views[0]] * 4, a)
    assert float(same["prediction"]) == 0.0
    torch.testing.assert_close(same["loss"], 0.05 * O.sigreg(views[0], a))


def test_bad_input_names_the_argument():
    z, a = torch.randn(16, 4), directions(4, 8).float()
    with pytest.raises(ValueError, match="directions"):
        O.sigreg(z, directions(5, 8).float())
    with pytest.raises(ValueError, match="lambd"):
        O.lejepa([z, z], a, lambd=1.5)
    with pytest.raises(ValueError, match="num_global"):
        O.lejepa([z, z], a, num_global=3)
    with pytest.raises(ValueError, match="one shape"):
        O.lejepa([z, z[:8]], a)
    with pytest.raises(ValueError, match="slices"):
        slice_directions(4, 0)


def test_slice_directions_are_unit_and_follow_the_global_seed():
    torch.manual_seed(5)
    a = slice_directions(12, 40)
    torch.manual_seed(5)
    torch.testing.assert_close(slice_directions(12, 40), a)
    torch.testing.assert_close(a.norm(dim=0), torch.ones(40))


def test_the_method_is_lejepa_on_its_projections_of_every_crop():
    torch.manual_seed(0)
    method = methods.build("lejepa", build_encoder("convnet", width=4), projector_hidden=16, projector_out=8, slices=32).eval()
    views = [torch.rand(8, 3, 16, 16, generator=gen(s)) for s in range(2)] + [torch.rand(8, 3, 8, 8, generator=gen(s)) for s in (2, 3)]
    torch.manual_seed(7)
    terms = method({"views": views})
    with torch.no_grad():
        z = [method.projector(method.encoder(v).pooled) for v in views]
    torch.manual_seed(7)
    expected = O.lejepa(z, slice_directions(8, 32), num_global=2, lambd=0.05)
    for key in ("loss", "prediction", "sigreg"):
        torch.testing.assert_close(terms[key], expected[key], atol=1e-5, rtol=1e-5)
    assert methods.METHODS["lejepa"].default_views == "lejepa"


def test_the_sigreg_addon_adds_lambda_times_the_mean_over_views():
    torch.manual_seed(0)
    base = methods.build("simclr", build_encoder("convnet", width=4), projector_hidden=16, projector_out=8).double().eval()
    wrapped = WithAddOns(base, build_addons([{"name": "sigreg", "slices": 16}], "simclr", base.embeddings, 8))
    views = [torch.rand(8, 3, 16, 16, generator=gen(s), dtype=torch.float64) for s in range(2)]
    torch.manual_seed(3)
    out = wrapped({"views": views})
    plain = base({"views": views})
    with torch.no_grad():
        z = [base.projector(base.encoder(v).pooled) for v in views]
    torch.manual_seed(3)
    a = slice_directions(8, 16)
    expected = (O.sigreg(z[0], a) + O.sigreg(z[1], a)) / 2
    torch.testing.assert_close(out["sigreg/sigreg"], expected)
    torch.testing.assert_close(out["loss"], plain["loss"] + 0.05 * expected)
