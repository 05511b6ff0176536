"""Entropic optimizers and focusing schedules."""

from ._registry import create_optimizer, list_optimizers
from .entropy_sgd import EntropySGD
from .errors import MissingClosureError, NonFiniteLossError
from .focusing import (
    ConstantGamma,
    CosineGamma,
    ExponentialGamma,
    GammaScheduler,
    auto_gamma0_esgd,
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
