"""Methods: one small class per method that owns its training step (see base.py), by name.

Self-supervised pretraining: simclr, barlow_twins, vicreg, smi (one file each). Few-label heads
on frozen features (TwinTURBO, FixMatch) live in `fewlabel/`.
"""
from __future__ import annotations

from .barlow_twins import BarlowTwins
from .base import Method
from .simclr import SimCLR
from .smi import SMI
from .vicreg import VICReg

METHODS: dict[str, type[Method]] = {m.name: m for m in (SimCLR, BarlowTwins, VICReg, SMI)}


def _known(name) -> type[Method]:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of: {', '.join(METHODS)}.")
    return METHODS[name]


def settings_of(name: str) -> type:
    return _known(name).Settings


def build(name: str, encoder, settings=None, **overrides) -> Method:
    """`build("simclr", encoder, temperature=0.2)`: the method around `encoder` with its settings."""
    cls = _known(name)
    return cls(encoder, settings if settings is not None else cls.Settings(**overrides))


__all__ = ["METHODS", "Method", "build", "settings_of"]
