"""What the loop watches: an online weighted-kNN probe and an online linear classifier (trained every
step on detached features) after epochs, and on logged steps the embedding's spread (collapse) and,
where a method reports both, its redundancy/alignment ratio.

The kNN probe runs the encoder in eval mode (batch norm in train mode during monitoring skews
the features: lightly #1440) on the plain view of a held-out slice of the training split, with
k and T given explicitly (a silent default change broke reproducibility: lightly #1840).
"""
from __future__ import annotations

import math
import sys

import numpy as np
import torch
import torch.nn.functional as F

from ..data.augment import center_resize, to_float_images
from ..eval.geometry import effective_rank
from ..eval.knn import weighted_knn

COLLAPSED = 0.1  # mean per-dimension std of unit rows, times sqrt(D): about 1 when spread, 0 when collapsed


class Collapsed(ValueError):
    pass


@torch.no_grad()
def embed(method, images: np.ndarray, resolution: int, device, batch: int = 512) -> torch.Tensor:
    out = []
    for start in range(0, len(images), batch):
        x = to_float_images(torch.from_numpy(np.array(images[start:start + batch])).to(device), channels=None)  # a writable copy
        out.append(method.embed(center_resize(x, resolution)).float())
    return torch.cat(out)


def embed_eval(method, images: np.ndarray, resolution: int, device) -> torch.Tensor:
    """`embed` with the method in eval mode (batch norm on its running statistics), its mode restored after."""
    was_training = method.training
    method.eval()
    try:
        return embed(method, images, resolution, device)
    finally:
        method.train(was_training)


class HeldOut:
    """The plain view of the held-out rows, embedded in eval mode once per state of the method: the kNN monitor
    and the online probe score the same rows after the same step, so the second reads the first's features."""

    def __init__(self, dataset, rows: np.ndarray, resolution: int):
        self.dataset, self.rows, self.resolution = dataset, np.sort(rows), resolution
        self.labels = torch.as_tensor(np.asarray(dataset.labels)[self.rows], dtype=torch.int64)
        self._memo = (None, None)

    def features(self, method, device) -> torch.Tensor:
        state = (id(method), tuple(t._version for t in (*method.parameters(), *method.buffers())))  # an optimiser step bumps them
        if self._memo[0] != state:
            self._memo = (state, embed_eval(method, self.dataset.images[self.rows], self.resolution, device))
        return self._memo[1]


class EpochScore:
    """A top-1 on the held-out rows, logged as KEY_top1 every `every` epochs (rank 0) and KEY_top1_holdout at the end."""

    key: str
    every: int

    def score(self, method, device) -> float:
        raise NotImplementedError

    def __call__(self, loop, epoch: int) -> dict:
        if not self.every or epoch % self.every or loop.fabric.global_rank != 0:
            return {}
        return {f"{self.key}_top1": self.score(loop.method, loop.fabric.device)}

    def final(self, method, device) -> dict:
        return {f"{self.key}_top1_holdout": self.score(method, device)} if self.every else {}


class KNNMonitor(EpochScore):
    """Top-1 of a weighted kNN (cosine, k, T) from `bank` training rows to `query` held-out rows."""

    key = "knn"

    def __init__(self, held_out: HeldOut, bank: np.ndarray, k: int, temperature: float, every: int):
        self.held_out, self.dataset, self.bank = held_out, held_out.dataset, np.sort(bank)
        self.k, self.temperature, self.every = k, temperature, every

    def score(self, method, device) -> float:
        bank = embed_eval(method, self.dataset.images[self.bank], self.held_out.resolution, device)
        query = self.held_out.features(method, device)
        labels = torch.from_numpy(np.asarray(self.dataset.labels))
        result = weighted_knn(bank, labels[self.bank], query, self.held_out.labels, k=self.k, temperature=self.temperature)
        return result.accuracy["top1"]


