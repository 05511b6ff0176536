"""BatchNorm statistics for a replica center."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


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
