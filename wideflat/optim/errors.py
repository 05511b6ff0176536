"""Typed errors raised by wideflat's optimizers."""

__all__ = ["MissingClosureError", "NonFiniteLossError"]


class MissingClosureError(ValueError):
    """``step()`` was called without the closure the algorithm needs."""


class NonFiniteLossError(FloatingPointError):
    """A NaN or infinite loss, gradient or parameter appeared; the step was rolled back."""
