"""MIRA (Lee et al., 2022, arXiv:2211.02284; mira paper Sec. 3-4): the EMA teacher's prototype
scores of the two global crops give probabilities at tau_t = 0.225; the MIRA fixed point (Eq. 5,
beta = 2/3, 30 iterations, float64, marginals all-reduced over ranks: assign/mira.py) turns them
into pseudo-labels, which every student crop predicts by swapped prediction at tau_s = 0.1 (Eq. 6).
Projector 2048-2048-256, prototype head K = 3000 (Sec. 4.1), teacher momentum 0.99 -> 1 (cosine).

Two details of the authors' code that the paper does not state are options, off by default:
`beta_start` (their code anneals beta from 0.75 to 2/3 on a cosine over the steps) and
`init="sharpened"` (their fixed point starts from (mean softmax(l / (tau_t (1 - beta))))^(1 - beta)).
`ema: false` takes the targets from the student itself (the paper's Table 6 ablation).

`teacher_head` (default "shared"): the authors' code (train.py, Model._update_ema_params) copies the
student's prototype head into the teacher after every EMA update ("head is shared -- this performs
better than using the ema-head"), so the teacher's targets use the student's current prototypes;
"ema" averages the head with the rest of the teacher. The paper says only "EMA network" (Sec. 4.1)
and its numbers come from that code, hence the default; we have not measured the difference.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .. import distributed
from ..assign.mira import INITS, mira
from ..models.ema import cosine_momentum
from ..objectives.swapped import swapped_prediction
from .base import PrototypeMethod, PrototypeSettings, ProjectorSettings, Teacher, TeacherSettings, default

TEACHER_HEADS = ("shared", "ema")


@dataclass
class MIRASettings(ProjectorSettings, PrototypeSettings, TeacherSettings):
    name: ClassVar[str] = "mira"
    student_temperature: float = default(swapped_prediction, "temperature")
    teacher_temperature: float = default(mira, "temperature")
    beta: float = default(mira, "beta")
    beta_start: float | None = None  # None: beta throughout (the paper); the authors' code: 0.75
    iters: int = default(mira, "iters")
    init: str = default(mira, "init")
    ema: bool = True
    teacher_head: str = "shared"  # shared: the student's prototypes (the authors' code) | ema: averaged

    def __post_init__(self):
        PrototypeSettings.__post_init__(self)
        TeacherSettings.__post_init__(self)
        for key in ("student_temperature", "teacher_temperature"):
            if not getattr(self, key) > 0:
                raise ValueError(f"method.{key} must be positive, got {getattr(self, key)}.")
        for key in ("beta", "beta_start"):
            value = getattr(self, key)
            if value is not None and not 0 <= value < 1:
                raise ValueError(f"method.{key} must lie in [0, 1) (Eq. 3 is strongly convex there), got {value}.")
        if self.iters < 1:
            raise ValueError(f"method.iters (fixed-point iterations) must be at least 1, got {self.iters}.")
        if self.teacher_head not in TEACHER_HEADS:
            raise ValueError(f"method.teacher_head must be one of {', '.join(TEACHER_HEADS)}, got {self.teacher_head!r}.")
        if self.init not in INITS:
            raise ValueError(f"method.init must be one of {', '.join(INITS)}, got {self.init!r}.")


class MIRA(PrototypeMethod):
    name, Settings, default_views, projector_kind = "mira", MIRASettings, "mira", "mira"

    def __init__(self, encoder, settings: MIRASettings):
        super().__init__(encoder, settings)
        self.teacher = Teacher(self.student(), settings) if settings.ema else None
        start = settings.beta if settings.beta_start is None else settings.beta_start
        self.register_buffer("beta_now", torch.tensor(start, dtype=torch.float64))  # in the checkpoint: exact resume

    def training_step(self, batch, stage: str = "main", carry: dict | None = None) -> dict[str, torch.Tensor]:
        views = batch["views"]
        z, scores, embeddings = self.scores(self.student(), views)
        with torch.no_grad():
            teacher_scores = self.scores(self.teacher, views[:2])[1] if self.teacher is not None else scores[:2]
            s = self.settings
            targets = [mira(t.detach(), s.teacher_temperature, float(self.beta_now), s.iters, group=distributed.world(),
                            init=s.init) for t in teacher_scores]
        loss = swapped_prediction(targets, scores, s.student_temperature)
        return {"loss": loss, "_targets": torch.stack(targets), "_embedding": z[0].detach(), "_embeddings": embeddings}

    def on_step_end(self, step: int, total_steps: int) -> None:
        if self.teacher is not None:
            self.teacher.update(self.student(), step, total_steps)
            if self.settings.teacher_head == "shared":  # after the EMA update, as the authors' code does
                self.teacher["prototypes"].weight.copy_(self.prototypes.weight.detach())
        s = self.settings
        if s.beta_start is not None:  # the same cosine ramp as the momentum, from beta_start to beta
            self.beta_now.fill_(cosine_momentum(step + 1, total_steps, s.beta_start, s.beta))
