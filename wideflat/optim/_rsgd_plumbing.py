"""ReplicatedSGD's plumbing around its engine: the model's parameter groups mapped onto every
replica's tensors, the text of their settings that every rank of the distributed engine must
share, and the check of a saved state against the engine."""

from __future__ import annotations

from typing import Any

import torch

from ..replicas._make import NO_TRAINABLE

__all__ = ["check_saved_state", "replicated_groups", "settings_text"]


def replicated_groups(replicas, groups) -> list[dict[str, Any]]:
    """Map groups over the model's parameters to groups over the replicas' tensors."""
    reference = replicas.reference_parameters()
    index = {id(p): i for i, p in enumerate(reference)}
    what = "replicas" if groups is None else "groups"
    if groups is None:
        groups = [{"params": reference}]
    out, trainable = [], False
    for g, group in enumerate(groups):
        if not isinstance(group, dict) or "params" not in group:
            raise ValueError(f"Invalid groups[{g}]: expected a dict with 'params'")
        params = group["params"]
        params = [params] if isinstance(params, torch.Tensor) else list(params)
        positions = []
        for p in params:
            if id(p) not in index:
                raise ValueError(
                    f"Invalid groups[{g}]: a parameter of shape {tuple(p.shape)} is not a "
                    "parameter of the replicated model"
                )
            positions.append(index[id(p)])
            trainable = trainable or p.requires_grad
        out.append({**group, "params": replicas.optimizer_params(positions)})
    if not trainable:
        raise ValueError(f"Invalid {what}: {NO_TRAINABLE}")
    return out


def settings_text(replicas, groups: list[dict[str, Any]], base: type, check_finite: bool) -> str:
    """Every hyper-parameter of the groups (all keys but the tensors), the base optimizer
    class and check_finite, as text that is the same on every rank for the same settings."""
    index = {id(p): i for i, p in enumerate(replicas.reference_parameters())}

    def plain(value):
        if isinstance(value, torch.Tensor):
            return ("tensor", str(value.dtype), value.detach().cpu().tolist())
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return sorted(((str(k), plain(v)) for k, v in value.items()), key=lambda kv: kv[0])
        return type(value).__qualname__  # no memory addresses: they differ between ranks

    described = [
        ([index[id(p)] for p in g["params"]], plain({k: v for k, v in g.items() if k != "params"}))
        for g in groups
    ]
    return repr((f"{base.__module__}.{base.__qualname__}", bool(check_finite), described))


def check_saved_state(extra: dict[str, Any], replicas) -> None:
    """Refuse, before anything is loaded, a saved ``"replicated_sgd"`` entry that does not fit
    the engine ``replicas``: another y, engine, replica (distributed rank) or tensor shape."""
    if extra["y"] != replicas.y:
        raise ValueError(
            f"Invalid state_dict: saved with y={extra['y']}, this optimizer has y={replicas.y}"
        )
    if extra.get("engine", replicas.engine) != replicas.engine:
        raise ValueError(
            f"Invalid state_dict: saved by the engine {extra['engine']!r}, this optimizer "
            f"uses {replicas.engine!r}"
        )
    local = list(replicas.local_indices)
    if list(extra.get("local_indices", local)) != local:
        raise ValueError(
            f"Invalid state_dict: saved by the process holding replica(s) "
            f"{list(extra['local_indices'])}, this one holds {local} (load each rank's own)"
        )
    saved = extra.get("replicas")
    if saved is None:
        return
    own = replicas.state_dict()
    missing, unexpected = sorted(set(own) - set(saved)), sorted(set(saved) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"Invalid state_dict: its replicas do not match this model (missing "
            f"{missing[:3]}, unexpected {unexpected[:3]})"
        )
    for key, value in own.items():
        got = saved[key]
        if not isinstance(got, torch.Tensor) or got.shape != value.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise ValueError(
                f"Invalid state_dict: replica tensor {key!r} was saved with shape {shape}, "
                f"this model has {tuple(value.shape)}"
            )
