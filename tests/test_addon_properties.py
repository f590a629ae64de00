"""methods/addons.py through its gradients. An add-on is a loss: its gradient must reach the encoder, as
the gradient of the add-on's formula (written out here from the E2MC paper) on the method's embeddings;
under multi-crop, the add-ons of the two global views (e2mc, vcreg, uniformity) read and move those two
only, and MMCR every view. All in float64, so the add-on's share of the gradient is exact to ~1e-12."""
import math

import pytest
import torch
import torch.nn.functional as F

from infomax import methods
from infomax.methods.addons import WithAddOns, build_addons
from infomax.models import build_encoder

BATCH = 16


def uniformity_by_hand(z, t=2.0):
    """Wang & Isola: log of the mean over pairs i != j of exp(-t ||u_i - u_j||^2), u the unit rows."""
    u = F.normalize(z, dim=1)
    n = len(u)
    squared = (u[:, None, :] - u[None, :, :]).pow(2).sum(-1)
    off = ~torch.eye(n, dtype=torch.bool)
    return torch.log(torch.exp(-t * squared[off]).sum() / (n * (n - 1)))


def offdiag_cov_by_hand(x):
    """Sum of squared off-diagonal entries of the unbiased covariance, over d."""
    c = x - x.mean(0)
    cov = c.T @ c / (len(x) - 1)
    return (cov - torch.diag(torch.diag(cov))).pow(2).sum() / x.shape[1]


def vcreg_by_hand(z, mu=0.1, nu=0.001):
    hinge = F.relu(1 - torch.sqrt(z.var(0) + 1e-4)).mean()
    return mu * hinge + nu * offdiag_cov_by_hand(z)


def e2mc_by_hand(z, beta, gamma, space):
    """E2MC Eq. 3.2-3.4, Algorithm 1: -beta m-spacings entropy + gamma covariance of the compact codes."""
    x = torch.sigmoid(z) if space == "hypercube" else 0.5 * (1 + torch.erf(z / math.sqrt(2)))
    n = len(x)
    m = round(math.sqrt(n))
    s = x.sort(0).values
    entropy = torch.log((s[m:] - s[:-m]) * (n + 1) / m + 1e-7).mean(0).mean()
    return -beta * entropy + gamma * offdiag_cov_by_hand(x)


def mmcr_by_hand(views, weight=0.005):
    centroids = torch.stack([F.normalize(v, dim=1) for v in views]).mean(0)
    return -weight * torch.linalg.matrix_norm(centroids, ord="nuc")


# add-on entry, the embedding it reads, its weighted loss by hand on the views it should see
TWO_VIEW = {
    "e2mc": ({"name": "e2mc"}, lambda v: sum(e2mc_by_hand(z, 1000.0, 100.0, "hypercube") for z in v[:2])),  # vicreg's paper weights
    "vcreg": ({"name": "vcreg"}, lambda v: sum(vcreg_by_hand(z) for z in v[:2])),
    "uniformity": ({"name": "uniformity"}, lambda v: 0.5 * sum(uniformity_by_hand(z) for z in v[:2])),
    "uniformity_backbone": ({"name": "uniformity", "embedding": "backbone"},
                            lambda v: 0.5 * sum(uniformity_by_hand(z) for z in v[:2])),
    "mmcr": ({"name": "mmcr"}, mmcr_by_hand),
}


def vicreg_with(entry):
    torch.manual_seed(0)
    base = methods.build("vicreg", build_encoder("convnet", width=4), projector_hidden=16, projector_out=8).double()
    return base, WithAddOns(base, build_addons([entry], "vicreg", base.embeddings, BATCH))


def grad(loss, params, **kwargs):
    return [g if g is not None else torch.zeros_like(p) for g, p in
            zip(torch.autograd.grad(loss, params, allow_unused=True, **kwargs), params)]


@pytest.mark.parametrize("case", list(TWO_VIEW))
def test_an_add_ons_gradient_reaches_the_encoder_as_its_formula_says(case):
    entry, by_hand = TWO_VIEW[case]
    base, wrapped = vicreg_with(entry)
    batch = {"views": [torch.rand(BATCH, 3, 8, 8, dtype=torch.float64) for _ in range(2)]}
    params = list(base.encoder.parameters())
    out = wrapped(batch)
    with_addon = grad(out["loss"], params)
    alone = base(batch)  # the same batch in train mode: the same batch statistics, the same embeddings
    addon = by_hand(alone["_embeddings"][entry.get("embedding", "projector")])
    torch.testing.assert_close(out[entry["name"]], addon.detach())
    base_grad = grad(alone["loss"], params, retain_graph=True)
    addon_grad = grad(addon, params)
    assert sum(float(g.norm()) for g in addon_grad) > 1e-6  # the add-on moves the encoder at all
    for total, own, added in zip(with_addon, base_grad, addon_grad):
        torch.testing.assert_close(total - own, added, rtol=1e-7, atol=1e-10)


MULTICROP = {
    "e2mc": ({"name": "e2mc", "beta": 1.0, "gamma": 5.0, "space": "hypersphere"},
             lambda v: sum(e2mc_by_hand(z, 1.0, 5.0, "hypersphere") for z in v[:2])),
    "vcreg": TWO_VIEW["vcreg"],
    "uniformity": TWO_VIEW["uniformity"],
    "mmcr": TWO_VIEW["mmcr"],
}


def multicrop_views(n=8):
    g = torch.Generator().manual_seed(3)
    sizes = (16, 16, 8, 8)  # two global crops, then two local ones
    return [torch.rand(n, 3, s, s, dtype=torch.float64, generator=g).requires_grad_() for s in sizes]


@pytest.mark.parametrize("case", list(MULTICROP))
def test_under_multicrop_two_view_add_ons_see_the_global_crops_only_and_mmcr_every_crop(case):
    entry, by_hand = MULTICROP[case]
    torch.manual_seed(0)
    base = methods.build("hydes", build_encoder("convnet", width=4), projector_hidden=16, projector_out=8).double()
    wrapped = WithAddOns(base, build_addons([entry], "hydes", base.embeddings, 8))
    views = multicrop_views()
    out = wrapped({"views": views})
    with_addon = grad(out["loss"], views)
    alone = base({"views": views})
    torch.testing.assert_close(out[entry["name"]], by_hand(alone["_embeddings"]["projector"]).detach())
    addon_grad = [a - b for a, b in zip(with_addon, grad(alone["loss"], views))]
    moved = [float(g.abs().max()) > 1e-9 for g in addon_grad]
    assert moved == ([True] * 4 if entry["name"] == "mmcr" else [True, True, False, False])
