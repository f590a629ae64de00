"""Few-label heads on frozen, cached backbone features: TwinTURBO and its FixMatch baseline, by name."""
from .fixmatch import FixMatch, FixMatchLoss, fixmatch_loss
from .twinturbo import HEADS, Discriminator, TokenBlock, TwinTurbo, TwinTurboHead, TwinTurboLoss, paper_widths

FEWLABEL = {m.name: m for m in (TwinTurbo, FixMatch)}

__all__ = [
    "FEWLABEL", "HEADS", "Discriminator", "FixMatch", "FixMatchLoss", "TokenBlock", "TwinTurbo", "TwinTurboHead", "TwinTurboLoss",
    "fixmatch_loss", "paper_widths",
]
