"""Eager validation of hyper-parameters: every check raises ``ValueError`` naming the value."""

from __future__ import annotations

import inspect
import math
from typing import Any

import torch


def non_negative(name: str, value: float) -> float:
    """Return ``value`` if it is a finite number >= 0, else raise ``ValueError`` naming it."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"Invalid {name}: {value} (expected a scalar)")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"Invalid {name}: {value!r} (expected a number)")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"Invalid {name}: {value} (expected a finite value >= 0)")
    return value


def in_unit_interval(name: str, value: float) -> float:
    """Return ``value`` if it lies in [0, 1], else raise ``ValueError`` naming it."""
    non_negative(name, value)
    if value > 1:
        raise ValueError(f"Invalid {name}: {value} (expected a value in [0, 1])")
    return value


def positive_int(name: str, value: Any) -> int:
    """Return ``value`` if it is an integer >= 1, else raise ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"Invalid {name}: {value!r} (expected an integer >= 1)")
    if value < 1:
        raise ValueError(f"Invalid {name}: {value} (expected an integer >= 1)")
    return value


def sgd_settings(momentum: float, dampening: float, nesterov: bool, weight_decay: float) -> None:
    """Validate the SGD settings shared by wideflat's optimizers (each error names its value)."""
    non_negative("momentum", momentum)
    non_negative("dampening", dampening)
    non_negative("weight_decay", weight_decay)
    nesterov_momentum(nesterov, momentum, dampening)


def nesterov_momentum(nesterov: bool, momentum: float, dampening: float) -> None:
    """Nesterov needs a positive momentum and zero dampening, as in ``torch.optim.SGD``."""
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError(
            f"Invalid nesterov: True needs momentum > 0 and dampening = 0 "
            f"(got momentum={momentum}, dampening={dampening})"
        )


def coupling_step(name: str, step_size: float) -> None:
    """Reject a coupling step ``lr * gamma`` >= 1, which overshoots the attracting point."""
    if step_size >= 1:
        raise ValueError(
            f"Invalid {name}: {step_size:.4g} >= 1 makes the elastic coupling overshoot "
            "(each step would move a replica past its attracting point); lower gamma or the lr"
        )


def real_dense_params(params: list[torch.Tensor]) -> None:
    """Reject complex or sparse parameters, naming the parameter index."""
    for i, p in enumerate(params):
        if not isinstance(p, torch.Tensor):
            raise ValueError(f"Invalid param {i}: {type(p).__name__} is not a tensor")
        if p.is_complex():
            raise ValueError(f"Invalid param {i}: complex parameters are not supported")
        if p.is_sparse:
            raise ValueError(f"Invalid param {i}: sparse parameters are not supported")


def base_kwargs(cls: type, values: dict[str, Any], extra: dict[str, Any] | None) -> dict[str, Any]:
    """Keyword arguments for a torch optimizer class ``cls``.

    ``values`` are wideflat's shared SGD-style settings (momentum, dampening, nesterov,
    weight_decay). Each is passed when ``cls`` accepts it; a non-default value that ``cls``
    does not accept is an error, so a setting is never silently dropped. ``extra`` (the
    user's ``*_kwargs``) is passed as is and wins.
    """
    accepted = inspect.signature(cls.__init__).parameters
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key in accepted:
            out[key] = value
        elif value not in (0, 0.0, False):
            raise ValueError(
                f"Invalid {key}: {value} is not accepted by {cls.__name__}; "
                f"pass that optimizer's own settings through its kwargs"
            )
    out.update(extra or {})
    return out


def finite_loss(loss) -> bool:
    """Whether a closure's loss (tensor or number) is finite."""
    if isinstance(loss, torch.Tensor):
        return bool(torch.isfinite(loss).all())
    return math.isfinite(float(loss))
