"""Every objective: finite values and gradients on degenerate input, float64 gradcheck,
float32 under autocast, and a ValueError naming the argument on bad input."""
import pytest
import torch

import infomax.objectives as O

TWO_VIEW = {
    "info_nce": lambda a, b: O.info_nce(a, b),
    "barlow_feature": lambda a, b: O.barlow_twins(a, b, form="feature"),
    "barlow_sample": lambda a, b: O.barlow_twins(a, b, form="sample"),
    "vicreg": lambda a, b: O.vicreg(a, b),
    "vcreg": lambda a, b: O.vcreg(a),
    "smi": lambda a, b: O.smi(a, b),
    "e2mc_cube": lambda a, b: sum(O.e2mc(a).values()),
    "e2mc_sphere": lambda a, b: sum(O.e2mc(b, space="hypersphere").values()),
    "hydes": lambda a, b: O.hydes(torch.cat([a, b]), torch.arange(a.shape[0]).repeat(2)),
    "alignment": lambda a, b: O.alignment(a, b),
    "uniformity": lambda a, b: O.uniformity(a),
    "mmcr": lambda a, b: O.mmcr([a, b]),
    "swapped": lambda a, b: O.swapped_prediction([torch.softmax(b.detach().float(), 1)] * 2, [a, b]),
    "latent_nce": lambda a, b: O.latent_nce(a, b),
    "cat_cross": lambda a, b: O.cat_cross(a, torch.arange(a.shape[0]) % a.shape[1]),
    "cat_twin_sigmoid": lambda a, b: O.cat_twin(a, torch.arange(a.shape[0]) % a.shape[1], rescale="sigmoid"),
    "bin_cross_softmax": lambda a, b: O.bin_cross(a, torch.arange(a.shape[0]) % a.shape[1], rescale="softmax"),
}


def degenerate_inputs():
    base = torch.randn(6, 5)
    yield "n2", torch.randn(2, 5), torch.randn(2, 5)
    yield "duplicate_rows", base[:1].repeat(6, 1), base[:1].repeat(6, 1)
    const_cols = base.clone()
    const_cols[:, :2] = 3.0
    yield "constant_columns", const_cols, const_cols + 0.1 * torch.randn(6, 5)
    yield "tiny", base * 1e-6, torch.randn(6, 5) * 1e-6
    yield "huge", base * 1e6, torch.randn(6, 5) * 1e6
    yield "zeros", torch.zeros(6, 5), torch.zeros(6, 5)


@pytest.mark.parametrize("name", sorted(TWO_VIEW))
@pytest.mark.parametrize("case", [c[0] for c in degenerate_inputs()])
def test_finite_value_and_gradient(name, case):
    _, a, b = next(c for c in degenerate_inputs() if c[0] == case)
    a, b = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
    loss = TWO_VIEW[name](a, b)
    assert loss.dim() == 0 and torch.isfinite(loss), f"{name} on {case}: {loss}"
    loss.backward()
    for g in (a.grad, b.grad):
        assert g is None or torch.isfinite(g).all(), f"{name} on {case}: non-finite gradient"


DETACHED_SECOND_INPUT = {"latent_nce", "swapped"}  # targets carry no gradient by design


