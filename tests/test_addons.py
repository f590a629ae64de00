"""methods/addons.py: add-on losses on a method's embeddings. The weighted sum is applied once with the
paper's signs (checked against an independent transcription of E2MC Algorithm 1), each raw term is
logged, the paper's weights fill in per base method, and bad add-ons are refused with the fix."""
import math

import pytest
import torch

from infomax import methods
from infomax.methods.addons import E2MC_PAPER, WithAddOns, build_addons, parse, terms
from infomax.models import build_encoder
from infomax.objectives.mmcr import mmcr
from infomax.objectives.wang_isola import uniformity


def algorithm1(x: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """E2MC Appendix B, Algorithm 1, transcribed line by line."""
    x = torch.sigmoid(x) if kind == "hypercube" else 0.5 * (1 + torch.erf(x / math.sqrt(2)))
    n, d = x.shape
    m = round(math.sqrt(n))
    s, _ = torch.sort(x, dim=0)
    s = (s[m:] - s[: n - m]) * (n + 1) / m
    ent = (torch.log(s + 1e-7).sum(dim=0) / (n - m)).mean()
    c = x - x.mean(dim=0)
    cov = (c.T @ c) / (n - 1)
    off = cov - torch.diag(torch.diag(cov))
    return ent, off.pow(2).sum() / d


def test_parse():
    assert parse("e2mc") == {"name": "e2mc"}
    assert parse("e2mc:beta=1,gamma=25,space=hypersphere") == {"name": "e2mc", "beta": 1, "gamma": 25, "space": "hypersphere"}
    with pytest.raises(ValueError, match="key=value"):
        parse("e2mc:beta")


@pytest.mark.parametrize("space", ["hypercube", "hypersphere"])
def test_e2mc_terms_follow_algorithm_1(space):
    za, zb = torch.randn(64, 16, dtype=torch.float64), torch.randn(64, 16, dtype=torch.float64)
    (addon,) = build_addons([{"name": "e2mc", "beta": 3.0, "gamma": 7.0, "space": space}], "smi", ("projector",), 64)
    raw, weights = terms(addon, [za, zb])
    (ea, ca), (eb, cb) = algorithm1(za, space), algorithm1(zb, space)
    torch.testing.assert_close(raw["entropy"], ea + eb)
    torch.testing.assert_close(raw["covariance"], ca + cb)
    assert weights == {"entropy": -3.0, "covariance": 7.0}


def test_the_peers_terms_and_signs():
    views = [torch.randn(32, 8) for _ in range(4)]
    built = build_addons([{"name": "uniformity"}, {"name": "mmcr"}, {"name": "vcreg"}], "swav", ("projector",), 32)
    uni, mm, vc = (terms(a, views) for a in built)
    torch.testing.assert_close(uni[0]["uniformity"], uniformity(views[0], 2.0) + uniformity(views[1], 2.0))
    assert uni[1] == {"uniformity": 0.5}
    torch.testing.assert_close(mm[0]["negative_nuclear_norm"], mmcr(views))  # every view, not only the two global ones
    assert mm[0]["negative_nuclear_norm"] < 0 and mm[1] == {"negative_nuclear_norm": 0.005}
    assert vc[1] == {"variance": 0.1, "covariance": 0.001}


def test_paper_weights_fill_in_per_base_method():
    for base, (beta, gamma, space) in E2MC_PAPER.items():
        (a,) = build_addons([{"name": "e2mc"}], base, ("projector", "backbone"), 512)
        assert (a.beta, a.gamma, a.space, a.embedding) == (beta, gamma, space, "projector")
    assert E2MC_PAPER["vicreg"] == (1000.0, 100.0, "hypercube") and E2MC_PAPER["swav"] == (1.0, 25.0, "hypersphere")
    (a,) = build_addons([{"name": "e2mc", "beta": 5}], "vicreg", ("projector",), 512)
    assert (a.beta, a.gamma) == (5, 100.0)


@pytest.mark.parametrize("entry,base,batch,message", [
    ({"name": "e2mc"}, "smi", 64, "give them: --add e2mc:beta"),
    ({"name": "e2mc"}, "vicreg", 2, r"n > sqrt\(n\) \+ 1"),
    ({"name": "e2mc", "embedding": "tokens"}, "vicreg", 64, "gives no 'tokens' embedding"),
    ({"name": "e2mc", "space": "cube"}, "vicreg", 64, "space must be one of"),
    ({"name": "entropy"}, "vicreg", 64, "unknown add-on"),
    ({"name": "vcreg", "mu_": 1}, "vicreg", 64, "did you mean 'mu'"),
])
def test_bad_add_ons_are_refused(entry, base, batch, message):
    with pytest.raises(ValueError, match=message):
        build_addons([entry], base, ("projector", "backbone"), batch)


def test_a_batch_of_three_is_enough_for_m_spacings():
    build_addons([{"name": "e2mc"}], "vicreg", ("projector",), 3)


def test_the_wrapped_loss_is_the_base_loss_plus_the_weighted_terms():
    torch.manual_seed(0)
    base = methods.build("vicreg", build_encoder("convnet", width=8), projector_hidden=16, projector_out=16)
    wrapped = WithAddOns(base, build_addons([{"name": "e2mc"}, {"name": "uniformity", "embedding": "backbone"}], "vicreg",
                                            base.embeddings, 32))
    batch = {"views": [torch.rand(32, 3, 16, 16), torch.rand(32, 3, 16, 16)]}
    torch.manual_seed(1)
    alone = base(batch)
    torch.manual_seed(1)
    out = wrapped(batch)
    expected = (alone["loss"] - 1000 * out["e2mc/entropy"] + 100 * out["e2mc/covariance"] + 0.5 * out["uniformity/uniformity"])
    torch.testing.assert_close(out["loss"], expected)
    torch.testing.assert_close(out["e2mc"], -1000 * out["e2mc/entropy"] + 100 * out["e2mc/covariance"])
    h = alone["_embeddings"]["backbone"]
    torch.testing.assert_close(out["uniformity/uniformity"], uniformity(h[0], 2.0) + uniformity(h[1], 2.0))
    out["loss"].backward()
    assert wrapped.encoder is base.encoder and set(out["_embeddings"]) == {"projector", "backbone"}  # on to the probe


def test_pretrain_composes_an_add_on_and_resume_keeps_it(tmp_path):
    import json

    from infomax.cli import main

    out = tmp_path / "run"
    argv = ["pretrain", "--method", "simsiam", "--add", "e2mc:space=hypercube", "--dataset", "digits", "--batch-size", "64",
            "--set", "model.options.width=8", "--set", "method.projector_hidden=32", "--set", "method.projector_out=32",
            "--set", "method.predictor_hidden=8", "--set", "run.knn_every=0", "--set", "run.log_every=1", "--set", "schedule.decay=constant", "--out", str(out)]
    assert main([*argv, "--max-steps", "2"]) == 0
    assert "space: hypercube" in (out / "config.yaml").read_text()
    assert main([*argv[:3], *argv[5:], "--max-steps", "3", "--resume"]) == 0
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [1, 2, 3] and all("loss/e2mc/entropy" in r for r in logged)
    assert main([*argv, "--max-steps", "4", "--resume"]) == 2  # the add-ons are the run's: --add is refused
