"""BatchNorm helpers: recompute running statistics (a replica center), freeze them (extra passes).

* :func:`recompute_bn`: re-estimate the statistics on data (``torch.optim.swa_utils.update_bn``).
* :func:`frozen_bn`: a context in which forward passes leave them unchanged (momentum 0, the
  davda54/sam ``bypass_bn`` policy), e.g. SAM's second forward pass at w + ε.
* :func:`has_bn`: whether a module has BatchNorm layers at all.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["frozen_bn", "has_bn", "recompute_bn"]


def recompute_bn(
    model: nn.Module, data: Iterable, *, device: torch.device | str | None = None
) -> nn.Module:
    r"""Recompute BatchNorm running statistics of ``model`` on ``data``, in place.

    The parameters of a replica center w̄ are an average of networks, so neither any
    replica's running statistics nor their average describe it. This resets each
    BatchNorm's statistics and re-estimates them as an exact cumulative average over one
    pass (``momentum=None``, not 0: see Lightning #14866), as
    ``torch.optim.swa_utils.update_bn`` does, which it calls. The model's train/eval mode
    and each layer's momentum are restored; parameters are untouched.

    Args:
        model: the module to update (e.g. ``ReplicatedSGD.center()``).
        data: an iterable of input batches, or of ``(input, target, ...)`` tuples.
        device: where to move each input batch (default: leave as is).

    Returns:
        ``model``, for chaining.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
        >>> batches = [torch.randn(8, 3) for _ in range(4)]
        >>> _ = recompute_bn(net, batches)
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"Invalid model: {type(model).__name__} is not a torch.nn.Module")
    torch.optim.swa_utils.update_bn(data, model, device=device)
    return model


@contextlib.contextmanager
def frozen_bn(model: nn.Module) -> Iterator[None]:
    """BatchNorm running statistics unchanged inside (momentum 0); momenta restored after.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
        >>> with frozen_bn(net):
        ...     _ = net(torch.randn(8, 3))
        >>> bool(net[1].running_mean.eq(0).all()), net[1].momentum
        (True, 0.1)
    """
    layers = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    saved = [m.momentum for m in layers]
    for m in layers:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(layers, saved, strict=True):
            m.momentum = momentum


def has_bn(model: nn.Module) -> bool:
    """Whether ``model`` contains a BatchNorm layer."""
    return any(isinstance(m, _BatchNorm) for m in model.modules())
