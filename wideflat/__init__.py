"""wideflat: entropic training and flatness measures for PyTorch."""

__version__ = "0.1.0"
