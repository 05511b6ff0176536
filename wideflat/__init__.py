"""wideflat: entropic training and flatness measures for PyTorch.

The headline names are importable from here and load their subpackage on first use (so
``import wideflat`` stays light and never loads matplotlib):

* optimizers (:mod:`wideflat.optim`): :class:`EntropySGD`, :class:`ReplicatedSGD`, :class:`SAM`,
  :func:`create_optimizer`; focusing schedules :class:`ExponentialGamma`, :class:`CosineGamma`,
  :class:`ConstantGamma` and :func:`auto_gamma0_rsgd`;
* flatness measures (:mod:`wideflat.flatness`): :func:`local_energy`,
  :func:`committee_local_entropy`;
* models (:mod:`wideflat.models`): :func:`create_model`.

Example:
    >>> import torch, wideflat
    >>> opt = wideflat.EntropySGD(torch.nn.Linear(2, 1).parameters(), lr=0.1, inner_lr=0.01)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "EntropySGD": "wideflat.optim",
    "ReplicatedSGD": "wideflat.optim",
    "SAM": "wideflat.optim",
    "ConstantGamma": "wideflat.optim",
    "CosineGamma": "wideflat.optim",
    "ExponentialGamma": "wideflat.optim",
    "auto_gamma0_rsgd": "wideflat.optim",
    "create_optimizer": "wideflat.optim",
    "committee_local_entropy": "wideflat.flatness",
    "local_energy": "wideflat.flatness",
    "create_model": "wideflat.models",
}

__all__ = ["__version__", *sorted(_LAZY)]  # noqa: F822 (served by __getattr__)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
