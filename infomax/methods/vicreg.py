"""VICReg (Bardes et al., 2022, arXiv:2105.04906, Eq. 1-6): invariance, variance and covariance
terms on the two views' projections of the global batch (gathered across ranks, as the paper's
FullGatherLayer)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..distributed import gather_rows
from ..objectives.vicreg import vicreg
from .base import ProjectorSettings, TwoViewMethod, default


@dataclass
class VICRegSettings(ProjectorSettings):
    name: ClassVar[str] = "vicreg"
    sim: float = default(vicreg, "sim")
    var: float = default(vicreg, "var")
    cov: float = default(vicreg, "cov")


class VICReg(TwoViewMethod):
    name, Settings, default_views, projector_kind = "vicreg", VICRegSettings, "vicreg", "vicreg"

    def objective(self, z_a, z_b):
        s = self.settings
        return {"loss": vicreg(gather_rows(z_a), gather_rows(z_b), s.sim, s.var, s.cov)}
