"""Eager validation shared by every package: each check raises ``ValueError`` naming the value.

Two families: numbers and choices for any argument (:func:`integer`, :func:`positive_int`,
:func:`number`, :func:`choice`), and the optimizers' hyper-parameters, parameters and
gradients (:func:`non_negative`, :func:`sgd_settings`, :func:`real_dense_params`, ...).
Messages read ``Invalid <name>: <value> (expected ...)``; a ``context`` (the function or class
being called) turns them into ``<context>: invalid <name>: ...``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Collection
from typing import Any

import numpy as np
import torch
from torch.optim.optimizer import required

__all__ = [
    "FLOAT32_MAX",
    "all_finite",
    "base_kwargs",
    "choice",
    "coupling_step",
    "dense_grad",
    "dense_params",
    "fill_group_defaults",
    "finite_loss",
    "first_nonfinite",
    "in_unit_interval",
    "integer",
    "is_integer",
    "nesterov_momentum",
    "non_negative",
    "number",
    "positive_int",
    "real_dense_params",
    "sgd_settings",
    "step_without_hooks",
]


# ---- numbers and choices -------------------------------------------------------------------


def is_integer(value: Any, *, numpy: bool = True) -> bool:
    """Whether ``value`` is an integer: a Python ``int`` (never a ``bool``) or, with
    ``numpy=True``, a NumPy integer.

    Example:
        >>> is_integer(3), is_integer(True), is_integer(3.0), is_integer(np.int64(3))
        (True, False, False, True)
    """
    kinds = (int, np.integer) if numpy else int
    return isinstance(value, kinds) and not isinstance(value, (bool, np.bool_))


def integer(
    name: str,
    value: Any,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    numpy: bool = True,
    context: str | None = None,
) -> int:
    """Return ``int(value)`` if it is an integer in ``[minimum, maximum]`` (either bound
    optional), else raise ``ValueError`` naming it.

    Example:
        >>> integer("samples", 8, minimum=1)
        8
        >>> integer("samples", 0, minimum=1)
        Traceback (most recent call last):
        ...
        ValueError: Invalid samples: 0 (expected an integer >= 1)
    """
    low_ok = minimum is None or (is_integer(value, numpy=numpy) and value >= minimum)
    high_ok = maximum is None or (is_integer(value, numpy=numpy) and value <= maximum)
    if not (is_integer(value, numpy=numpy) and low_ok and high_ok):
        raise ValueError(f"{_head(name, context)}: {value!r} (expected {_span(minimum, maximum)})")
    return int(value)


def number(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    finite: bool = False,
    context: str | None = None,
) -> float:
    """Return ``float(value)`` if it is a real number (not a ``bool``, not NaN; not ±inf with
    ``finite=True``) in ``[minimum, maximum]`` (either bound optional), else raise
    ``ValueError`` naming it.

    Example:
        >>> number("survival_prob", 0.5, minimum=0, maximum=1)
        0.5
    """
    ok = (
        _is_real(value)
        and not math.isnan(value)
        and not (finite and math.isinf(value))
        and (minimum is None or value >= minimum)
        and (maximum is None or value <= maximum)
    )
    if not ok:
        span = _span(minimum, maximum).replace(
            "an integer", "a finite number" if finite else "a number"
        )
        raise ValueError(f"{_head(name, context)}: {value!r} (expected {span})")
    return float(value)


def positive_int(name: str, value: Any) -> int:
    """Return ``value`` if it is a Python integer >= 1, else raise ``ValueError`` naming it."""
    return integer(name, value, minimum=1, numpy=False)


def choice(name: str, value: Any, choices: Collection[Any], *, context: str | None = None) -> Any:
    """Return ``value`` if it is one of ``choices``, else raise ``ValueError`` naming it.

    Example:
        >>> choice("bn policy", "eval", ("eval", "recompute"))
        'eval'
    """
    try:
        ok = value in choices
    except TypeError:  # unhashable value against a set
        ok = False
    if not ok or (isinstance(value, bool) and not any(c is value for c in choices)):
        raise ValueError(
            f"{_head(name, context)}: {value!r} (expected one of {', '.join(map(repr, choices))})"
        )
    return value


def _is_real(value: Any, *, numpy: bool = True) -> bool:
    kinds = (int, float, np.integer, np.floating) if numpy else (int, float)
    return isinstance(value, kinds) and not isinstance(value, (bool, np.bool_))


def _head(name: str, context: str | None) -> str:
    return f"Invalid {name}" if context is None else f"{context}: invalid {name}"


def _span(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f"an integer in [{minimum}, {maximum}]"
    if minimum is not None:
        return f"an integer >= {minimum}"
    if maximum is not None:
        return f"an integer <= {maximum}"
    return "an integer"


# ---- optimizers: hyper-parameters, parameters and gradients ----------------------------------

FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def non_negative(name: str, value: float) -> float:
    """Return ``value`` if it is a finite number >= 0, else raise ``ValueError`` naming it."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"Invalid {name}: {value} (expected a scalar)")
        value = value.item()
    if not _is_real(value, numpy=False):
        raise ValueError(f"Invalid {name}: {value!r} (expected a number)")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"Invalid {name}: {value} (expected a finite value >= 0)")
    if value > FLOAT32_MAX:  # finite here, but inf once torch casts it into a float32 kernel
        raise ValueError(
            f"Invalid {name}: {value} (expected a value <= {FLOAT32_MAX:.7g}, the float32 maximum)"
        )
    return value


