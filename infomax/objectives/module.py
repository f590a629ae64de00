"""Registry of objectives by name and an nn.Module that binds one to its settings."""
from __future__ import annotations

import inspect

import torch

from .barlow import barlow_twins
from .bootstrap import byol, simsiam
from .e2mc import e2mc
from .hydes import hydes
from .infonce import info_nce
from .mmcr import mmcr
from .sigreg import lejepa, sigreg
from .smi import smi
from .swapped import swapped_prediction
from .twinturbo import bin_cross, cat_cross, cat_twin, latent_nce
from .vicreg import vcreg, vicreg
from .wang_isola import alignment, uniformity

LOSSES = {
    "info_nce": info_nce, "barlow_twins": barlow_twins, "vicreg": vicreg, "vcreg": vcreg, "smi": smi,
    "e2mc": e2mc, "hydes": hydes, "alignment": alignment, "uniformity": uniformity, "mmcr": mmcr, "sigreg": sigreg, "lejepa": lejepa,
    "swapped_prediction": swapped_prediction, "cat_cross": cat_cross, "cat_twin": cat_twin,
    "bin_cross": bin_cross, "latent_nce": latent_nce, "byol": byol, "simsiam": simsiam,
}


class Objective(torch.nn.Module):
    """`Objective("smi", lambd=0.5)(z_a, z_b)`: a named objective with bound settings."""

    def __init__(self, name: str, **settings):
        super().__init__()
        if name not in LOSSES:
            raise ValueError(f"unknown objective {name!r}; choose one of {sorted(LOSSES)}.")
        fn = LOSSES[name]
        accepted = inspect.signature(fn).parameters
        unknown = sorted(set(settings) - set(accepted))
        if unknown:
            raise ValueError(f"{name} takes no setting(s) {unknown}; it accepts {list(accepted)}.")
        self.name, self.fn, self.settings = name, fn, settings

    def forward(self, *inputs):
        return self.fn(*inputs, **self.settings)

    def extra_repr(self) -> str:
        return f"{self.name}, " + ", ".join(f"{k}={v!r}" for k, v in self.settings.items())
