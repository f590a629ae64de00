"""SimSiam (Chen & He, 2021, arXiv:2011.10566): each view's prediction matches the other view's
projection under a stop-gradient (Eq. 1-2), no teacher and no negatives; a 3-layer projector
with an affine-free batch norm on its output and a 512-wide bottleneck predictor (Sec. 4; the
authors' simsiam/builder.py), MoCo v2's augmentations (the authors' main_simsiam.py: views "simsiam")."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..objectives.bootstrap import simsiam
from .base import Method, PredictorSettings, ProjectorSettings, build_predictor, build_projector


@dataclass
class SimSiamSettings(ProjectorSettings, PredictorSettings):
    name: ClassVar[str] = "simsiam"


class SimSiam(Method):
    name, Settings, default_views = "simsiam", SimSiamSettings, "simsiam"

    def __init__(self, encoder, settings: SimSiamSettings):
        super().__init__(encoder, settings)
        s = settings
        self.projector = build_projector("simsiam", encoder.dim, s)
        self.predictor = build_predictor("simsiam", self.projector.out_dim, s)

    def training_step(self, batch, stage: str = "main", carry: dict | None = None) -> dict[str, torch.Tensor]:
        h = [self.encoder(v).pooled for v in batch["views"][:2]]
        z = [self.projector(v) for v in h]
        return {"loss": simsiam(self.predictor(z[0]), self.predictor(z[1]), *z), "_embedding": z[0].detach(),
                "_embeddings": {"projector": z, "backbone": h}}
