"""Building a replica engine by name: ``make_replicas`` and the ``"auto"`` rule."""

from __future__ import annotations

from torch import nn

from .. import _validate as check
from .base import ReplicaEngine
from .distributed import DistributedReplicas
from .loop import Replicas
from .vmap import StackedReplicas

__all__ = ["ENGINES", "choose_engine", "make_replicas"]

ENGINES = ("auto", "loop", "vmap", "distributed")
"""The names ``engine=`` accepts (``"auto"``: :func:`choose_engine` picks one)."""

NO_TRAINABLE = "no trainable parameter (optimizer got an empty parameter list)"


def choose_engine(model: nn.Module) -> str:
    """The engine ``"auto"`` picks: ``"vmap"`` for a model on a GPU built only from
    ``torch.nn`` layers (which ``torch.func.vmap`` runs), else ``"loop"``.

    On CPU the loop engine measured faster than vmap (``benchmarks/replicas.py``); custom
    modules may hold code that vmap cannot batch, so they get the loop engine unless asked.

    Example:
        >>> import torch
        >>> choose_engine(torch.nn.Linear(2, 1))   # on the CPU
        'loop'
    """
    on_gpu = any(p.device.type == "cuda" for p in model.parameters())
    standard = all(type(m).__module__.startswith("torch.nn.") for m in model.modules())
    return "vmap" if on_gpu and standard else "loop"


def make_replicas(
    model: nn.Module | ReplicaEngine,
    y: int | None = None,
    engine: str = "auto",
    *,
    init: str = "independent",
    seed: int | None = None,
) -> ReplicaEngine:
    """The replica engine ``engine`` holding y replicas of ``model``.

    Args:
        model: the model to replicate, or a :class:`~wideflat.replicas.base.ReplicaEngine`
            (returned as is once ``y`` agrees).
        y: the number of replicas; required except for ``"distributed"``, where it is the
            world size (then ``y``, if given, must equal it).
        engine: ``"loop"``, ``"vmap"``, ``"distributed"`` or ``"auto"`` (:func:`choose_engine`).
        init: ``"independent"`` (replicas 1..y−1 re-initialized from ``(seed, a)``) or
            ``"copy"``.
        seed: the replicas' seed (default: drawn from torch's global RNG).

    Raises ``ValueError`` for a model with no trainable parameter or one on the meta device.

    Example:
        >>> import torch
        >>> reps = make_replicas(torch.nn.Linear(3, 1), y=4, engine="vmap", seed=0)
        >>> reps.engine, reps.y, reps.local_indices
        ('vmap', 4, [0, 1, 2, 3])
    """
    if isinstance(model, ReplicaEngine):
        if y is not None and y != model.y:
            raise ValueError(f"Invalid y: {y} but the replicas hold {model.y}")
        return model
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"Invalid replicas: {type(model).__name__} (expected a model or a replica container)"
        )
    check.choice("engine", engine, ENGINES)
    _check_model(model)
    if engine == "auto":
        engine = choose_engine(model)
    if engine == "distributed":
        if y is not None:
            check.positive_int("y", y)
        container = DistributedReplicas(model, init=init, seed=seed)
        if y is not None and y != container.y:
            raise ValueError(
                f"Invalid y: {y} but the world size is {container.y} (one replica per rank)"
            )
        return container
    if y is None:
        raise ValueError("Invalid y: None (give the number of replicas with a model)")
    check.positive_int("y", y)
    if engine == "vmap":
        return StackedReplicas(model, y, init=init, seed=seed)
    return Replicas(model, y, init=init, seed=seed)


def _check_model(model: nn.Module) -> None:
    """Refuse, before replicating it, a model with meta-device or no trainable parameters."""
    params = list(model.named_parameters())
    for name, p in params:
        if p.is_meta:
            raise ValueError(
                f"Invalid parameter {name!r}: it is on the meta device; materialize the model "
                "first (e.g. model.to_empty(device=...) and reset_parameters())"
            )
    if not any(p.requires_grad for _, p in params):
        raise ValueError(f"Invalid replicas: the model {type(model).__name__} has {NO_TRAINABLE}")
