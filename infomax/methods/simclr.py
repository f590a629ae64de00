"""SimCLR (Chen et al., 2020, arXiv:2002.05709): NT-Xent (Eq. 1) between the projections of two
views, the other 2N - 2 views of the global batch as negatives (gathered across ranks, Sec. 2.2)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..objectives.infonce import info_nce
from .base import ProjectorSettings, TwoViewMethod, default


@dataclass
class SimCLRSettings(ProjectorSettings):
    name: ClassVar[str] = "simclr"
    temperature: float = default(info_nce, "temperature")
    gather: bool = True  # negatives from every rank

    def __post_init__(self):
        if not self.temperature > 0:
            raise ValueError(f"method.temperature must be positive, got {self.temperature}.")


class SimCLR(TwoViewMethod):
    name, Settings, default_views, projector_kind = "simclr", SimCLRSettings, "simclr", "simclr"

    def objective(self, z_a, z_b):
        return {"loss": info_nce(z_a, z_b, self.settings.temperature, gather=self.settings.gather)}
