"""AutoAugment through the optional torchvision: error without it, wiring with a stand-in."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from wideflat.data import Augment
from wideflat.experiments.presets import preset_config


def test_without_torchvision_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "torchvision.transforms", None)
    with pytest.raises(ImportError, match=r"wideflat\[vision\]"):
        Augment(autoaugment="cifar10")


def test_unknown_policy_is_named():
    with pytest.raises(ValueError, match="Invalid autoaugment policy: 'cifar11'"):
        Augment(autoaugment="cifar11")


@pytest.fixture
def fake_torchvision(monkeypatch):
    """A stand-in for torchvision.transforms.AutoAugment: adds a random level per image."""
    calls = []

    class AutoAugmentPolicy:
        CIFAR10, IMAGENET, SVHN = "cifar10", "imagenet", "svhn"

    class AutoAugment:
        def __init__(self, policy):
            self.policy = policy

        def __call__(self, image):
            assert image.dtype == torch.uint8 and image.ndim == 3
            calls.append(self.policy)
            shift = int(torch.randint(0, 50, ()))  # from the (forked) global RNG, like torchvision
            return (image.int() + shift).clamp(0, 255).to(torch.uint8)

    transforms = types.ModuleType("torchvision.transforms")
    transforms.AutoAugment, transforms.AutoAugmentPolicy = AutoAugment, AutoAugmentPolicy
    package = types.ModuleType("torchvision")
    package.transforms = transforms
    monkeypatch.setitem(sys.modules, "torchvision", package)
    monkeypatch.setitem(sys.modules, "torchvision.transforms", transforms)
    return calls


def test_policy_applies_per_image_reproducibly_without_touching_global_rng(fake_torchvision):
    aug = Augment(padding=0, flip=False, autoaugment="cifar10")
    x = torch.rand(6, 3, 8, 8)
    state = torch.get_rng_state()
    a = aug(x, torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), state)
    b = aug(x, torch.Generator().manual_seed(1))
    c = aug(x, torch.Generator().manual_seed(2))
    assert fake_torchvision == ["cifar10"] * 18  # one policy draw per image, three batches
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b) and not torch.equal(a, c)
    shifts = (a - (x * 255).round() / 255).flatten(1).amax(1)
    assert len(set(shifts.mul(255).round().tolist())) > 1  # images drew their own levels


def test_presets_that_use_autoaugment():
    assert preset_config("cifar10-pyramidnet272", "sgd").autoaugment == "cifar10"
    assert preset_config("cifar100-efficientnet_b0", "sgd").autoaugment == "cifar10"
    assert preset_config("cifar10-resnet18", "sgd").autoaugment == ""
    with pytest.raises(ValueError, match="Invalid autoaugment"):
        preset_config("cifar10-resnet18", "sgd", autoaugment="mnist")
