"""Entropic optimizers and focusing schedules.

* :class:`EntropySGD` (Algorithm 1) and :func:`auto_gamma0_esgd`
  (:mod:`~wideflat.optim.entropy_sgd`);
* :class:`ReplicatedSGD` (Algorithm 2) over any replica engine
  (:mod:`~wideflat.optim.replicated_sgd`);
* :class:`SAM` (:mod:`~wideflat.optim.sam`);
* focusing, the schedules of the coupling γ, and :func:`auto_gamma0_rsgd`
  (:mod:`~wideflat.optim.focusing`);
* typed errors (:mod:`~wideflat.optim.errors`) and a registry, :func:`create_optimizer`.
"""

from ._registry import create_optimizer, list_optimizers
from .entropy_sgd import EntropySGD, auto_gamma0_esgd
from .errors import MissingClosureError, NonFiniteLossError
from .focusing import (
    ConstantGamma,
    CosineGamma,
    ExponentialGamma,
    GammaScheduler,
    auto_gamma0_rsgd,
)
from .replicated_sgd import ReplicatedSGD
from .sam import SAM

__all__ = [
    "ConstantGamma",
    "CosineGamma",
    "EntropySGD",
    "ExponentialGamma",
    "GammaScheduler",
    "MissingClosureError",
    "NonFiniteLossError",
    "ReplicatedSGD",
    "SAM",
    "auto_gamma0_esgd",
    "auto_gamma0_rsgd",
    "create_optimizer",
    "list_optimizers",
]
