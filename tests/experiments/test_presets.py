"""Presets: schedules that follow a shortened budget, the EfficientNet recipe, one grad count."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from wideflat.experiments import methods
from wideflat.experiments.build import build_optimizer
from wideflat.experiments.config import METHODS, RUN_KINDS, TrainConfig, lr_at
from wideflat.experiments.presets import get_preset, list_presets, preset_config

# Fractions of the run that never fall on a milestone or decay boundary of any preset.
FRACTIONS = [(i + 0.37) / 100 for i in range(100)]


def _cases():
    return [(p, k) for p in list_presets() for k in RUN_KINDS]


@pytest.mark.parametrize(("preset", "kind"), _cases())
@pytest.mark.parametrize("ratio", [0.2, 0.5, 2.0])
def test_overridden_epochs_keep_the_lr_schedule_shape(preset, kind, ratio):
    """lr at fraction f of a shortened (or longer) run = lr at f of the preset's own run."""
    full = preset_config(preset, kind)
    epochs = max(1, round(full.epochs * ratio))
    short = preset_config(preset, kind, epochs=epochs)
    for f in FRACTIONS:
        assert lr_at(short, f * epochs) == pytest.approx(lr_at(full, f * full.epochs), rel=1e-9)


def test_fashion_rsgd_at_two_epochs_decays_its_lr():
    """The review's F3 case: 2 of 10 epochs puts the drops at 1.2 and 1.6, not never."""
    cfg = preset_config("fashion-smallconvnet", "rsgd", epochs=2)
    assert cfg.lr_schedule == "multistep:1.2,1.6"
    assert lr_at(cfg, 1.99) == pytest.approx(cfg.lr * 0.01)


def test_scaled_schedule_fields():
    eff = preset_config("cifar100-efficientnet_b0", "sgd", epochs=35)
    assert eff.lr_schedule == "exponential:0.2:0.97"
    res = preset_config("cifar10-resnet110", "sgd", epochs=41)
    assert res.warmup_epochs == pytest.approx(0.25)
    assert res.lr_schedule == "multistep:20.5,31"


def test_explicit_schedule_overrides_are_kept_as_given():
    cfg = preset_config(
        "cifar10-resnet110", "sgd", epochs=10, lr_schedule="multistep:5", warmup_epochs=2.0
    )
    assert cfg.lr_schedule == "multistep:5" and cfg.warmup_epochs == 2.0
    assert preset_config("cifar10-resnet110", "sgd", epochs=164) == preset_config(
        "cifar10-resnet110", "sgd"
    )


def test_every_preset_resolves_for_every_method():
    for name in list_presets():
        for kind in ("sgd", "esgd", "rsgd", "rsgdxy", "sam"):
            cfg = preset_config(name, kind)
            assert cfg.name == name and cfg.epochs >= 1


def test_shorter_epochs_override_keeps_valid_energy_epochs():
    assert preset_config("fashion-smallconvnet", "sgd", epochs=1).energy_epochs == (1,)
    cfg = preset_config("fashion-smallconvnet", "sgd", epochs=7)
    assert cfg.energy_epochs == (5, 7)
    explicit = preset_config("fashion-smallconvnet", "sgd", epochs=7, energy_epochs=(2,))
    assert explicit.energy_epochs == (2,)


@pytest.mark.parametrize("preset", list_presets())
def test_every_preset_has_a_train_error_threshold(preset):
    assert 0 < get_preset(preset).max_train_error < 1


# --- EfficientNet-B0 (appendix C.1: Tan & Le's settings, 224-pixel images) -----------------


@pytest.mark.parametrize("kind", ["sgd", "rsgd", "sam"])
def test_efficientnet_rmsprop_has_tan_and_le_settings(kind):
    cfg = preset_config("cifar100-efficientnet_b0", kind)
    assert cfg.optimizer == "rmsprop"
    opt = build_optimizer(cfg, nn.Linear(4, 3))
    group = opt.param_groups[0]
    assert (group["alpha"], group["eps"], group["momentum"]) == (0.9, 1e-3, 0.9)


def test_efficientnet_sees_224_pixel_images_with_the_papers_crop():
    """Paper: resize 32 → 224, zero-pad 32, random 224 crop. Here the crop runs on the 32-px
    image and the model upsamples: the largest shift, measured on the 224-px input the
    network sees, must be the paper's 2·32 = 64 px within one 32-px pixel (7 px)."""
    cfg = preset_config("cifar100-efficientnet_b0", "sgd")
    resize = dict(cfg.model_kwargs).get("resize")
    assert resize == 224
    shift = 2 * cfg.padding * resize / 32
    assert abs(shift - 64) <= resize / 32


# --- one gradient count per method ------------------------------------------------------


def _optimizer(method: str):
    cfg = TrainConfig(method=method, inner_steps=4, y=3, gamma="const:0.1")
    return cfg, build_optimizer(cfg, nn.Linear(4, 3))


@pytest.mark.parametrize("method", METHODS)
def test_grad_evals_per_step_agree_between_config_and_optimizer(method):
    cfg, opt = _optimizer(method)
    assert methods.grad_evals_per_step(opt) == cfg.grad_evals_per_step


def test_sam_costs_two_gradients_per_step():
    """SAM's step evaluates the gradient at w and at w + ε̂: two minibatch gradients."""
    cfg = TrainConfig(method="sam")
    model = nn.Linear(4, 3)
    opt = build_optimizer(cfg, model)
    x, t = torch.randn(8, 4), torch.randint(0, 3, (8,))
    calls = []

    def closure():
        calls.append(1)
        loss = nn.functional.cross_entropy(model(x), t)
        loss.backward()
        return loss

    opt.zero_grad()
    opt.step(closure)
    assert methods.grad_evals_per_step(opt) == cfg.grad_evals_per_step == len(calls) == 2
