"""Replicas of a model for Replicated-SGD: the container, its center, BatchNorm statistics."""

from .bn import recompute_bn
from .replicas import Replicas

__all__ = ["Replicas", "recompute_bn"]