@pytest.mark.parametrize("name", sorted(TWO_VIEW))
def test_gradcheck_float64(name):
    a = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    b = torch.randn(5, 4, dtype=torch.float64, requires_grad=name not in DETACHED_SECOND_INPUT)
    assert torch.autograd.gradcheck(lambda x, y: TWO_VIEW[name](x, y), (a, b), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", sorted(TWO_VIEW))
def test_float32_inside_bfloat16_autocast(name):
    a, b = torch.randn(8, 6).bfloat16(), torch.randn(8, 6).bfloat16()
    exact = TWO_VIEW[name](a.float(), b.float())  # float32 maths on the same rounded inputs
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = TWO_VIEW[name](a, b)
    assert low.dtype == torch.float32
    # the real code matches exactly; maths done in bfloat16 inside is off by up to 5e-2 (InfoNCE)
    torch.testing.assert_close(low, exact, rtol=1e-5, atol=1e-5)


BAD = [
    ("rank", lambda: O.smi(torch.randn(4), torch.randn(4)), "z_a"),
    ("mismatch", lambda: O.barlow_twins(torch.randn(4, 3), torch.randn(4, 5)), "z_b"),
    ("nan", lambda: O.info_nce(torch.full((4, 3), float("nan")), torch.randn(4, 3)), "z_a"),
    ("inf", lambda: O.vicreg(torch.randn(4, 3), torch.full((4, 3), float("inf"))), "z_b"),
    ("one_sample", lambda: O.smi(torch.randn(1, 3), torch.randn(1, 3)), "z_a"),
    ("one_feature", lambda: O.smi(torch.randn(4, 1), torch.randn(4, 1)), "z_a"),
    ("integers", lambda: O.uniformity(torch.ones(4, 3, dtype=torch.long)), "z"),
    ("temperature", lambda: O.info_nce(torch.randn(4, 3), torch.randn(4, 3), temperature=0), "temperature"),
    ("labels_range", lambda: O.cat_cross(torch.randn(4, 3), torch.tensor([0, 1, 2, 3])), "y"),
    ("labels_length", lambda: O.bin_cross(torch.randn(4, 3), torch.tensor([0, 1])), "y"),
    ("labels_float", lambda: O.cat_twin(torch.randn(4, 3), torch.zeros(4)), "y"),
    ("rescale", lambda: O.cat_cross(torch.randn(4, 3), torch.zeros(4, dtype=torch.long), rescale="tanh"), "rescale"),
    ("reduction", lambda: O.smi(torch.randn(4, 3), torch.randn(4, 3), reduction="max"), "reduction"),
    ("form", lambda: O.barlow_twins(torch.randn(4, 3), torch.randn(4, 3), form="dense"), "form"),
    ("image_ids", lambda: O.hydes(torch.randn(4, 3), torch.tensor([0, 0, 1])), "image_ids"),
    ("mmcr_shapes", lambda: O.mmcr([torch.randn(4, 3), torch.randn(5, 3)]), "views"),
    ("swapped_views", lambda: O.swapped_prediction([torch.rand(4, 3)], [torch.randn(4, 3)]), "logit views"),
    ("unknown_setting", lambda: O.Objective("smi", temperature=0.1), "temperature"),
    ("unknown_objective", lambda: O.Objective("simclr2"), "simclr2"),
]


@pytest.mark.parametrize("case,call,needle", BAD, ids=[b[0] for b in BAD])
def test_bad_input_raises_value_error_naming_the_argument(case, call, needle):
    with pytest.raises(ValueError, match=needle):
        call()


def test_checks_can_be_disabled_for_hot_loops():
    z = torch.randn(4, 3)
    z[0, 0] = float("nan")
    with O.checks(False):
        assert torch.isnan(O.alignment(z, z))
    with pytest.raises(ValueError):
        O.alignment(z, z)


def test_objective_module_binds_settings():
    module = O.Objective("smi", lambd=0.3, eps=1e-2)
    a, b = torch.randn(8, 6), torch.randn(8, 6)
    torch.testing.assert_close(module(a, b), O.smi(a, b, lambd=0.3, eps=1e-2))
    assert "lambd=0.3" in repr(module)


def test_auto_form_picks_the_cheaper_computation():
    from infomax.objectives._crosscov import resolve_form

    assert resolve_form("auto", 256, 8192) == "sample"
    assert resolve_form("auto", 1024, 1536) == "feature"  # two Gram matrices cost more here
    assert resolve_form("auto", 1024, 1536, grams=1) == "sample"


def test_swapped_prediction_checks_every_target_shape():
    w = torch.softmax(torch.randn(4, 3), 1)
    with pytest.raises(ValueError, match=r"targets\[1\]"):
        O.swapped_prediction([w, w[:, :1]], [torch.randn(4, 3), torch.randn(4, 3)])
