"""Mixed precision for optimizers that compute their own gradients (EntropySGD, ReplicatedSGD).

torch.amp.GradScaler cannot drive an optimizer whose step() computes the gradients (it
refuses closures, and checks and unscales .grad before calling step()). These optimizers
take the scaler instead: they unscale each gradient they compute with GradScaler's own
kernel and, once the step's outcome is known, tell the scaler through its public
unscale_(), so that the user's scaler.update() backs off or grows the scale as usual.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.amp import GradScaler

__all__ = ["Overflow", "ScalerReport", "amp_scaler", "unscale_grads_"]


class Overflow(Exception):
    """A scaled gradient held a NaN/inf: the step was rolled back (caught in ``step``)."""

    def __init__(self, first_loss: Any, inner_step: int):
        super().__init__(f"non-finite scaled gradient at inner step {inner_step}")
        self.first_loss = first_loss


def amp_scaler(scaler: Any) -> GradScaler | None:
    """The scaler to use: ``None`` for ``None`` or a disabled GradScaler (no scaling)."""
    if scaler is None:
        return None
    if not isinstance(scaler, GradScaler):
        raise ValueError(
            f"Invalid scaler: {type(scaler).__name__} (expected a torch.amp.GradScaler or None)"
        )
    return scaler if scaler.is_enabled() else None


def unscale_grads_(grads: list[torch.Tensor], scale: float) -> bool:
    """g ← g · (1/s) in place, as ``GradScaler.unscale_``; True if a scaled g held a NaN/inf.

    The same kernel and the same float32 1/s (a float64 reciprocal, rounded once), so a
    step here sees the gradients ``scaler.unscale_(optimizer)`` would give. Like GradScaler,
    float16 gradients are refused: the parameters must stay float32. One host sync.
    """
    inv_scale = 1.0 / scale  # float64; rounded once, to float32, below
    buckets: dict[tuple, list[torch.Tensor]] = {}
    for g in grads:
        if g.dtype == torch.float16:
            raise ValueError(
                "Invalid parameters: a float16 gradient cannot be unscaled; keep the parameters "
                "in float32 and run the forward pass under torch.autocast (GradScaler's rule)"
            )
        buckets.setdefault((g.device, g.dtype), []).append(g)
    flags: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
    for (device, _), gs in buckets.items():
        if device not in flags:
            flags[device] = (
                torch.zeros((), dtype=torch.float32, device=device),
                torch.full((), inv_scale, dtype=torch.float32, device=device),
            )
        found_inf, inv = flags[device]
        torch._amp_foreach_non_finite_check_and_unscale_(gs, found_inf, inv)
    return any(bool(found_inf) for found_inf, _ in flags.values())


class ScalerReport:
    """Tells a GradScaler whether a step found an inf, through its public ``unscale_``.

    ``scaler.unscale_(report)`` reads the gradient of one flag tensor (0 or inf) and records
    the result under ``id(report)``, exactly as ``scaler.step(optimizer)`` records its own
    check; ``scaler.update()`` then consumes every record. One report per optimizer, so a
    second step without ``update()`` is refused, as GradScaler refuses a second ``step()``.
    """

    def __init__(self, owner: str):
        self.owner = owner
        self.param_groups: list[dict[str, Any]] = [{"params": []}]

    def __call__(self, scaler: GradScaler, found_inf: bool, device: torch.device) -> None:
        flag = torch.zeros((), dtype=torch.float32, device=device)
        flag.grad = torch.full_like(flag, math.inf if found_inf else 0.0)
        self.param_groups[0]["params"] = [flag]
        try:
            scaler.unscale_(self)
        except RuntimeError as err:  # "unscale_() has already been called ..."
            raise RuntimeError(
                f"{self.owner}.step(..., scaler=scaler) was called again before "
                "scaler.update(): call scaler.update() after every step, as after "
                "scaler.step(optimizer)"
            ) from err
        except AssertionError as err:  # "Attempted unscale_ but _scale is None ..."
            raise ValueError(
                "Invalid scaler: it has no scale yet (scaler.scale was never called); with "
                "scaler=scaler, the closure calls scaler.scale(loss).backward()"
            ) from err
        finally:
            self.param_groups[0]["params"] = []
