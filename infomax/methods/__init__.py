"""Methods: one small class per method that owns its training step (see base.py), by name.

Self-supervised pretraining, one file each: simclr, barlow_twins, vicreg, smi (two views, a
projector, an objective), byol and simsiam (a predictor; BYOL's EMA teacher), swav and mira
(prototypes and an assigner; MIRA's EMA teacher), hydes (multi-crop, every crop an anchor), lejepa
(multi-crop, the global centre predicts every crop, SIGReg keeps the crops Gaussian). Few-label heads
on frozen features (TwinTURBO, FixMatch) live in `fewlabel/`.
"""
from __future__ import annotations

from .barlow_twins import BarlowTwins
from .base import Method
from .byol import BYOL
from .fewlabel import FEWLABEL
from .hydes import HyDeS
from .lejepa import LeJEPA
from .mira import MIRA
from .simclr import SimCLR
from .simsiam import SimSiam
from .smi import SMI
from .swav import SwAV
from .vicreg import VICReg

METHODS: dict[str, type[Method]] = {m.name: m for m in (SimCLR, BarlowTwins, VICReg, SMI, BYOL, SimSiam, SwAV, MIRA, HyDeS,
                                                         LeJEPA)}


def _known(name) -> type[Method]:
    if name not in METHODS:
        heads = f" ({', '.join(FEWLABEL)} are few-label heads: `infomax finetune`)" if name in FEWLABEL else ""
        raise ValueError(f"unknown method {name!r}; choose one of: {', '.join(METHODS)}{heads}.")
    return METHODS[name]


def settings_of(name: str) -> type:
    """The Settings of a pretraining method or of a few-label head (`infomax finetune`)."""
    if name in FEWLABEL:
        return FEWLABEL[name].Settings
    return _known(name).Settings


def build(name: str, encoder, settings=None, **overrides) -> Method:
    """`build("simclr", encoder, temperature=0.2)`: the method around `encoder` with its settings."""
    cls = _known(name)
    return cls(encoder, settings if settings is not None else cls.Settings(**overrides))


__all__ = ["FEWLABEL", "METHODS", "Method", "build", "settings_of"]
