"""Mutual-information objectives: pure tensor functions, one family per file.

Each computes in float32 (float64 kept) with autocast off, checks its input, and cites
its paper's equations. `LOSSES` maps names to functions; `Objective` binds one to
keyword arguments as an nn.Module.
"""
from .._validate import checks
from .barlow import barlow_terms, barlow_twins
from .bootstrap import byol, simsiam
from .e2mc import e2mc, m_spacings_entropy, offdiag_covariance
from .hydes import hydes
from .infonce import info_nce
from .mmcr import mmcr
from .sigreg import epps_pulley, lejepa, sigreg
from .module import LOSSES, Objective
from .smi import gaussian_mi, smi, smi_terms
from .swapped import swapped_prediction
from .twinturbo import bin_cross, cat_cross, cat_twin, critic_losses, latent_nce
from .vicreg import vcreg, vicreg
from .wang_isola import alignment, uniformity

__all__ = [
    "LOSSES", "Objective", "alignment", "barlow_terms", "barlow_twins", "bin_cross", "byol", "cat_cross", "cat_twin", "checks",
    "critic_losses", "e2mc", "epps_pulley", "gaussian_mi", "hydes", "lejepa", "info_nce", "latent_nce", "m_spacings_entropy",
    "mmcr", "offdiag_covariance", "sigreg", "simsiam", "smi", "smi_terms", "swapped_prediction", "uniformity", "vcreg", "vicreg",
]
