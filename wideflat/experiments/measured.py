"""The weights a run measured δE at, loaded back with the data it measured on.

With ``energy_save_weights`` (``--set energy_save_weights=true``) a run keeps, beside each
profile ``energy/NAME.json``, the evaluated model's ``state_dict`` as ``energy/NAME.pt`` (rSGD:
the center, with its BatchNorm statistics recomputed as for the profile). :func:`load_measured`
rebuilds the model from the run's ``run.json`` and loads them, with the δE data of the run's
flatness protocol, so that other σ, another BatchNorm policy, more draws or any other measure
of :mod:`wideflat.flatness` can be applied to the same minima without training again: at
matched training error each method's minimum is one file.

Example (a run of the preset shrunk to seconds; ``root`` a Fashion-MNIST folder)::

    from wideflat.experiments import preset_config, train
    from wideflat.experiments.measured import load_measured
    from wideflat.flatness import local_energy

    cfg = preset_config("fashion-smallconvnet", "sgd", data_root=root, epochs=2,
                        energy_at_train_error=(0.5,), energy_save_weights=True)
    train(cfg, "runs/sgd-s0")
    model, data = load_measured("runs/sgd-s0", "train-error-0.5")
    profile = local_energy(model, data, [0.1, 0.2, 0.3], 20, bn="recompute")
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from .build import augmented_copy, build_model, load_data, resolve_device, train_transform
from .config import TrainConfig
from .errors import RunError

__all__ = ["load_measured", "measured_names"]


def measured_names(folder: str | os.PathLike) -> list[str]:
    """The measurements of a run folder whose weights were kept (``energy/NAME.pt`` with its
    ``energy/NAME.json``), e.g. ``["epoch-0020", "train-error-0.01"]``."""
    energy = Path(folder) / "energy"
    return sorted(p.stem for p in energy.glob("*.pt") if p.with_suffix(".json").is_file())


def load_measured(
    folder: str | os.PathLike, name: str, device: str | torch.device | None = "cpu"
) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    """The model measured as ``energy/NAME.json`` in the run folder ``folder``, in eval mode,
    and ``(x, t)``: the data its δE was measured on (the first ``energy_subset`` clean
    training images, or under ``flatness_protocol="paper"`` the whole training set through
    the training augmentation, the same fixed copy).

    Raises:
        RunError: no ``run.json``, or no kept weights under that name (the message lists the
            names there are).
    """
    folder = Path(folder)
    try:
        record = json.loads((folder / "run.json").read_text())
        cfg = TrainConfig.from_dict(record["config"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise RunError(f"{folder}: not a run folder with a readable run.json ({e})") from None
    weights = folder / "energy" / f"{name}.pt"
    if not weights.is_file():
        names = measured_names(folder)
        there = ", ".join(names) if names else "none (train with energy_save_weights=true)"
        raise RunError(f"{weights}: no kept weights named {name!r}; kept: {there}")
    device = resolve_device(device)
    data = load_data(cfg, device)
    model = build_model(cfg, data, device)
    model.load_state_dict(torch.load(weights, map_location=device, weights_only=True))
    model.eval()
    if cfg.flatness_protocol != "paper":
        return model, data.energy
    try:
        transform = train_transform(cfg, data)
    except (ValueError, ImportError) as e:  # ImportError: AutoAugment without torchvision
        raise RunError(f"{folder}: cannot rebuild the training augmentation: {e}") from None
    return model, augmented_copy(cfg, data, transform)
