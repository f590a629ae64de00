"""One engine step on two gloo ranks of B samples equals one bare step on one rank with the 2B samples.

A gradient silently scaled by 1/world_size (a non-differentiable all-reduce or gather in a loss:
lightly #1528, #1977) fails this. SimCLR, Barlow Twins and VICReg gather across ranks, so the
reference is their loss on the whole batch; SMI communicates nothing in its loss by design, so its
reference is the mean of its loss on the two halves (what DDP's gradient averaging computes).
BYOL's and MIRA's EMA teachers take their update after the step, on each rank alike; SwAV's and
MIRA's pseudo-labels (Sinkhorn and the MIRA fixed point, all-reduced inside) on the two ranks
equal those of the whole batch on one. HyDeS gathers every rank's views for its global entropy.
"""
import numpy as np
import pytest
import torch

from _distributed_workers import engine_steps, tiny_method

METHODS = ["simclr", "barlow_twins", "vicreg", "smi", "byol", "simsiam", "swav", "mira", "hydes"]


def reference_step(name, views):
    method = tiny_method(name)
    halves = [[v.chunk(2)[r] for v in views] for r in (0, 1)]
    if method.communicates:
        terms = method({"views": views})
        loss = terms["loss"]
    else:
        terms, loss = {}, sum(method({"views": h})["loss"] for h in halves) / 2
    optimiser = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.5)
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    method.on_step_end(0, 1)
    return loss.item(), method.state_dict(), terms.get("_targets")


@pytest.fixture(scope="module")
def two_rank_results(tmp_path_factory):
    from lightning.fabric import Fabric

    torch.manual_seed(1)
    views = [torch.rand(16, 3, 8, 8), torch.rand(16, 3, 8, 8), torch.rand(16, 3, 8, 8)]  # a third view: a "local" crop
    fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp_spawn")
    out = tmp_path_factory.mktemp("loop")
    fabric.launch(engine_steps, METHODS, views, out)  # one launch for all (process start-up is the cost)
    results = {}
    for name in METHODS:
        with np.load(out / f"{name}.npz") as saved:
            results[name] = {"loss": float(saved["loss"]), "params": {k[6:]: saved[k] for k in saved.files if k.startswith("param/")},
                             **({"targets": saved["targets"]} if "targets" in saved.files else {})}
    return views, results


@pytest.mark.parametrize("name", METHODS)
def test_two_ranks_equal_one_rank_with_the_whole_batch(name, two_rank_results):
    views, results = two_rank_results
    result = results[name]
    loss, params, targets = reference_step(name, views)
    assert abs(result["loss"] - loss) < 1e-5
    start = tiny_method(name)
    before, trained = start.state_dict(), {n for n, p in start.named_parameters() if p.requires_grad}
    for key, value in params.items():
        if key in trained:
            assert not torch.allclose(value, before[key]), f"{key} did not move: the step is vacuous"
        torch.testing.assert_close(torch.from_numpy(result["params"][key]), value, atol=1e-5, rtol=1e-5, msg=f"{name}: {key}")
    if targets is not None:
        torch.testing.assert_close(torch.from_numpy(result["targets"]), targets.detach(), atol=1e-6, rtol=1e-5)
    else:
        assert "targets" not in result


def test_the_teachers_follow_their_students():
    for name in ("byol", "mira"):
        method = tiny_method(name)
        _, params, _ = reference_step(name, [torch.rand(16, 3, 8, 8) for _ in range(2)])
        moved = [k for k in params if k.startswith("teacher.") and not torch.equal(params[k], method.state_dict()[k])]
        assert moved, f"{name}: the EMA update moved nothing"