def in_unit_interval(name: str, value: float) -> float:
    """Return ``value`` if it lies in [0, 1], else raise ``ValueError`` naming it."""
    non_negative(name, value)
    if value > 1:
        raise ValueError(f"Invalid {name}: {value} (expected a value in [0, 1])")
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


def real_dense_params(params: list[torch.Tensor], start: int = 0) -> None:
    """Reject complex, sparse or meta-device parameters, naming the parameter index.

    ``start`` is the index of ``params[0]`` among all the optimizer's parameters.
    """
    dense_params(params, start)
    for i, p in enumerate(params, start):
        if p.is_complex():
            raise ValueError(f"Invalid param {i}: complex parameters are not supported")


def dense_params(params: list[torch.Tensor], start: int = 0) -> None:
    """Reject non-tensors, sparse and meta-device (data-less) parameters, naming the index."""
    for i, p in enumerate(params, start):
        if not isinstance(p, torch.Tensor):
            raise ValueError(f"Invalid param {i}: {type(p).__name__} is not a tensor")
        if p.layout != torch.strided:
            raise ValueError(f"Invalid param {i}: sparse parameters are not supported")
        if p.is_meta:
            raise ValueError(
                f"Invalid param {i}: a meta-device tensor holds no data; materialize the model "
                "first (e.g. model.to_empty(device=...) and initialize it)"
            )


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
        if loss.numel() == 1 and not loss.is_complex():
            # a scalar read directly: torch.isfinite(loss).all() costs ~0.1 ms right after a
            # backward on several threads, a few % of eSGD's overhead per inner step
            return math.isfinite(loss.detach().item())
        return bool(torch.isfinite(loss).all())
    return math.isfinite(float(loss))


def dense_grad(index: int, grad: torch.Tensor) -> None:
    """Reject a sparse gradient (e.g. ``nn.Embedding(sparse=True)``), naming the parameter."""
    if grad.layout != torch.strided:
        raise ValueError(
            f"Invalid param {index}: sparse gradients ({grad.layout}) are not supported; "
            "use a dense layer (e.g. nn.Embedding(sparse=False))"
        )


def all_finite(tensors: list[torch.Tensor]) -> bool:
    """Whether every element of every tensor is finite, with one sync per device.

    Fast path: one fused ``‖t‖₂`` per tensor (``torch._foreach_norm``); the norm is finite
    unless ``t`` holds a NaN/inf or its sum of squares overflows. Only in those cases are the
    tensors checked element-wise, so huge but finite values are never reported.
    """
    buckets: dict[tuple, list[torch.Tensor]] = {}
    for t in tensors:
        if t.numel():
            buckets.setdefault((t.device, t.dtype), []).append(t)
    for (_, dtype), ts in buckets.items():
        low = dtype in (torch.float16, torch.bfloat16)  # accumulate in float32
        norms = torch._foreach_norm(ts, 2, dtype=torch.float32 if low else None)
        if not bool(torch.stack(norms).isfinite().all()) and first_nonfinite(ts) is not None:
            return False
    return True


def first_nonfinite(tensors: list[torch.Tensor]) -> int | None:
    """Index of the first tensor holding a NaN or an infinity (element-wise; slow path)."""
    for i, t in enumerate(tensors):
        if not bool(torch.isfinite(t).all()):
            return i
    return None


def fill_group_defaults(groups: list[dict[str, Any]], defaults: dict[str, Any]) -> None:
    """Give every group each key of ``defaults`` it lacks (in place), as ``add_param_group`` does.

    For a wrapper whose groups are shared with a wrapped optimizer: groups added later, or
    loaded from a state_dict saved before the wrapped class gained a key (e.g. SGD's
    ``maximize``, ``foreach``, ``fused``, ``differentiable``), then still step.
    """
    for group in groups:
        for key, value in defaults.items():
            if value is not required:
                group.setdefault(key, value)


def step_without_hooks(optimizer: torch.optim.Optimizer, *args: Any) -> Any:
    """``optimizer.step(*args)`` without torch's step hooks (global or the optimizer's own).

    For wrappers: hooks registered with ``register_optimizer_step_pre_hook``/``post_hook``
    then fire once per step of the wrapper, not again for each wrapped optimizer it steps.
    """
    step = type(optimizer).step
    if getattr(step, "hooked", False):  # torch's profile_hook_step wrapper
        step = step.__wrapped__
    return step(optimizer, *args)
