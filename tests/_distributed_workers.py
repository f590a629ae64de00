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
            "sinkhorn_far": sinkhorn(shard(inputs["far_logits"]), iters=5, group=dist.group.WORLD),
            "info_nce": loss.detach(),
            "info_nce_grad": z_a.grad,
        }
        out_queue.put((rank, {k: v.numpy() for k, v in result.items()}))  # by value: the sender exits first
    finally:
        dist.destroy_process_group()


class TinyEncoder(torch.nn.Module):
    """An encoder without batch norm (so one rank of 2B and two of B see the same statistics); any
    square input is average-pooled to 8 x 8 (an 8 x 8 input passes unchanged), so local crops fit."""

    def __init__(self, dim=12):
        super().__init__()
        self.net, self.dim = torch.nn.Linear(3 * 8 * 8, dim), dim

    def forward(self, x):
        from infomax.models.base import EncoderOutput

        return EncoderOutput(self.net(torch.nn.functional.adaptive_avg_pool2d(x, 8).flatten(1)).tanh(), None)


PLAIN = {"swav": {"num_prototypes": 6, "freeze_prototypes_epochs": 0},
         "mira": {"num_prototypes": 6, "freeze_prototypes_epochs": 0},  # its EMA teacher is on by default, as BYOL's
         "byol": {"predictor_hidden": 8, "predictor_batch_norm": False}, "simsiam": {"predictor_hidden": 8, "predictor_batch_norm": False}}
# the options that keep state across steps and are off in PLAIN: SwAV's queue (QUEUE rows of the whole run:
# each rank keeps its share), prototypes frozen in the first epoch, MIRA's annealed beta
QUEUE = 32
LR = 0.1
STATEFUL = {"swav": {**PLAIN["swav"], "queue_length": QUEUE, "freeze_prototypes_epochs": 1},
            "mira": {**PLAIN["mira"], "freeze_prototypes_epochs": 1, "beta_start": 0.75}}


def tiny_method(name, variant="plain", ranks=1):
    """`name` on a TinyEncoder, seeded; `variant` "stateful" turns on its STATEFUL options. SwAV's queue is
    per rank, so each of `ranks` ranks keeps QUEUE / ranks rows (one rank: the whole QUEUE)."""
    from infomax import methods

    settings = dict((STATEFUL if variant == "stateful" else PLAIN).get(name, {}))
    if "queue_length" in settings:
        settings["queue_length"] //= ranks
    torch.manual_seed(0)
    method = methods.build(name, TinyEncoder(), projector_hidden=16, projector_out=10, projector_batch_norm=False, **settings)
    return method.double()  # float64: rounding stays far below what a wrong sum, scale or queue changes


class ListBatches:
    """Fixed batches as the loop's source: `per_epoch` of them an epoch, no random state of its own."""

    def __init__(self, batches, per_epoch):
        self.batches, self.per_epoch = batches, per_epoch

    def __len__(self):
        return self.per_epoch

    def epoch(self, epoch, skip):
        return iter(self.batches[epoch * self.per_epoch + skip:(epoch + 1) * self.per_epoch])

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def engine_runs(fabric, cases, steps, per_epoch, out):
    """engine_run for each (name, variant) in one launch of the ranks (process start-up is the cost)."""
    for name, variant in cases:
        engine_run(fabric, name, variant, steps, per_epoch, out / f"{name}-{variant}")
    fabric.barrier()  # leave together and close the group: a rank exiting with gloo work in flight aborts
    dist.destroy_process_group()


def engine_run(fabric, name, variant, steps, per_epoch, out):
    """`Loop.fit` of `name` over `steps` (each a list of views of the global batch; this rank takes its
    shard), SGD at LR. Rank 0 leaves out/metrics.jsonl (losses averaged over ranks), out/state.safetensors
    (weights, every rank's state) and out/targets.npy (the last step's pseudo-labels, rank by rank)."""
    import numpy as np

    from infomax.config import OptimConfig, RunConfig
    from infomax.engine.loop import Loop, Schedule
    from infomax.engine.optim import build_optimiser

    out.mkdir(parents=True, exist_ok=True)
    method = tiny_method(name, variant, fabric.world_size)
    optimiser = build_optimiser(method.stage_parameters("main"), OptimConfig(name="sgd", lr=LR, weight_decay=0.0, momentum=0.0))
    model, optimiser = fabric.setup(method, optimiser)
    shard = [[v.chunk(fabric.world_size)[fabric.global_rank] for v in views] for views in steps]
    batches = ListBatches([{"views": views} for views in shard], per_epoch)
    loop = Loop(fabric, model, {"main": optimiser}, batches, Schedule(len(steps), 0, 0.0, "constant", 1.0),
                RunConfig(log_every=1, checkpoint_every=1000, progress=False), out=out)
    loop.fit()
    targets = loop.last_terms.get("_targets")
    if targets is not None:  # SwAV's and MIRA's pseudo-labels, every rank's rows in rank order
        targets = torch.cat(list(fabric.all_gather(targets)), dim=1)
        if fabric.global_rank == 0:
            np.save(out / "targets.npy", targets.numpy())
    fabric.barrier()
