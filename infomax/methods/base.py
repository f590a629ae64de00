"""What the training loop asks of a method, and the shared shape of the two-view SSL methods.

A method is an nn.Module that owns its step. The loop calls it once per stage and step:
`method(batch, stage, carry) -> terms`, a dict of tensors with "loss" (what that stage's
optimiser minimises); keys starting with "_" are handed to the next stage as `carry` and to the
loop's monitors ("_embedding": detached (N, D) rows for the collapse monitor), never logged.
Most methods have one stage, "main"; a method with an adversary (TwinTURBO's critic) lists
more in `stages` and says in `stage_parameters` which parameters each stage's optimiser moves.
Hooks: `on_step_end(step, total_steps)` after every optimiser step (an EMA update),
`on_epoch_start(epoch)`. `encoder` is what the run exports as encoder.safetensors.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..models.heads import projector


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

    def on_step_end(self, step: int, total_steps: int) -> None:
        pass

    def on_epoch_start(self, epoch: int) -> None:
        pass


class Method(Steps):
    """A self-supervised method around a trainable `encoder`."""

    name: ClassVar[str]
    Settings: ClassVar[type]
    default_views: ClassVar[str] = "plain"  # the view recipe of data/views.py this method trains with
    num_views: ClassVar[int] = 2
    min_batch: ClassVar[int] = 2  # per device
    communicates: ClassVar[bool] = True  # gathers across ranks and synchronises batch norm under DDP

    def __init__(self, encoder: nn.Module, settings):
        super().__init__()
        self.encoder, self.settings = encoder, settings

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The representation evaluation uses: the encoder's pooled output."""
        return self.encoder(images).pooled


@dataclass
class ProjectorSettings:
    """Projector widths; None takes the method's paper widths (models/heads.py PROJECTORS)."""

    projector_hidden: int | None = None
    projector_out: int | None = None
    projector_layers: int | None = None
    projector_batch_norm: bool = True


class TwoViewMethod(Method):
    """encoder -> projector on each of two views -> `objective(z_a, z_b)` -> terms."""

    projector_kind: ClassVar[str]

    def __init__(self, encoder: nn.Module, settings: ProjectorSettings):
        super().__init__(encoder, settings)
        s = settings
        self.projector = projector(self.projector_kind, encoder.dim, s.projector_hidden, s.projector_out,
                                   s.projector_layers, batch_norm=s.projector_batch_norm)

    def training_step(self, batch, stage: str = "main", carry: dict | None = None) -> dict[str, torch.Tensor]:
        view_a, view_b = batch["views"][:2]
        z_a = self.projector(self.encoder(view_a).pooled)  # one forward per view: batch-norm statistics per view
        z_b = self.projector(self.encoder(view_b).pooled)
        terms = self.objective(z_a, z_b)
        terms["_embedding"] = z_a.detach()
        return terms

    def objective(self, z_a: torch.Tensor, z_b: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError
