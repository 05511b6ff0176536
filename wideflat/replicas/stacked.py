"""Deprecated: the vmap engine moved to :mod:`wideflat.replicas.vmap`."""

from .._deprecated import moved

__all__ = ["StackedReplicas", "stacked_center"]  # noqa: F822 (moved names, served by __getattr__)
__getattr__ = moved(__name__, dict.fromkeys(__all__, "wideflat.replicas.vmap"))
