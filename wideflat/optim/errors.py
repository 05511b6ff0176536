"""Typed errors raised by wideflat's optimizers."""


class MissingClosureError(ValueError):
    """``step()`` was called without the closure the algorithm needs."""


class NonFiniteLossError(FloatingPointError):
    """The closure returned a NaN or infinite loss; the step was rolled back."""
