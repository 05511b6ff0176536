"""Deprecated: the loop engine moved to :mod:`wideflat.replicas.loop`."""

from .._deprecated import moved

__all__ = ["Replicas", "mean_over_replicas"]  # noqa: F822 (moved names, served by __getattr__)
__getattr__ = moved(__name__, dict.fromkeys(__all__, "wideflat.replicas.loop"))
