"""Methods: one small class per method composing a model with its objective(s).

TwinTURBO (`twinturbo.py`) and its FixMatch baseline (`fixmatch.py`) train a head on
frozen, cached backbone features.
"""
from .fixmatch import FixMatch, FixMatchLoss, fixmatch_loss
from .twinturbo import Discriminator, TokenBlock, TwinTurbo, TwinTurboHead, TwinTurboLoss, paper_widths

__all__ = [
    "Discriminator", "FixMatch", "FixMatchLoss", "TokenBlock", "TwinTurbo", "TwinTurboHead", "TwinTurboLoss",
    "fixmatch_loss", "paper_widths",
]
