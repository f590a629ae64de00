"""infomax: representation learning by maximising mutual information."""
__version__ = "0.1.0"
