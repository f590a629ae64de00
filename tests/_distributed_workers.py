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


class TinyEncoder(torch.nn.Module):
    """An encoder without batch norm (so one rank of 2B and two of B see the same statistics)."""

    def __init__(self, dim=12):
        super().__init__()
        self.net, self.dim = torch.nn.Linear(3 * 8 * 8, dim), dim

    def forward(self, x):
        from infomax.models.base import EncoderOutput

        return EncoderOutput(self.net(x.flatten(1)).tanh(), None)


TINY = {"swav": {"num_prototypes": 6, "freeze_prototypes_epochs": 0},
        "mira": {"num_prototypes": 6, "freeze_prototypes_epochs": 0},
        "byol": {"predictor_hidden": 8, "predictor_batch_norm": False}, "simsiam": {"predictor_hidden": 8, "predictor_batch_norm": False}}


def tiny_method(name):
    from infomax import methods

    torch.manual_seed(0)
    return methods.build(name, TinyEncoder(), projector_hidden=16, projector_out=10, projector_batch_norm=False,
                         **TINY.get(name, {}))


def engine_steps(fabric, names, views, out):
    """engine_step for each method in one launch of the ranks; rank 0 writes each result to out/NAME.npz
    (a returned payload over the pipe's buffer would deadlock the launcher, which reads it after join)."""
    import numpy as np

    for name in names:
        result = engine_step(fabric, name, views, out)
        if fabric.global_rank == 0:
            np.savez(out / f"{name}.npz", loss=result["loss"], **{f"param/{k}": v for k, v in result["params"].items()},
                     **({"targets": result["targets"]} if "targets" in result else {}))
    fabric.barrier()  # leave together and close the group: a rank exiting with gloo work in flight aborts
    dist.destroy_process_group()


def engine_step(fabric, name, views, out):
    """One optimiser step of `name` through the engine's loop on this rank's half of `views`."""
    from infomax.config import OptimConfig, RunConfig
    from infomax.engine.loop import Loop, Schedule
    from infomax.engine.optim import build_optimiser

    method = tiny_method(name)
    optimiser = build_optimiser(method.stage_parameters("main"), OptimConfig(name="sgd", lr=0.5, weight_decay=0.0, momentum=0.0))
    model, optimiser = fabric.setup(method, optimiser)
    loop = Loop(fabric, model, {"main": optimiser}, [None], Schedule(1, 0, 0.0, "constant", 1.0),
                RunConfig(log_every=1000, progress=False), out=out)
    half = [v.chunk(fabric.world_size)[fabric.global_rank] for v in views]
    terms = loop.train_step({"views": half})
    loss = fabric.all_reduce(terms["loss"].detach(), reduce_op="mean")
    result = {"loss": loss.item(), "params": {k: v.detach().numpy().copy() for k, v in method.state_dict().items()}}  # by value
    if "_targets" in terms:  # SwAV's and MIRA's pseudo-labels, every rank's rows in rank order
        result["targets"] = torch.cat(list(fabric.all_gather(terms["_targets"])), dim=1).numpy().copy()
    return result