class OnlineLinear(EpochScore):
    """solo-learn's online linear classifier: a linear head on the detached backbone features of each step's
    first view, trained on the batch's labelled rows with its own SGD (lr `lr` on the run's lr schedule,
    momentum 0.9, no weight decay: solo-learn's classifier_lr 0.1 in its CIFAR configs), its gradient averaged
    over ranks so every rank keeps the same weights; behind a BatchNorm without affine parameters (MAE's
    linear probe, He et al. 2022, App. A.2: raw features of very different scales otherwise learn slowly).
    Its top-1 on the plain view of the held-out slice is logged every `every` epochs. It never touches the
    method, so turning it on or off changes no result."""

    key = "linear"

    def __init__(self, held_out: HeldOut, dim: int, lr: float, every: int, seed: int, device=None,
                 labels: np.ndarray | None = None):
        """`held_out` scores the head; `labels` (default the held-out dataset's) label the rows the batches name."""
        self.held_out, self.every, self.lr = held_out, every, lr
        self.labels = torch.as_tensor(np.asarray(held_out.dataset.labels if labels is None else labels), dtype=torch.int64)
        generator = torch.Generator().manual_seed(seed)
        linear = torch.nn.Linear(dim, int(self.labels.max()) + 1)
        with torch.no_grad():
            bound = 1 / math.sqrt(dim)
            linear.weight.uniform_(-bound, bound, generator=generator)
            linear.bias.uniform_(-bound, bound, generator=generator)
        self.head = torch.nn.Sequential(torch.nn.BatchNorm1d(dim, affine=False, eps=1e-6), linear)
        self.head.to(device)
        for p in self.head.parameters():
            p.grad = torch.zeros_like(p)  # a rank without labelled rows still joins the gradient's mean
        self.optimiser = torch.optim.SGD(self.head.parameters(), lr=lr, momentum=0.9)
        self.loss = torch.tensor(float("nan"))

    def learn(self, loop, batch: dict, features: torch.Tensor, factor: float) -> None:
        """One SGD step on `features` (N, D) of the batch's rows (`batch["rows"]`); a batch without rows trains nothing."""
        rows = batch.get("rows")
        if rows is None:
            return
        labels = self.labels[rows.cpu()].to(features.device, non_blocking=True)
        known = (labels >= 0).float()  # a mask, not a selection: no host sync on a step's label count
        self.head.train()
        each = F.cross_entropy(self.head(features.detach().float()), labels.clamp_min(0), reduction="none")
        loss = (each * known).sum() / known.sum().clamp_min(1)
        self.optimiser.zero_grad(set_to_none=False)
        loss.backward()
        if loop.fabric.world_size > 1:  # one all-reduce for the whole head
            grads = [p.grad for p in self.head.parameters()]
            mean = loop.fabric.all_reduce(torch.cat([g.flatten() for g in grads]), reduce_op="mean")
            for g, part in zip(grads, mean.split([g.numel() for g in grads])):
                g.copy_(part.view_as(g))
        for group in self.optimiser.param_groups:
            group["lr"] = self.lr * factor
        self.optimiser.step()
        self.loss = loss.detach()  # read (a host sync) only on logged steps

    @torch.no_grad()
    def score(self, method, device) -> float:
        features = self.held_out.features(method, device)
        self.head.eval()
        predicted = self.head(features.float()).argmax(dim=1).cpu()
        return float((predicted == self.held_out.labels).float().mean() * 100)

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {k: v.detach().cpu() for k, v in self.head.state_dict().items()}
        for name, p in self.head.named_parameters():
            if "momentum_buffer" in self.optimiser.state.get(p, {}):
                state[f"momentum/{name}"] = self.optimiser.state[p]["momentum_buffer"].cpu()
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Take back what `state_dict` gave (nothing from a checkpoint written without the probe: it starts fresh)."""
        if not state:
            return
        self.head.load_state_dict({k: v for k, v in state.items() if not k.startswith("momentum/")})
        for name, p in self.head.named_parameters():
            if f"momentum/{name}" in state:
                self.optimiser.state[p]["momentum_buffer"] = state[f"momentum/{name}"].clone().to(p.device)


def embedding_spread(loop, terms: dict) -> dict:
    """feature_std: mean per-dimension std of the L2-normalised embedding; effective_rank (RankMe)."""
    z = terms.get("_embedding")
    if z is None or z.shape[0] < 2:
        return {}
    z = z.float()
    std = F.normalize(z, dim=1).std(dim=0).mean()
    if loop.fabric.world_size > 1:  # every rank decides on the same number, or one would raise while the others wait
        std = loop.fabric.all_reduce(std.detach(), reduce_op="mean")
    spread = float(std) * math.sqrt(z.shape[1])
    record = {"feature_std": float(std), "effective_rank": effective_rank(z)}
    if spread < COLLAPSED:
        message = (f"step {loop.step}: the embedding is collapsing (per-dimension std {float(std):.2e}, "
                   f"{spread:.3f} of a spread one; effective rank {record['effective_rank']:.1f}).")
        if loop.run.abort_on_collapse:
            raise Collapsed(message + " Stopped by --abort-on-collapse; the last checkpoint is kept.")
        print(f"[warning] {message} Lower the lr or check the augmentations.", file=sys.stderr, flush=True)
    return record


def redundancy_to_alignment(loop, terms: dict) -> dict:
    """|weighted redundancy| / |alignment| (SMI Fig. 6) for methods that report both terms."""
    if "redundancy" not in terms or "alignment" not in terms:
        return {}
    return {"redundancy_to_alignment": float(terms["redundancy"].detach().abs() / terms["alignment"].detach().abs().clamp_min(1e-12))}
