"""Worker bodies for the 2-process gloo tests (importable by spawned children)."""
import torch
import torch.distributed as dist

import infomax.objectives as O
from infomax.assign import mira, sinkhorn


def run(rank, world, init_file, inputs, out_queue):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        shard = lambda t: t.chunk(world)[rank]  # noqa: E731
        z_a = shard(inputs["z_a"]).clone().requires_grad_(True)
        z_b = shard(inputs["z_b"]).clone()
        loss = O.info_nce(z_a, z_b, temperature=0.2, gather=True)
        loss.backward()
        result = {
            "mira": mira(shard(inputs["logits"]), iters=20, group=dist.group.WORLD),
            "sinkhorn": sinkhorn(shard(inputs["logits"]), iters=5, group=dist.group.WORLD),
            "info_nce": loss.detach(),
            "info_nce_grad": z_a.grad,
        }
        out_queue.put((rank, {k: v.numpy() for k, v in result.items()}))  # by value: the sender exits first
    finally:
        dist.destroy_process_group()
