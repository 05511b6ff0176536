"""The perturb-and-evaluate primitives of a local-energy measurement.

Noise draws, perturbed weights and the float64 sums of loss and error over the batches, by one
forward pass per perturbation (loop) or one batched pass per chunk of perturbations (vmap).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from wideflat import _rng
from wideflat.flatness._energy_data import Batches

__all__ = ["VmapUnavailable", "draw_noise", "evaluate_plain", "evaluate_vmap", "perturb"]


class VmapUnavailable(RuntimeError):
    """The batched forward pass failed; ``__cause__`` holds the original error."""


def draw_noise(
    named: list[tuple[str, Tensor]], gen: torch.Generator, seed: int, i: int, s: int
) -> list[Tensor]:
    """z for draw ``s`` at σ index ``i``: one standard normal tensor per perturbed parameter."""
    gen.manual_seed(_rng.derive_seed(seed, 0, i, s, bits=63))
    return [torch.randn(p.shape, generator=gen, device=p.device, dtype=p.dtype) for _, p in named]


def perturb(w: Tensor, z: Tensor, sigma: float, kind: str) -> Tensor:
    """w + σ z ⊙ w or w + σ z, as separate elementwise kernels (one rounding each, no fused
    multiply-add), so a stacked (vmap) and a single (loop) evaluation are bitwise equal."""
    step = torch.mul(z, w) if kind == "multiplicative" else z
    return torch.add(w, torch.mul(step, sigma))


def _reduce(value: Any, n: int, name: str) -> Tensor:
    """Sum over the batch of a batch-mean (0-dim) or per-example (n,) result, in float64."""
    if not isinstance(value, Tensor):
        raise ValueError(f"Invalid {name} output: {type(value).__name__} (expected a tensor)")
    if value.dim() == 0:
        return value.detach().double() * n
    if value.shape == (n,):
        return value.detach().double().sum()
    raise ValueError(f"Invalid {name} output shape: {tuple(value.shape)} (expected () or ({n},))")


def evaluate_plain(
    model: nn.Module, batches: Batches, loss_fn: Callable, error_fn: Callable
) -> tuple[float, float, int]:
    """Σ loss, Σ error and number of examples over ``batches`` (float64 sums)."""
    loss_sum: Tensor | float = 0.0
    err_sum: Tensor | float = 0.0
    n = 0
    for x, y in batches:
        out = model(x)
        b = y.shape[0]
        loss_sum = loss_sum + _reduce(loss_fn(out, y), b, "loss_fn")
        err_sum = err_sum + _reduce(error_fn(out, y), b, "error_fn")
        n += b
    return float(loss_sum), float(err_sum), n


def evaluate_vmap(
    model: nn.Module,
    base: dict[str, Tensor],
    noise: list[list[Tensor]],
    sigma: float,
    kind: str,
    batches: Batches,
    loss_fn: Callable,
    error_fn: Callable,
) -> list[tuple[float, float]]:
    """Σ loss and Σ error for each perturbation in ``noise``, all in one vmapped forward per
    batch: the perturbed weights are stacked along a new leading dim and vmapped over."""
    stacked = {
        name: perturb(w.unsqueeze(0), torch.stack([z[k] for z in noise]), sigma, kind)
        for k, (name, w) in enumerate(base.items())
    }

    def forward(p: dict[str, Tensor], x: Tensor) -> Tensor:
        return torch.func.functional_call(model, p, (x,))

    batched = torch.func.vmap(forward, in_dims=(0, None))
    n_pert = len(noise)
    loss_sums: list[Tensor | float] = [0.0] * n_pert
    err_sums: list[Tensor | float] = [0.0] * n_pert
    for x, y in batches:
        try:
            out = batched(stacked, x)
        except Exception as exc:  # any failure of the batched path: caller may fall back
            raise VmapUnavailable(f"{type(exc).__name__}: {exc}") from exc
        b = y.shape[0]
        for c in range(n_pert):
            loss_sums[c] = loss_sums[c] + _reduce(loss_fn(out[c], y), b, "loss_fn")
            err_sums[c] = err_sums[c] + _reduce(error_fn(out[c], y), b, "error_fn")
    return [(float(lo), float(er)) for lo, er in zip(loss_sums, err_sums, strict=True)]
