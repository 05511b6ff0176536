"""Conventions that more than one module relies on: the committee's sign(0), the EfficientNet
input resize."""

from __future__ import annotations

import sys
import types

import pytest
import torch
from torch import nn

from wideflat.flatness._bp_inputs import committee_correct
from wideflat.flatness.committee_bp import committee_local_entropy
from wideflat.flatness.monte_carlo import committee_gaussian_mc
from wideflat.models import _registry, create_model
from wideflat.models.committee import committee_errors, committee_output, hidden_signs

# Pattern 0 has h = (1, -1, 0): one unit's pre-activation is exactly zero.
W = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
X = torch.tensor([[1.0, -1.0], [1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)


def test_hidden_sign_of_zero_is_plus_one():
    h = torch.tensor([-2.0, -0.0, 0.0, 3.0])
    assert hidden_signs(h).tolist() == [-1, 1, 1, 1]


def test_committee_output_and_bp_correctness_agree_on_zero_preactivations():
    assert float((X[0] @ W.T).abs().min()) == 0.0
    y = committee_output(W, X)
    assert y.tolist() == [1.0, 1.0, -1.0]
    for labels in (y, -y, torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)):
        agree = committee_output(W, X) == labels
        assert committee_correct(W, X, labels).tolist() == agree.tolist()
        assert float(committee_errors(W, X, labels)) == pytest.approx(1 - agree.double().mean())


def test_flatness_accepts_a_reference_labelled_by_the_committee_output():
    """E_train(w) = 0 by the network's own output, so BP and Monte Carlo take it."""
    y = committee_output(W, X)
    result = committee_local_entropy(W, X, y, gammas=[1.0], normalize=False)
    assert result.n_training_errors == 0 and result.n_patterns == 3
    committee_gaussian_mc(W, X, y, [1.0], samples=10, normalize=False)


# --- EfficientNet-B0 at 224 pixels --------------------------------------------------------


def test_efficientnet_resize_upsamples_every_input(monkeypatch):
    seen = []

    class Net(nn.Module):
        def __init__(self, num_classes):
            super().__init__()
            self.features = nn.Sequential(nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1, bias=False)))
            self.fc = nn.Linear(4, num_classes)

        def forward(self, x):
            seen.append(tuple(x.shape[-2:]))
            return self.fc(self.features(x).mean((2, 3)))

    models = types.ModuleType("torchvision.models")
    models.efficientnet_b0 = lambda *, weights, num_classes: Net(num_classes)
    tv = types.ModuleType("torchvision")
    tv.models = models
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.models", models)
    monkeypatch.setattr(_registry, "_module_available", lambda module: True)
    net = create_model("efficientnet_b0", num_classes=5, in_channels=3, image_size=32, resize=224)
    x = torch.rand(2, 3, 32, 32)
    assert net(x).shape == (2, 5)
    native = create_model("efficientnet_b0", num_classes=5, in_channels=3, image_size=32)
    native(x)
    assert seen == [(224, 224), (32, 32)]
    # Bilinear upsampling keeps a constant image constant (normalization commutes with it).
    big = net.resize_input(torch.full((1, 3, 32, 32), 0.25))
    assert big.shape == (1, 3, 224, 224) and torch.allclose(big, torch.tensor(0.25))
    with pytest.raises(ValueError, match="Invalid resize"):
        create_model("efficientnet_b0", num_classes=5, in_channels=3, image_size=32, resize=-1)
