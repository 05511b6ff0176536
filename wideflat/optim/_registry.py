"""The optimizer registry: ``list_optimizers()`` and ``create_optimizer(model, name, ...)``."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from .entropy_sgd import EntropySGD
from .replicated_sgd import ReplicatedSGD
from .sam import SAM

__all__ = ["create_optimizer", "list_optimizers"]


def _params(target: nn.Module | Iterable) -> Iterable:
    return target.parameters() if isinstance(target, nn.Module) else target


def _rsgd(target: nn.Module | Iterable, **kw: Any) -> Optimizer:
    if not isinstance(target, nn.Module):
        raise ValueError(
            "Invalid model for 'rsgd': ReplicatedSGD copies the module into y replicas, so it "
            f"needs the nn.Module itself, not its parameters (got {type(target).__name__})"
        )
    return ReplicatedSGD(target, **kw)


_FACTORIES: dict[str, Callable[..., Optimizer]] = {
    "sgd": lambda target, **kw: torch.optim.SGD(_params(target), **kw),
    "esgd": lambda target, **kw: EntropySGD(_params(target), **kw),
    "rsgd": _rsgd,
    "sam": lambda target, **kw: SAM(_params(target), **kw),
}


def list_optimizers() -> list[str]:
    """Names accepted by :func:`create_optimizer`."""
    return sorted(_FACTORIES)


def create_optimizer(model_or_params: Any, name: Any = None, **kwargs: Any) -> Optimizer:
    """Build the optimizer ``name`` for a model (or its parameters) with keyword settings.

    The argument order is timm's and pytorch_optimizer's: model (or parameters) first, then
    the name. The earlier order ``create_optimizer(name, model)`` still works for one
    release, with a ``DeprecationWarning``. ``"rsgd"`` needs the module itself (it copies
    it into replicas); the others accept a module or parameters / parameter groups.

    Example:
        >>> import torch
        >>> opt = create_optimizer(torch.nn.Linear(2, 1), "rsgd", lr=0.1, y=3, seed=0)
        >>> type(opt).__name__
        'ReplicatedSGD'
        >>> type(create_optimizer(torch.nn.Linear(2, 1).parameters(), "sgd", lr=0.1)).__name__
        'SGD'
    """
    if isinstance(model_or_params, str) and not isinstance(name, str):
        warnings.warn(
            "create_optimizer(name, model) is deprecated: pass the model first, "
            "create_optimizer(model, name, ...), as timm and pytorch_optimizer do",
            DeprecationWarning,
            stacklevel=2,
        )
        model_or_params, name = name, model_or_params
    if name not in _FACTORIES:
        raise ValueError(
            f"Invalid optimizer name: {name!r} (known: {', '.join(list_optimizers())})"
        )
    if model_or_params is None:
        raise ValueError(f"Invalid model: None (create_optimizer(model, {name!r}, ...))")
    return _FACTORIES[name](model_or_params, **kwargs)
