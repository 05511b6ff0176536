"""The optimizer registry: ``list_optimizers()`` and ``create_optimizer(name, model, ...)``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from .entropy_sgd import EntropySGD
from .replicated_sgd import ReplicatedSGD
from .sam import SAM

__all__ = ["create_optimizer", "list_optimizers"]

_FACTORIES: dict[str, Callable[..., Optimizer]] = {
    "sgd": lambda model, **kw: torch.optim.SGD(model.parameters(), **kw),
    "esgd": lambda model, **kw: EntropySGD(model.parameters(), **kw),
    "rsgd": lambda model, **kw: ReplicatedSGD(model, **kw),
    "sam": lambda model, **kw: SAM(model.parameters(), **kw),
}


def list_optimizers() -> list[str]:
    """Names accepted by :func:`create_optimizer`."""
    return sorted(_FACTORIES)


def create_optimizer(name: str, model: nn.Module, **kwargs: Any) -> Optimizer:
    """Build the optimizer ``name`` for ``model`` with keyword hyper-parameters.

    Example:
        >>> import torch
        >>> opt = create_optimizer("rsgd", torch.nn.Linear(2, 1), lr=0.1, y=3, seed=0)
        >>> type(opt).__name__
        'ReplicatedSGD'
    """
    if name not in _FACTORIES:
        raise ValueError(
            f"Invalid optimizer name: {name!r} (known: {', '.join(list_optimizers())})"
        )
    return _FACTORIES[name](model, **kwargs)
