"""Pseudo-labellers: MIRA's fixed point and SwAV's Sinkhorn-Knopp (no gradient, float64 inside)."""
from .mira import mira, mira_objective
from .sinkhorn import sinkhorn

__all__ = ["mira", "mira_objective", "sinkhorn"]
