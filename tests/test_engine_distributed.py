"""One engine step on two gloo ranks of B samples equals one bare step on one rank with the 2B samples.

A gradient silently scaled by 1/world_size (a non-differentiable all-reduce or gather in a loss:
lightly #1528, #1977) fails this. SimCLR, Barlow Twins and VICReg gather across ranks, so the
reference is their loss on the whole batch; SMI communicates nothing in its loss by design, so its
reference is the mean of its loss on the two halves (what DDP's gradient averaging computes).
"""
import pytest
import torch

from _distributed_workers import engine_steps, tiny_method

METHODS = ["simclr", "barlow_twins", "vicreg", "smi"]


def reference_step(name, views):
    method = tiny_method(name)
    halves = [[v.chunk(2)[r] for v in views] for r in (0, 1)]
    if method.communicates:
        loss = method({"views": views})["loss"]
    else:
        loss = sum(method({"views": h})["loss"] for h in halves) / 2
    optimiser = torch.optim.SGD(method.parameters(), lr=0.5)
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    return loss.item(), method.state_dict()


@pytest.fixture(scope="module")
def two_rank_results(tmp_path_factory):
    from lightning.fabric import Fabric

    torch.manual_seed(1)
    views = [torch.rand(16, 3, 8, 8), torch.rand(16, 3, 8, 8)]
    fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp_spawn")
    return views, fabric.launch(engine_steps, METHODS, views, tmp_path_factory.mktemp("loop"))  # one launch for all four (process start-up is the cost)


@pytest.mark.parametrize("name", METHODS)
def test_two_ranks_equal_one_rank_with_the_whole_batch(name, two_rank_results):
    views, results = two_rank_results
    result = results[name]
    loss, params = reference_step(name, views)
    assert abs(result["loss"] - loss) < 1e-5
    before = tiny_method(name).state_dict()
    for key, value in params.items():
        assert not torch.allclose(value, before[key]), f"{key} did not move: the step is vacuous"
        torch.testing.assert_close(torch.from_numpy(result["params"][key]), value, atol=1e-5, rtol=1e-5, msg=f"{name}: {key}")
