"""Few-label heads on frozen, cached backbone features: TwinTURBO and its FixMatch baseline."""
from .fixmatch import FixMatch, FixMatchLoss, fixmatch_loss
from .twinturbo import Discriminator, TokenBlock, TwinTurbo, TwinTurboHead, TwinTurboLoss, paper_widths

__all__ = [
    "Discriminator", "FixMatch", "FixMatchLoss", "TokenBlock", "TwinTurbo", "TwinTurboHead", "TwinTurboLoss",
    "fixmatch_loss", "paper_widths",
]
