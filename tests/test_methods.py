"""Each pretraining method's step is its objective on its projector's outputs (one file each in methods/)."""
import pytest
import torch

import infomax.objectives as O
from infomax import methods
from infomax.models import build_encoder


def build(name, **settings):
    torch.manual_seed(0)
    return methods.build(name, build_encoder("convnet", width=4), projector_hidden=16, projector_out=12, **settings)


TWO_VIEW = ["simclr", "barlow_twins", "vicreg", "smi"]


def projections(method, views):
    return [method.projector(method.encoder(v).pooled) for v in views]


REFERENCE = {
    "simclr": lambda a, b: O.info_nce(a, b, temperature=0.3),
    "barlow_twins": lambda a, b: O.barlow_twins(a, b, lambd=0.01),
    "vicreg": lambda a, b: O.vicreg(a, b, sim=10.0, var=20.0, cov=2.0),
    "smi": lambda a, b: O.smi(a, b, lambd=2.0, eps=1e-2),
}
SETTINGS = {"simclr": {"temperature": 0.3}, "barlow_twins": {"lambd": 0.01}, "vicreg": {"sim": 10.0, "var": 20.0, "cov": 2.0},
            "smi": {"lambd": 2.0, "eps": 1e-2}}


@pytest.mark.parametrize("name", TWO_VIEW)
def test_step_is_the_objective_on_the_projections(name):
    views = [torch.rand(8, 3, 16, 16), torch.rand(8, 3, 16, 16)]
    method = build(name, **SETTINGS[name]).eval()  # eval: batch norm uses the same statistics in both forwards
    terms = method({"views": views})
    torch.testing.assert_close(terms["loss"], REFERENCE[name](*projections(method, views)))
    assert terms["_embedding"].shape == (8, 12) and not terms["_embedding"].requires_grad
    if "alignment" in terms:
        torch.testing.assert_close(terms["alignment"] + terms["redundancy"], terms["loss"])


def test_smi_communicates_nothing_and_the_others_do():
    assert [n for n, m in methods.METHODS.items() if not m.communicates] == ["smi"]


def test_unknown_method_lists_the_registered_ones():
    with pytest.raises(ValueError, match="simclr, barlow_twins, vicreg, smi, byol, simsiam, swav, mira, hydes, lejepa"):
        methods.build("moco", build_encoder("convnet", width=4))
