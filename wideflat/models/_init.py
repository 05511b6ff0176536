"""Kaiming-normal parameter initialization (paper appendix C)."""

from __future__ import annotations

from torch import nn

__all__ = ["kaiming_normal_init_"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm)


def kaiming_normal_init_(module: nn.Module) -> nn.Module:
    """Re-initialize ``module`` in place with Kaiming-normal weights and return it.

    The paper (appendix C) states "the parameter initialization is Kaiming normal" for its
    deep networks. We follow He et al. (2015) in the form used by the reference CIFAR
    ResNet and PyramidNet code:

    * convolutions: ``N(0, 2 / fan_out)`` (``mode="fan_out"``, ReLU gain), bias 0;
    * linear layers: ``N(0, 2 / fan_in)`` (``mode="fan_in"``, ReLU gain), bias 0;
    * normalization layers: weight 1, bias 0.

    Args:
        module: Any module; its sub-modules of the kinds above are re-initialized, other
            parameters are left as they are.

    Returns:
        ``module`` itself.

    Raises:
        ValueError: If ``module`` is not an ``nn.Module``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = kaiming_normal_init_(nn.Conv2d(3, 8, 3))
        >>> float(net.bias.detach().abs().sum())
        0.0

    References:
        He, Zhang, Ren, Sun. "Delving Deep into Rectifiers: Surpassing Human-Level
        Performance on ImageNet Classification." ICCV 2015.
    """
    if not isinstance(module, nn.Module):
        raise ValueError(f"Invalid module: {module!r} (expected an nn.Module)")
    for m in module.modules():
        if isinstance(m, _CONV):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, _NORM) and getattr(m, "weight", None) is not None:
            nn.init.ones_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module
