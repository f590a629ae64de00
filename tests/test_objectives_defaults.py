"""Every documented default of the objectives, pinned twice: in the signature, and by behaviour
(a call with the defaults equals a call with the documented values spelled out)."""
import inspect
import math

import pytest
import torch

import infomax.objectives as O


def two_views():
    return torch.randn(12, 8), torch.randn(12, 8)


def one_view():
    return (torch.randn(12, 8),)


def views_with_ids():
    return torch.randn(12, 8), torch.arange(6).repeat(2)


def swapped_inputs():
    targets = [torch.softmax(torch.randn(12, 8), 1) for _ in range(2)]
    return targets, [torch.randn(12, 8), torch.randn(12, 8)]


# (function, inputs, documented settings, where they are documented)
DOCUMENTED = [
    (O.smi, two_views, {"lambd": 3.0, "eps": 1e-3, "reduction": "mean", "within_view": True},
     "smi.py docstring and README (benchmarks/smi_defaults.py)"),
    (O.gaussian_mi, lambda: (torch.rand(20) * 2 - 1,), {"eps": 1e-3}, "smi.py docstring"),
    (O.barlow_twins, two_views, {"lambd": 5e-3}, "barlow.py docstring (Barlow Twins)"),
    (O.vicreg, two_views, {"sim": 25.0, "var": 25.0, "cov": 1.0}, "vicreg.py docstring (Eq. 6)"),
    (O.vcreg, one_view, {"var": 1.0, "cov": 0.04}, "vcreg docstring: VICReg's 25:1 at unit scale"),
    (O.alignment, two_views, {"alpha": 2.0}, "wang_isola.py docstring (Eq. 4)"),
    (O.uniformity, one_view, {"t": 2.0}, "wang_isola.py docstring (Eq. 5)"),
    (O.hydes, views_with_ids, {"kappa": 1.0, "alpha": 1.0, "beta": 1.0}, "hydes paper: HyDeS (kappa = 1), alpha = beta"),
    (O.swapped_prediction, swapped_inputs, {"temperature": 0.1}, "mira paper Sec. 4.1: tau_s = 0.1"),
    (O.e2mc, one_view, {"space": "hypercube"}, "e2mc.py docstring: the sphere map is for hypersphere methods"),
]


def same(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    return torch.equal(a, b)


@pytest.mark.parametrize("fn, inputs, settings, source", DOCUMENTED, ids=[d[0].__name__ for d in DOCUMENTED])
def test_documented_default(fn, inputs, settings, source):
    parameters = inspect.signature(fn).parameters
    assert {k: parameters[k].default for k in settings} == settings, source
    args = inputs()
    assert same(fn(*args), fn(*args, **settings)), source


@pytest.mark.parametrize("n", [2, 7, 64, 20000])
def test_m_spacings_window_defaults_to_round_sqrt_n(n):
    # e2mc Algorithm 1: m = round(sqrt(n)); the signature says None, so only behaviour can pin it
    x = torch.rand(n, 3, dtype=torch.float64)
    m = round(math.sqrt(n))
    assert torch.equal(O.m_spacings_entropy(x), O.m_spacings_entropy(x, m=m))
    assert torch.equal(O.e2mc(x)["entropy"], O.e2mc(x, m=m)["entropy"])
    if m + 1 < n:
        assert not torch.equal(O.m_spacings_entropy(x), O.m_spacings_entropy(x, m=m + 1))


def test_objective_module_uses_the_function_defaults():
    a, b = two_views()
    assert torch.equal(O.Objective("smi")(a, b), O.smi(a, b, lambd=3.0, eps=1e-3))
