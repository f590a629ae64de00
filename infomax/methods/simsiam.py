"""SimSiam (Chen & He, 2021, arXiv:2011.10566): each view's prediction matches the other view's
projection under a stop-gradient (Eq. 1-2), no teacher and no negatives; a 3-layer projector
with batch norm on its output and a 512-wide bottleneck predictor (Sec. 4)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..models.heads import MLP, PREDICTORS, projector
from ..objectives.bootstrap import simsiam
from .base import Method, PredictorSettings, ProjectorSettings


@dataclass
class SimSiamSettings(ProjectorSettings, PredictorSettings):
    name: ClassVar[str] = "simsiam"


class SimSiam(Method):
    name, Settings, default_views = "simsiam", SimSiamSettings, "simclr"

    def __init__(self, encoder, settings: SimSiamSettings):
        super().__init__(encoder, settings)
        s = settings
        self.projector = projector("simsiam", encoder.dim, s.projector_hidden, s.projector_out, s.projector_layers,
                                   batch_norm=s.projector_batch_norm)
        self.predictor = MLP(self.projector.out_dim, [s.predictor_hidden or PREDICTORS["simsiam"]], self.projector.out_dim,
                             batch_norm=s.predictor_batch_norm)

    def training_step(self, batch, stage: str = "main", carry: dict | None = None) -> dict[str, torch.Tensor]:
        z = [self.projector(self.encoder(v).pooled) for v in batch["views"][:2]]
        return {"loss": simsiam(self.predictor(z[0]), self.predictor(z[1]), *z), "_embedding": z[0].detach()}
