"""SwAV (Caron et al., 2020, arXiv:2006.09882): codes from Sinkhorn-Knopp on the prototype scores
of the two global crops (Eq. 3, App. A: L2-normalised embeddings, eps 0.05, 3 iterations; see
assign/sinkhorn.py for why no score or lr overflows), predicted from every other crop by
swapped prediction at temperature 0.1 (Eq. 1-2), on SwAV's own views (the `swav` view set) unless
data.views names others. The prototypes take no step in the first `freeze_prototypes_epochs` epochs.
With small batches a queue of past global-crop embeddings joins the Sinkhorn batch (App. A:
3840 for batch 256), from `queue_start_epoch` on and once full; only the batch's codes are used.
Under DDP the Sinkhorn sums run over every rank's samples, and each rank queues its own shard's past
(as SwAV's code: one queue per GPU). The queue is therefore no buffer of the module DDP wraps (DDP
would broadcast rank 0's over it at every forward) but per-rank state, `rank_state()`, that the loop
saves and restores for every rank."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .. import distributed
from ..assign.sinkhorn import sinkhorn
from ..objectives.swapped import swapped_prediction
from .base import PrototypeMethod, PrototypeSettings, ProjectorSettings, default


@dataclass
class SwAVSettings(ProjectorSettings, PrototypeSettings):
    name: ClassVar[str] = "swav"
    temperature: float = default(swapped_prediction, "temperature")
    epsilon: float = default(sinkhorn, "epsilon")
    sinkhorn_iters: int = default(sinkhorn, "iters")
    queue_length: int = 0  # past embeddings per global crop (per rank); 0: no queue
    queue_start_epoch: int = 0

    def __post_init__(self):
        PrototypeSettings.__post_init__(self)
        for key in ("temperature", "epsilon"):
            if not getattr(self, key) > 0:
                raise ValueError(f"method.{key} must be positive, got {getattr(self, key)}.")
        if self.sinkhorn_iters < 1 or self.queue_length < 0 or self.queue_start_epoch < 0:
            raise ValueError("method.sinkhorn_iters must be >= 1, method.queue_length and method.queue_start_epoch >= 0; "
                             f"got {self.sinkhorn_iters}, {self.queue_length}, {self.queue_start_epoch}.")


class SwAV(PrototypeMethod):
    name, Settings, default_views, projector_kind = "swav", SwAVSettings, "swav", "swav"

    def __init__(self, encoder, settings: SwAVSettings):
        super().__init__(encoder, settings)
        # plain tensors, not buffers: per rank (see the module docstring)
        self.queue = torch.zeros(2, settings.queue_length, self.projector.out_dim) if settings.queue_length else None
        self.queued = torch.zeros((), dtype=torch.long)  # a tensor, as under torch.compile an int would be specialised
        self.register_load_state_dict_pre_hook(_legacy_queue)

    def rank_state(self) -> dict[str, torch.Tensor]:
        """This rank's queue and fill count: what differs by rank, for the loop to save per rank."""
        if self.queue is None:
            return {}
        return {"queue": self.queue.detach().cpu(), "queued": self.queued.cpu().reshape(1)}

    def load_rank_state(self, state: dict[str, torch.Tensor]) -> None:
        if self.queue is not None and "queue" in state:
            self._set_queue(state["queue"], state["queued"].reshape(()))

    def _set_queue(self, queue: torch.Tensor, queued: torch.Tensor) -> None:
        if queue.shape != self.queue.shape:
            raise ValueError(f"swav: the saved queue has shape {tuple(queue.shape)}, this run's {tuple(self.queue.shape)} "
                             "(method.queue_length, projector_out); resume with the settings it was saved with.")
        self.queue, self.queued = queue.to(self.queue).clone(), queued.to(self.queued).clone()

    def check_batch(self, global_batch: int) -> None:
        s = self.settings
        if global_batch + s.queue_length < s.num_prototypes:
            raise ValueError(f"swav: a global batch of {global_batch} (+ a queue of {s.queue_length}) is smaller than "
                             f"method.num_prototypes = {s.num_prototypes}, so equipartition smears every code over several "
                             "prototypes (SwAV App. A); raise --batch-size, lower method.num_prototypes, or add a queue "
                             f"(--set method.queue_length={s.num_prototypes - global_batch} or more).")

    def training_step(self, batch, stage: str = "main", carry: dict | None = None) -> dict[str, torch.Tensor]:
        z, scores, embeddings = self.scores(self.student(), batch["views"])
        codes = [self.codes(scores[t], t) for t in range(2)]
        self.enqueue(z[:2])
        loss = swapped_prediction(codes, scores, self.settings.temperature)
        return {"loss": loss, "_targets": torch.stack(codes), "_embedding": z[0].detach(), "_embeddings": embeddings}

    @torch.no_grad()
    def codes(self, scores: torch.Tensor, crop: int) -> torch.Tensor:
        s = self.settings
        use_queue = s.queue_length and self.epoch >= s.queue_start_epoch and int(self.queued) >= s.queue_length
        if use_queue:
            queued = self.queue[crop].to(scores.device, self.prototypes.weight.dtype)
            scores = torch.cat([scores, self.prototypes(queued).to(scores.dtype)])
        q = sinkhorn(scores.detach(), s.epsilon, s.sinkhorn_iters, group=distributed.world())
        return q[: len(q) - s.queue_length] if use_queue else q

    @torch.no_grad()
    def enqueue(self, z: list[torch.Tensor]) -> None:
        if not self.settings.queue_length or self.epoch < self.settings.queue_start_epoch:
            return
        n = min(z[0].shape[0], self.settings.queue_length)
        dtype = torch.promote_types(z[0].dtype, torch.float32)  # float32 at least, even under bf16
        if self.queue.device != z[0].device or self.queue.dtype != dtype:  # once: the queue is no buffer that .to() moves
            self.queue, self.queued = self.queue.to(z[0].device, dtype), self.queued.to(z[0].device)
        self.queue.copy_(torch.cat([torch.stack([v[:n].detach() for v in z]).to(dtype), self.queue[:, :-n]], dim=1))
        self.queued.add_(n)


def _legacy_queue(module, state_dict, prefix, *args) -> None:
    """Checkpoints written before the queue became per-rank state kept it as buffers of the weights
    (rank 0's on every rank): take them as this rank's queue, which a saved per-rank queue then replaces."""
    queue, queued = state_dict.pop(prefix + "queue", None), state_dict.pop(prefix + "queued", None)
    if queue is not None and module.queue is not None:
        module._set_queue(queue, queued)
