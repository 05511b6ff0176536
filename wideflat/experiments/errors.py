"""The harness's errors: one line each, with the command line's exit status."""

from __future__ import annotations

__all__ = ["NonFiniteRunError", "RunError"]


class RunError(Exception):
    """A run cannot start or continue; ``str(e)`` is one line, ``exit_code`` is 2."""

    exit_code = 2


class NonFiniteRunError(RunError):
    """A loss became NaN/inf: ``non-finite loss at epoch e step s replica r`` (exit code 3)."""

    exit_code = 3

    def __init__(self, epoch: int, step: int, replica: int):
        self.epoch, self.step, self.replica = epoch, step, replica
        super().__init__(f"non-finite loss at epoch {epoch} step {step} replica {replica}")
