"""Barlow Twins (Zbontar et al., 2021, arXiv:2103.03230, Eq. 1): the cross-correlation of the two
views' standardised projections over the global batch, pushed to the identity. Projections are
gathered across ranks (the paper all-reduces C), so two ranks of B equal one of 2B."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..distributed import gather_rows
from ..objectives.barlow import barlow_terms, barlow_twins
from .base import ProjectorSettings, TwoViewMethod, default


@dataclass
class BarlowTwinsSettings(ProjectorSettings):
    name: ClassVar[str] = "barlow_twins"
    lambd: float = default(barlow_twins, "lambd")


class BarlowTwins(TwoViewMethod):
    name, Settings, default_views, projector_kind = "barlow_twins", BarlowTwinsSettings, "barlow", "barlow"

    def objective(self, z_a, z_b):
        terms = barlow_terms(gather_rows(z_a), gather_rows(z_b))
        loss = terms["alignment"] + self.settings.lambd * terms["redundancy"]
        return {"loss": loss, "alignment": terms["alignment"], "redundancy": self.settings.lambd * terms["redundancy"]}
