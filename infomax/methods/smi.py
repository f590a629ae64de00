"""SMI (smi paper; equations reconstructed in objectives/smi.py): Gaussian MI of sample-level
correlations between the two views' projections. Its loss is local to each rank's batch by
design (no gather layer, no synchronised batch norm: smi paper, Sec. 4 and App.), so under DDP
a step on two ranks of B is the mean of two B-sized losses and needs no communication but the
gradient all-reduce."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ..objectives.smi import smi, smi_terms
from .base import ProjectorSettings, TwoViewMethod, default


@dataclass
class SMISettings(ProjectorSettings):
    name: ClassVar[str] = "smi"
    lambd: float = default(smi, "lambd")
    eps: float = default(smi, "eps")
    within_view: bool = default(smi, "within_view")


class SMI(TwoViewMethod):
    name, Settings, default_views, projector_kind = "smi", SMISettings, "smi", "smi"
    communicates = False

    def objective(self, z_a, z_b):
        s = self.settings
        terms = smi_terms(z_a, z_b, s.eps, default(smi, "reduction"), s.within_view)
        redundancy = s.lambd * terms["redundancy"]
        return {"loss": terms["alignment"] + redundancy, "alignment": terms["alignment"], "redundancy": redundancy}
