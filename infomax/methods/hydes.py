"""HyDeS (hydes paper, Eq. 1-4, Sec. III): every crop of the batch (2 global + 6 local by default,
the `multicrop` view set) is projected onto the unit sphere and is an anchor; the vMF kernel
entropy of all views (global) is raised and that of each image's own views (local) lowered,
loss = -(alpha H_global - beta H_local) (objectives/hydes.py). The kernel concentration kappa is
a setting (`--set method.kappa=20`; the paper sweeps 0.1, ln 2, 1, 10, 20). With `gather` the
global entropy runs over every rank's views, differentiably."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .. import distributed
from ..objectives.hydes import hydes
from .base import Method, ProjectorSettings, build_projector, by_size, default


@dataclass
class HyDeSSettings(ProjectorSettings):
    name: ClassVar[str] = "hydes"
    kappa: float = default(hydes, "kappa")
    alpha: float = default(hydes, "alpha")
    beta: float = default(hydes, "beta")
    gather: bool = True  # the global entropy over every rank's views

    def __post_init__(self):
        if not self.kappa > 0:
            raise ValueError(f"method.kappa (the vMF concentration) must be positive, got {self.kappa}; "
                             "the paper sweeps 0.1, 0.693 (ln 2), 1, 10 and 20.")
        for key in ("alpha", "beta"):
            if not getattr(self, key) >= 0:
                raise ValueError(f"method.{key} must be >= 0, got {getattr(self, key)}.")


class HyDeS(Method):
    name, Settings, default_views = "hydes", HyDeSSettings, "multicrop"
    max_views = None

    def __init__(self, encoder, settings: HyDeSSettings):
        super().__init__(encoder, settings)
        s = settings
        self.projector = build_projector("hydes", encoder.dim, s)

    def training_step(self, batch, stage: str = "main", carry: dict | None = None) -> dict[str, torch.Tensor]:
        dim = self.encoder.dim
        both = by_size(batch["views"], lambda x: torch.cat([h := self.encoder(x).pooled, self.projector(h)], dim=1))
        embeddings = {"backbone": [v[:, :dim] for v in both], "projector": [v[:, dim:] for v in both]}
        z = embeddings["projector"]
        local = z[0].detach()
        if self.settings.gather:
            z = [distributed.gather_rows(v) for v in z]
        images = torch.arange(z[0].shape[0], device=z[0].device).repeat(len(z))
        s = self.settings
        terms = hydes(torch.cat(z), images, s.kappa, s.alpha, s.beta, return_terms=True)
        return {**terms, "_embedding": local, "_embeddings": embeddings}
