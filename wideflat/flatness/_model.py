"""What every flatness measure does to the model it measures: pick the parameters it perturbs,
evaluate in eval mode, and leave the model exactly as it found it.

* :func:`perturbed_parameters`: the named floating-point parameters a measure moves.
* :func:`preserved`: a context that restores parameters, buffers, train/eval flags and BatchNorm
  momenta bitwise on exit (by copying saved originals back, never by undoing arithmetic).
* :class:`BatchNormOnlyTrains`: the model as a BatchNorm-statistics pass should see it.
* :func:`model_device`: the device of the model's first parameter (or buffer).
* :func:`on_device`: the model itself, or a deep copy on the device asked for.
* :func:`measuring`: :func:`preserved`, with the global RNG (CPU and the device's CUDA) saved
  and restored and the model in eval mode: the context every measurement runs in.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = [
    "BatchNormOnlyTrains",
    "measuring",
    "model_device",
    "on_device",
    "perturbed_parameters",
    "preserved",
]

PARAM_SETS = ("trainable", "all")


def perturbed_parameters(model: nn.Module, params: str) -> list[tuple[str, Tensor]]:
    """The named parameters ``params`` selects (floating point; trainable unless "all")."""
    named = [
        (name, p)
        for name, p in model.named_parameters()
        if p.is_floating_point() and (params == "all" or p.requires_grad)
    ]
    if not named:
        raise ValueError(
            f"Invalid model: no {'floating' if params == 'all' else 'trainable'} parameters "
            f"to perturb (params={params!r})"
        )
    return named


@contextlib.contextmanager
def preserved(model: nn.Module, named: list[tuple[str, Tensor]]) -> Iterator[dict[str, Tensor]]:
    """Yield copies of the perturbed parameters; on exit copy them and every buffer back, and
    restore each module's train/eval flag and BatchNorm momentum (bitwise, never by undoing)."""
    saved_params = {name: p.detach().clone() for name, p in named}
    saved_buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    saved_modes = [(m, m.training) for m in model.modules()]
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    saved_momentum = [m.momentum for m in bns]
    try:
        yield saved_params
    finally:
        with torch.no_grad():
            for name, p in named:
                p.copy_(saved_params[name])
            for name, b in model.named_buffers():
                if name in saved_buffers:
                    b.copy_(saved_buffers[name])
        for m, momentum in zip(bns, saved_momentum, strict=True):
            m.momentum = momentum
        for m, training in saved_modes:
            m.training = training


class BatchNormOnlyTrains(nn.Module):
    """``model`` as :func:`~wideflat._bn.recompute_bn` sees it: ``train()`` switches only the
    BatchNorm layers, so Dropout and other train-time randomness stay off during the
    statistics pass (the measure evaluates the model in eval mode)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.train(False)

    def train(self, mode: bool = True) -> BatchNormOnlyTrains:
        self.training = mode
        for m in self.model.modules():
            if isinstance(m, _BatchNorm):
                m.train(mode)
        return self

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def on_device(model: nn.Module, device) -> tuple[nn.Module, torch.device]:
    """``(work, device)``: the model itself on its own device (``device=None``), else a deep
    copy moved to ``device`` (the original is never touched)."""
    home = model_device(model)
    device = home if device is None else torch.device(device)
    return (model if device == home else copy.deepcopy(model).to(device)), device


@contextlib.contextmanager
def measuring(
    model: nn.Module, named: list[tuple[str, Tensor]], device: torch.device
) -> Iterator[dict[str, Tensor]]:
    """:func:`preserved` (yielding the saved parameters), the global RNG of the CPU and of
    ``device`` saved and restored, and the model in eval mode inside."""
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    with preserved(model, named) as saved, torch.random.fork_rng(devices=cuda_devices):
        model.eval()
        yield saved
