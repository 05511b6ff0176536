"""Shims for public names that moved: they keep working for one release, with a warning."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any

__all__ = ["moved"]


def moved(old: str, targets: dict[str, str], *, stacklevel: int = 2) -> Callable[[str], Any]:
    """A module ``__getattr__`` for the module ``old``, whose names moved.

    ``targets`` maps each moved name to its new module. Reading a name returns the object
    from the new module and emits a ``DeprecationWarning`` naming the new path, attributed to
    the caller's line (``stacklevel=3`` when the old module's own ``__getattr__`` wraps it).

    Example (in the old module)::

        __getattr__ = moved(__name__, {"Replicas": "wideflat.replicas.loop"})
    """

    def __getattr__(name: str) -> Any:
        new = targets.get(name)
        if new is None:
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        warnings.warn(
            f"{old}.{name} moved to {new}.{name}; the old path will be removed in the next release",
            DeprecationWarning,
            stacklevel=stacklevel,
        )
        return getattr(importlib.import_module(new), name)

    return __getattr__
