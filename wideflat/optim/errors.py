"""Typed errors raised by wideflat's optimizers."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["MissingClosureError", "NonFiniteLossError"]


class MissingClosureError(ValueError):
    """``step()`` was called without the closure the algorithm needs."""


class NonFiniteLossError(FloatingPointError):
    """A NaN or infinite loss, gradient or parameter appeared; the step was rolled back.

    Attributes:
        replicas: the replicas that failed, in increasing order (ReplicatedSGD), else
            ``None``.
        step: the optimizer step t = 1, 2, ... that was refused (the distributed engine: the
            step at which the ranks stopped), or ``None`` where the optimizer keeps no count.

    Example:
        >>> err = NonFiniteLossError("non-finite loss", replicas=[2], step=7)
        >>> err.replicas, err.step
        ([2], 7)
    """

    def __init__(
        self, message: str = "", *, replicas: Iterable[int] | None = None, step: int | None = None
    ):
        super().__init__(message)
        self.replicas = None if replicas is None else sorted(int(a) for a in replicas)
        self.step = None if step is None else int(step)
