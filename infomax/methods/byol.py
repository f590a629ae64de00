"""BYOL (Grill et al., 2020, arXiv:2006.07733): the online projection of each view, through a
predictor, regresses the EMA target's projection of the other view (Eq. 2, symmetrised); the
target follows the online network with momentum base -> 1 on a cosine over optimiser steps. The
paper's base is 0.996 (Sec. 3.2, ImageNet); our default 0.99 (models/ema.py) is solo-learn's CIFAR
byol.yaml (base_tau 0.99) and MIRA's. Each recipe says which it uses (method.momentum_base)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..objectives.bootstrap import byol
from .base import Method, PredictorSettings, ProjectorSettings, Teacher, TeacherSettings, build_predictor, build_projector


@dataclass
class BYOLSettings(ProjectorSettings, PredictorSettings, TeacherSettings):
    name: ClassVar[str] = "byol"


class BYOL(Method):
    name, Settings, default_views = "byol", BYOLSettings, "byol"

    def __init__(self, encoder, settings: BYOLSettings):
        super().__init__(encoder, settings)
        s = settings
        self.projector = build_projector("byol", encoder.dim, s)
        self.predictor = build_predictor("byol", self.projector.out_dim, s)
        self.teacher = Teacher(self.student(), s)

    def student(self):
        return {"encoder": self.encoder, "projector": self.projector}

    def training_step(self, batch, stage: str = "main", carry: dict | None = None) -> dict[str, torch.Tensor]:
        views = batch["views"][:2]
        h = [self.encoder(v).pooled for v in views]  # one forward per view, as the paper's
        z = [self.projector(v) for v in h]
        with torch.no_grad():
            t = [self.teacher["projector"](self.teacher["encoder"](v).pooled) for v in views]
        return {"loss": byol(self.predictor(z[0]), self.predictor(z[1]), *t), "_embedding": z[0].detach(),
                "_embeddings": {"projector": z, "backbone": h}}

    def on_step_end(self, step: int, total_steps: int) -> None:
        self.teacher.update(self.student(), step, total_steps)
