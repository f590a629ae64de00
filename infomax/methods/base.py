"""What the training loop asks of a method, and the shared shape of the two-view SSL methods.

A method is an nn.Module that owns its step. The loop calls it once per stage and step:
`method(batch, stage, carry) -> terms`, a dict of tensors with "loss" (what that stage's
optimiser minimises); keys starting with "_" are handed to the next stage as `carry` and to the
loop's monitors ("_embedding": detached (N, D) rows for the collapse monitor), never logged;
"_embeddings" ({"projector": [...], "backbone": [...]}, one tensor per view) is what add-ons read.
Most methods have one stage, "main"; a method with an adversary (TwinTURBO's critic) lists
more in `stages` and says in `stage_parameters` which parameters each stage's optimiser moves.
Hooks: `on_before_optimiser_step(stage)` after backward (SwAV and MIRA drop the gradient of
prototypes frozen in the first epoch), `on_step_end(step, total_steps)` after every optimiser
step, `step` counting optimiser steps from 0 (an EMA update), `on_epoch_start(epoch)` when an
epoch starts or resumes. `encoder` is what the run exports as encoder.safetensors.

State that must differ by rank (SwAV's queue of this rank's past embeddings) is no buffer: DDP
broadcasts the wrapped module's buffers from rank 0 at every forward, and only rank 0 writes the
weights. A method keeps it as plain tensors and returns it from `rank_state()`; the loop gathers
every rank's into the checkpoint (`rank{r}/method/...`) and hands each rank its own back through
`load_rank_state` on resume.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..models.ema import EMA, cosine_momentum
from ..models.heads import MLP, PREDICTORS, PrototypeHead, projector


def default(fn, name: str):
    """The default of `fn`'s argument `name`: a method's settings repeat no objective default."""
    return inspect.signature(fn).parameters[name].default


class Steps(nn.Module):
    """The loop's contract (see the module docstring); the few-label heads implement only this."""

    stages: tuple[str, ...] = ("main",)

    def forward(self, batch, stage: str = "main", carry: dict | None = None) -> dict[str, torch.Tensor]:
        return self.training_step(batch, stage, carry)

    def training_step(self, batch, stage: str = "main", carry: dict | None = None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def stage_parameters(self, stage: str) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def on_before_optimiser_step(self, stage: str) -> None:
        pass

    def on_step_end(self, step: int, total_steps: int) -> None:
        pass

    def on_epoch_start(self, epoch: int) -> None:
        pass

    def rank_state(self) -> dict[str, torch.Tensor]:
        """This rank's own state (same keys and shapes on every rank), saved per rank; none by default."""
        return {}

    def load_rank_state(self, state: dict[str, torch.Tensor]) -> None:
        """Take back what `rank_state` gave on this rank (empty from a checkpoint that has none)."""


class Method(Steps):
    """A self-supervised method around a trainable `encoder`."""

    name: ClassVar[str]
    Settings: ClassVar[type]
    default_views: ClassVar[str] = "plain"  # the view set of data/views.py this method trains with
    num_views: ClassVar[int] = 2
    max_views: ClassVar[int | None] = 2  # views a step reads; None: every view of a multi-crop view set
    min_batch: ClassVar[int] = 2  # per device
    communicates: ClassVar[bool] = True  # gathers across ranks and synchronises batch norm under DDP
    embeddings: ClassVar[tuple[str, ...]] = ("projector", "backbone")  # what its terms' "_embeddings" hold (add-ons)

    def __init__(self, encoder: nn.Module, settings):
        super().__init__()
        self.encoder, self.settings = encoder, settings

    def check_batch(self, global_batch: int) -> None:
        """Refuse a global batch the method cannot learn from (SwAV: fewer samples than prototypes)."""

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The representation evaluation uses: the encoder's pooled output."""
        return self.encoder(images).pooled


def build_projector(kind: str, in_dim: int, s) -> nn.Module:
    """The projector of method `kind` from a ProjectorSettings (None widths: the paper's)."""
    return projector(kind, in_dim, s.projector_hidden, s.projector_out, s.projector_layers, batch_norm=s.projector_batch_norm)


def build_predictor(kind: str, dim: int, s) -> nn.Module:
    """BYOL's / SimSiam's predictor dim -> hidden -> dim from a PredictorSettings."""
    return MLP(dim, [s.predictor_hidden or PREDICTORS[kind]], dim, batch_norm=s.predictor_batch_norm)


@dataclass
class ProjectorSettings:
    """Projector widths; None takes the method's paper widths (models/heads.py PROJECTORS)."""

    projector_hidden: int | None = None
    projector_out: int | None = None
    projector_layers: int | None = None
    projector_batch_norm: bool = True


@dataclass
class PredictorSettings:
    """The predictor of BYOL and SimSiam: Linear-BN-ReLU-Linear; None takes the paper's hidden width."""

    predictor_hidden: int | None = None
    predictor_batch_norm: bool = True


class TwoViewMethod(Method):
    """encoder -> projector on each of two views -> `objective(z_a, z_b)` -> terms."""

    projector_kind: ClassVar[str]

    def __init__(self, encoder: nn.Module, settings: ProjectorSettings):
        super().__init__(encoder, settings)
        s = settings
        self.projector = build_projector(self.projector_kind, encoder.dim, s)

    def training_step(self, batch, stage: str = "main", carry: dict | None = None) -> dict[str, torch.Tensor]:
        h = [self.encoder(v).pooled for v in batch["views"][:2]]  # one forward per view: batch-norm statistics per view
        z = [self.projector(v) for v in h]
        terms = self.objective(*z)
        terms.update({"_embedding": z[0].detach(), "_embeddings": {"projector": z, "backbone": h}})
        return terms

    def objective(self, z_a: torch.Tensor, z_b: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError


def by_size(views: list[torch.Tensor], fn) -> list[torch.Tensor]:
    """`fn` on every view, one call per distinct view size (multi-crop: the global crops in one
    forward, the local crops in another, as SwAV and DINO batch them); results in view order."""
    groups: dict[tuple, list[int]] = {}
    for i, view in enumerate(views):
        groups.setdefault(tuple(view.shape[1:]), []).append(i)
    out: list[torch.Tensor | None] = [None] * len(views)
    for members in groups.values():
        rows = fn(torch.cat([views[i] for i in members]) if len(members) > 1 else views[members[0]])
        for i, part in zip(members, rows.split([views[i].shape[0] for i in members])):
            out[i] = part
    return out


@dataclass
class TeacherSettings:
    """The EMA teacher's momentum, raised on a cosine from base to final over the run's optimiser steps."""

    momentum_base: float = default(cosine_momentum, "base")
    momentum_final: float = default(cosine_momentum, "final")

    def __post_init__(self):
        if not 0 <= self.momentum_base < 1:
            raise ValueError(f"method.momentum_base must lie in [0, 1), got {self.momentum_base}: at 1 the teacher "
                             "never moves from its random start (a teacher without a student).")
        if not self.momentum_base <= self.momentum_final <= 1:
            raise ValueError(f"method.momentum_final must lie in [momentum_base, 1] = [{self.momentum_base}, 1], "
                             f"got {self.momentum_final}.")


class Teacher(nn.Module):
    """An EMA copy of the student's `parts` (name -> module), moved after every optimiser step.

    The momentum at optimiser step k of K is `cosine_momentum(k, K)`: it counts optimiser steps,
    never batches or epochs, so it reaches `final` at the run's last step whatever the epoch length.
    Parameters are averaged; batch-norm buffers are copied from the student (models/ema.py). The
    teacher runs in the student's mode, so in training its batch norm uses batch statistics.
    """

    def __init__(self, parts: dict[str, nn.Module], settings: TeacherSettings):
        super().__init__()
        if not any(p.requires_grad for m in parts.values() for p in m.parameters()):
            raise ValueError("an EMA teacher needs a student with trainable parameters to follow; the student has none.")
        self.ema, self.base, self.final = EMA(nn.ModuleDict(parts)), settings.momentum_base, settings.momentum_final
        self.momentum = self.base

    def __getitem__(self, name: str) -> nn.Module:
        return self.ema.module[name]

    @torch.no_grad()
    def update(self, parts: dict[str, nn.Module], step: int, total_steps: int) -> None:
        self.momentum = cosine_momentum(step, total_steps, self.base, self.final)
        self.ema.update(nn.ModuleDict(parts), self.momentum)


@dataclass
class PrototypeSettings:
    """A prototype head (L2-normalised input times unit prototypes: SwAV App. A; MIRA Sec. 4)."""

    num_prototypes: int = 3000
    freeze_prototypes_epochs: int = 1  # SwAV's freeze_prototypes (and the MIRA authors' freeze-head-epochs)

    def __post_init__(self):
        if self.num_prototypes < 2:
            raise ValueError(f"method.num_prototypes must be at least 2, got {self.num_prototypes}.")
        if self.freeze_prototypes_epochs < 0:
            raise ValueError(f"method.freeze_prototypes_epochs must be >= 0, got {self.freeze_prototypes_epochs}.")


class PrototypeMethod(Method):
    """encoder -> projector -> prototype scores on every view (views of one size in one forward);
    the prototypes get no gradient step in the first `freeze_prototypes_epochs` epochs."""

    projector_kind: ClassVar[str]
    max_views = None

    def __init__(self, encoder: nn.Module, settings):
        super().__init__(encoder, settings)
        s = settings
        self.projector = build_projector(self.projector_kind, encoder.dim, s)
        self.prototypes = PrototypeHead(self.projector.out_dim, s.num_prototypes)
        self.epoch = 0

    def student(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder, "projector": self.projector, "prototypes": self.prototypes}

    @staticmethod
    def scores(parts, views: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor], dict]:
        """(unit projections, prototype scores, the views' embeddings before normalisation) of each view
        through `parts` (the student or a teacher)."""
        dim = parts["encoder"].dim
        both = by_size(views, lambda x: torch.cat([h := parts["encoder"](x).pooled, parts["projector"](h)], dim=1))
        embeddings = {"backbone": [v[:, :dim] for v in both], "projector": [v[:, dim:] for v in both]}
        z = [F.normalize(v, dim=1) for v in embeddings["projector"]]
        return z, [parts["prototypes"](v) for v in z], embeddings

    def on_epoch_start(self, epoch: int) -> None:
        self.epoch = epoch

    def on_before_optimiser_step(self, stage: str) -> None:
        if self.epoch < self.settings.freeze_prototypes_epochs:
            self.prototypes.weight.grad = None  # no step at all: neither gradient, momentum nor weight decay
