"""LeJEPA (Balestriero & LeCun, 2025, Alg. 2): every crop (2 global + 6 local by default, the
`lejepa` view set) is projected; the centre of an image's global projections predicts all its
crops, and SIGReg pulls each crop's embedding towards the isotropic Gaussian along `slices`
random directions drawn afresh each step (objectives/sigreg.py). One trade-off weight, no
teacher, no stop-gradient, no predictor. With `gather` SIGReg tests every rank's rows together."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .. import distributed
from ..objectives.sigreg import SLICES, lejepa, slice_directions
from .base import Method, ProjectorSettings, build_projector, by_size, default


@dataclass
class LeJEPASettings(ProjectorSettings):
    name: ClassVar[str] = "lejepa"
    lambd: float = default(lejepa, "lambd")
    slices: int = SLICES  # Sec. 6.1
    num_global: int = default(lejepa, "num_global")
    gather: bool = True

    def __post_init__(self):
        if not 0 <= self.lambd <= 1:
            raise ValueError(f"method.lambd (SIGReg's share of the loss) must lie in [0, 1], got {self.lambd}; "
                             "the paper uses 0.05 (Sec. 6.1).")
        if not (isinstance(self.slices, int) and self.slices >= 1):
            raise ValueError(f"method.slices must be a positive int, got {self.slices!r}; the paper starts from 1024.")
        if not (isinstance(self.num_global, int) and self.num_global >= 1):
            raise ValueError(f"method.num_global must be a positive int (the global crops that lead the views), got "
                             f"{self.num_global!r}.")


class LeJEPA(Method):
    name, Settings, default_views = "lejepa", LeJEPASettings, "lejepa"
    max_views = None

    def __init__(self, encoder, settings: LeJEPASettings):
        super().__init__(encoder, settings)
        self.projector = build_projector("lejepa", encoder.dim, settings)

    def training_step(self, batch, stage: str = "main", carry: dict | None = None) -> dict[str, torch.Tensor]:
        s, dim = self.settings, self.encoder.dim
        if len(batch["views"]) < s.num_global:
            raise ValueError(f"lejepa takes its first {s.num_global} views as global (method.num_global) but the batch has "
                             f"{len(batch['views'])}; use a view set with that many (data.views=lejepa).")
        both = by_size(batch["views"], lambda x: torch.cat([h := self.encoder(x).pooled, self.projector(h)], dim=1))
        embeddings = {"backbone": [v[:, :dim] for v in both], "projector": [v[:, dim:] for v in both]}
        z = embeddings["projector"]
        local = z[0].detach()
        if s.gather:
            z = [distributed.gather_rows(v) for v in z]
        directions = slice_directions(z[0].shape[1], s.slices, z[0].device)
        terms = lejepa(z, directions, s.num_global, s.lambd)
        return {**terms, "_embedding": local, "_embeddings": embeddings}
