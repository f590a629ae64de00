"""Under DDP (2 CPU processes, gloo) the assigners and gathered InfoNCE equal the single-process result on the whole batch."""
import torch
import torch.multiprocessing as mp

import infomax.objectives as O
from infomax.assign import mira, sinkhorn

from _distributed_workers import run


def test_two_process_results_match_the_whole_batch(tmp_path):
    inputs = {"z_a": torch.randn(8, 6), "z_b": torch.randn(8, 6), "logits": torch.randn(8, 5).tanh()}
    inputs["far_logits"] = inputs["logits"] - torch.tensor([0.0] * 4 + [1e3] * 4)[:, None]  # only rank 1's rows underflow: both ranks must leave the fast path
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=run, args=(r, 2, tmp_path / "store", inputs, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = {rank: {k: torch.from_numpy(v) for k, v in out.items()} for rank, out in (queue.get(timeout=120) for _ in procs)}
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    torch.testing.assert_close(torch.cat([results[r]["mira"] for r in (0, 1)]), mira(inputs["logits"], iters=20))
    torch.testing.assert_close(torch.cat([results[r]["sinkhorn"] for r in (0, 1)]), sinkhorn(inputs["logits"], iters=5))
    torch.testing.assert_close(torch.cat([results[r]["sinkhorn_far"] for r in (0, 1)]), sinkhorn(inputs["far_logits"], iters=5))

    z_a = inputs["z_a"].clone().requires_grad_(True)
    whole = O.info_nce(z_a, inputs["z_b"], temperature=0.2)
    whole.backward()
    torch.testing.assert_close((results[0]["info_nce"] + results[1]["info_nce"]) / 2, whole.detach())
    # each rank averages over its own half; DDP then averages the two ranks' gradients
    torch.testing.assert_close(torch.cat([results[r]["info_nce_grad"] for r in (0, 1)]) / 2, z_a.grad)
