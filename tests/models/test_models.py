"""Tests for wideflat.models: registry, architectures, ShakeDrop, torch.func compatibility."""

from __future__ import annotations

import copy
import math
import subprocess
import sys
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, stack_module_state, vmap

import wideflat.models as M
from wideflat.models import (
    CifarResNet,
    PyramidNet,
    ResNet18,
    ShakeDrop,
    ShakeDropFunction,
    SmallConvNet,
    _registry,
    create_model,
    list_models,
    model_info,
    shake_drop,
    shakedrop_survival_probs,
)

PAPER_MODELS = {"smallconvnet", "resnet18", "resnet110", "pyramidnet272"}
TORCHVISION_MODELS = {"efficientnet_b0", "resnet50", "densenet121"}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _model_params():
    out = []
    for name in list_models():
        marks = []
        if not M.is_model_available(name):
            missing = ", ".join(model_info(name).requires)
            marks.append(pytest.mark.skip(reason=f"{name} needs {missing} (not installed)"))
        out.append(pytest.param(name, marks=marks, id=name))
    return out


# --------------------------------------------------------------------------- registry


def test_registry_lists_paper_models():
    names = list_models()
    assert PAPER_MODELS | TORCHVISION_MODELS | {"mlp"} <= set(names)
    assert names == sorted(names)
    available = set(list_models(available_only=True))
    assert PAPER_MODELS | {"mlp"} <= available
    for name in TORCHVISION_MODELS:
        assert model_info(name).requires == ("torchvision",)
        assert (name in available) == M.is_model_available(name)


@pytest.mark.parametrize("name", _model_params())
def test_every_model_forward_backward(name):
    torch.manual_seed(0)
    kwargs = dict(model_info(name).example)
    model = create_model(name, **kwargs)
    x = torch.randn(2, kwargs["in_channels"], kwargs["image_size"], kwargs["image_size"])
    out = model(x)
    assert out.shape == (2, kwargs["num_classes"])
    assert torch.isfinite(out).all()
    F.cross_entropy(out, torch.tensor([0, 1])).backward()
    params = [p for p in model.parameters() if p.requires_grad]
    assert params
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{name}: no grad for {pname}"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite grad for {pname}"
    assert any(p.grad.abs().sum() > 0 for p in params)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, kwargs["num_classes"])


def test_unknown_model_lists_known_names():
    with pytest.raises(ValueError, match="Unknown model: 'resnet1000'") as err:
        create_model("resnet1000", num_classes=10, in_channels=3, image_size=32)
    for name in ("smallconvnet", "resnet18", "pyramidnet272"):
        assert name in str(err.value)
    with pytest.raises(ValueError, match="Unknown model"):
        model_info(3)


@pytest.mark.parametrize(
    ("field", "value"),
    [("num_classes", 0), ("num_classes", True), ("in_channels", 2.0), ("image_size", -1)],
)
def test_create_model_rejects_bad_sizes(field, value):
    kwargs = {"num_classes": 10, "in_channels": 3, "image_size": 32, field: value}
    with pytest.raises(ValueError, match=f"Invalid {field}"):
        create_model("mlp", **kwargs)


def test_create_model_rejects_unknown_option():
    with pytest.raises(ValueError, match="widht") as err:
        create_model("mlp", num_classes=10, in_channels=1, image_size=4, widht=3)
    assert "hidden" in str(err.value)  # the accepted options are listed
    net = create_model("mlp", num_classes=3, in_channels=1, image_size=4, hidden=(5,))
    assert [m.out_features for m in net.modules() if isinstance(m, nn.Linear)] == [5, 3]


def test_register_model_rejects_bad_names():
    with pytest.raises(ValueError, match="already registered"):
        M.register_model("mlp")
    for bad in ("", "ResNet", " x", 3):
        with pytest.raises(ValueError, match="Invalid model name"):
            M.register_model(bad)
    with pytest.raises(ValueError, match="Invalid requires"):
        M.register_model("tmp_model", requires="torchvision")


def test_register_and_create_custom_model(monkeypatch):
    monkeypatch.setattr(_registry, "_REGISTRY", dict(_registry._REGISTRY))

    @M.register_model("tmp_linear", example={"in_channels": 1})
    def tmp_linear(*, num_classes, in_channels, image_size, bias=True):
        """A linear model."""
        return nn.Sequential(
            nn.Flatten(), nn.Linear(in_channels * image_size**2, num_classes, bias)
        )

    assert "tmp_linear" in list_models()
    info = model_info("tmp_linear")
    assert info.summary == "A linear model."
    assert dict(info.example) == {"num_classes": 10, "in_channels": 1, "image_size": 32}
    net = create_model("tmp_linear", num_classes=2, in_channels=1, image_size=3, bias=False)
    assert net[1].bias is None


def test_missing_torchvision_gives_install_hint(monkeypatch):
    monkeypatch.setattr(_registry, "_module_available", lambda module: module != "torchvision")
    for name in sorted(TORCHVISION_MODELS):
        assert name in list_models()
        assert name not in list_models(available_only=True)
        assert not M.is_model_available(name)
        with pytest.raises(ImportError, match=r"pip install 'wideflat\[vision\]'"):
            create_model(name, num_classes=10, in_channels=3, image_size=32)


def test_importing_models_does_not_import_torchvision():
    code = "import sys, wideflat.models; print('torchvision' in sys.modules)"
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert res.stdout.strip() == "False"


def test_torchvision_builders_wiring_with_stub(monkeypatch):
    """The lazy builders call torchvision with num_classes and swap the stem for in_channels."""
    calls = []

    def fake(kind):
        def build(*, weights, num_classes):
            calls.append((kind, weights, num_classes))
            stem = nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False)
            head = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
            if kind == "resnet50":
                net = nn.Sequential()
                net.conv1 = stem
            elif kind == "densenet121":
                net = nn.Sequential()
                net.features = nn.Sequential()
                net.features.conv0 = stem
            else:
                net = nn.Sequential()
                net.features = nn.Sequential(nn.Sequential(stem))
            net.head = head
            net.fc = nn.Linear(4, num_classes)
            return net

        return build

    models = types.ModuleType("torchvision.models")
    for kind in TORCHVISION_MODELS:
        setattr(models, kind, fake(kind))
    tv = types.ModuleType("torchvision")
    tv.models = models
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.models", models)
    monkeypatch.setattr(_registry, "_module_available", lambda module: True)
    for kind in sorted(TORCHVISION_MODELS):
        net = create_model(kind, num_classes=7, in_channels=1, image_size=32)
        stems = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
        assert len(stems) == 1 and stems[0].in_channels == 1 and stems[0].out_channels == 4
        assert stems[0].stride == (2, 2)
        assert net.fc.out_features == 7 and float(net.fc.bias.detach().abs().sum()) == 0.0
    assert sorted(calls) == sorted((k, None, 7) for k in TORCHVISION_MODELS)


# --------------------------------------------------------------------------- architectures


@pytest.mark.parametrize(
    ("name", "published", "num_classes"),
    [
        ("resnet18", 11.17e6, 10),  # kuangliu/pytorch-cifar ResNet-18: 11,173,962
        ("resnet110", 1.7e6, 10),  # He et al. 2016, Table 6
        ("pyramidnet272", 26.0e6, 10),  # Yamada et al. 2018, PyramidNet-272 alpha=200
    ],
)
def test_parameter_counts_match_published(name, published, num_classes):
    model = create_model(name, num_classes=num_classes, in_channels=3, image_size=32)
    count = n_params(model)
    assert abs(count - published) / published < 0.02, f"{name}: {count} vs {published}"


def test_exact_parameter_counts():
    assert n_params(ResNet18(num_classes=10)) == 11_173_962
    # ResNet-110: option A (parameter-free) and option B (1x1 projections at 2 transitions).
    a, b = n_params(CifarResNet(110)), n_params(CifarResNet(110, shortcut="B"))
    assert b - a == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    assert n_params(CifarResNet(20)) == 269_722


@pytest.mark.parametrize(("in_channels", "image_size", "side"), [(1, 28, 4), (3, 32, 5)])
def test_smallconvnet_layer_shapes(in_channels, image_size, side):
    net = SmallConvNet(num_classes=10, in_channels=in_channels, image_size=image_size)
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert shapes == {
        "conv1.weight": (20, in_channels, 5, 5),
        "conv1.bias": (20,),
        "conv2.weight": (50, 20, 5, 5),
        "conv2.bias": (50,),
        "fc1.weight": (500, 50 * side * side),
        "fc1.bias": (500,),
        "fc2.weight": (10, 500),
        "fc2.bias": (10,),
    }
    x = torch.randn(3, in_channels, image_size, image_size)
    # Conv-ReLU-MaxPool, Conv-ReLU-MaxPool, Dense(500)-ReLU, Dense(classes): logits.
    h = F.max_pool2d(F.relu(F.conv2d(x, net.conv1.weight, net.conv1.bias)), 2)
    assert h.shape == (3, 20, (image_size - 4) // 2, (image_size - 4) // 2)
    h = F.max_pool2d(F.relu(F.conv2d(h, net.conv2.weight, net.conv2.bias)), 2)
    h = F.relu(F.linear(h.flatten(1), net.fc1.weight, net.fc1.bias))
    expected = F.linear(h, net.fc2.weight, net.fc2.bias)
    torch.testing.assert_close(net(x), expected)


def test_smallconvnet_keeps_pytorch_default_init():
    torch.manual_seed(0)
    net = SmallConvNet(num_classes=10, in_channels=3, image_size=32)
    # PyTorch's default is U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases;
    # Kaiming normal would exceed this bound for thousands of weights.
    for layer in (net.conv1, net.conv2, net.fc1, net.fc2):
        fan_in = layer.weight[0].numel()
        bound = 1 / math.sqrt(fan_in)
        assert layer.weight.abs().max() <= bound
        assert layer.bias.abs().max() <= bound
        assert layer.bias.abs().sum() > 0


def test_smallconvnet_rejects_tiny_images():
    with pytest.raises(ValueError, match="Invalid image_size"):
        SmallConvNet(num_classes=10, in_channels=1, image_size=12)


def test_kaiming_normal_init_statistics():
    torch.manual_seed(0)
    net = CifarResNet(20)
    conv = net.stages[2][1].conv1  # 64 -> 64, 3x3: fan_out = 576
    expected = math.sqrt(2.0 / (64 * 9))
    assert abs(conv.weight.std().item() / expected - 1) < 0.05
    assert abs(net.fc.weight.std().item() / math.sqrt(2.0 / 64) - 1) < 0.2
    assert float(net.fc.bias.detach().abs().sum()) == 0.0
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight))
            assert torch.equal(m.bias, torch.zeros_like(m.bias))
    with pytest.raises(ValueError, match="Invalid module"):
        M.kaiming_normal_init_("conv")


def test_resnet18_is_the_cifar_variant():
    net = ResNet18(num_classes=100)
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in net.modules())
    assert [len(s) for s in net.stages] == [2, 2, 2, 2]
    assert [s[0].conv1.out_channels for s in net.stages] == [64, 128, 256, 512]
    assert [s[0].conv1.stride[0] for s in net.stages] == [1, 2, 2, 2]
    # Option-B projections exactly where the shape changes (stages 2-4).
    projections = [len(b.shortcut) for s in net.stages for b in s]
    assert projections == [0, 0, 2, 0, 2, 0, 2, 0]
    assert net.fc.out_features == 100
    assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 100)


def test_resnet110_structure_option_a():
    net = CifarResNet(110)
    assert [len(s) for s in net.stages] == [18, 18, 18]
    assert [s[0].conv1.out_channels for s in net.stages] == [16, 32, 64]
    # Option A: no projection parameters anywhere.
    assert not any(len(list(b.shortcut.parameters())) for s in net.stages for b in s)
    assert sum(isinstance(m, nn.Conv2d) for m in net.modules()) + 1 == 110  # + the fc layer
    for bad in (111, 2, "110"):
        with pytest.raises(ValueError, match="Invalid depth"):
            CifarResNet(bad)
    with pytest.raises(ValueError, match="Invalid shortcut"):
        CifarResNet(20, shortcut="C")


def test_pyramidnet272_structure():
    net = PyramidNet(272, 200)
    units = list(net.units)
    assert len(units) == 90
    planes = [u.conv1.out_channels for u in units]
    assert planes[0] == round(16 + 200 / 90) and planes[-1] == 216
    assert all(b - a in (2, 3) for a, b in zip(planes, planes[1:], strict=False))
    assert net.fc.in_features == 4 * 216
    probs = [u.shake_drop.survival_prob for u in units]
    assert probs == pytest.approx([1 - 0.5 * (l + 1) / 90 for l in range(90)])
    assert probs[-1] == pytest.approx(0.5)
    assert [u.stride for u in units].count(2) == 2
    assert units[30].stride == 2 and units[60].stride == 2
    for bad in (273, 2, 272.0):
        with pytest.raises(ValueError, match="Invalid depth"):
            PyramidNet(bad)
    with pytest.raises(ValueError, match="Invalid alpha"):
        PyramidNet(11, -1)
    assert all(u.shake_drop is None for u in PyramidNet(11, 12, final_survival_prob=None).units)


@pytest.mark.parametrize(
    "call",
    [
        lambda: ResNet18(num_classes=0),
        lambda: CifarResNet(20, in_channels=0),
        lambda: M.MLP(4, 2, hidden=(3, 0)),
        lambda: M.MLP(4, 2, hidden="32"),
        lambda: M.MLP(4, 2, activation="sigmoid"),
        lambda: M.BasicBlock(16, 8, shortcut="A"),
        lambda: M.BasicBlock(16, 16, stride=3),
        lambda: M.PyramidBottleneck(64, 8),
    ],
)
def test_constructors_validate(call):
    with pytest.raises(ValueError, match="Invalid"):
        call()


def test_mlp_rejects_wrong_input_size():
    with pytest.raises(ValueError, match="Invalid input shape"):
        M.MLP(12, 3)(torch.zeros(2, 13))


# --------------------------------------------------------------------------- ShakeDrop


def test_shakedrop_eval_is_expectation():
    """Eval: y = (p + (1 - p) E[alpha]) x, E[alpha] = (lo + hi) / 2; p x for alpha in [-1, 1]."""
    x = torch.randn(4, 3, 2, 2)
    torch.testing.assert_close(shake_drop(x, 0.7, training=False), 0.7 * x)
    torch.testing.assert_close(
        shake_drop(x, 0.7, training=False, alpha_range=(0.0, 1.0)), (0.7 + 0.3 * 0.5) * x
    )
    m = ShakeDrop(0.25).eval()
    state = torch.get_rng_state()
    torch.testing.assert_close(m(x), 0.25 * x)
    assert torch.equal(torch.get_rng_state(), state)  # eval mode draws nothing


@pytest.mark.parametrize(("p", "alpha_range"), [(0.5, (-1.0, 1.0)), (0.8, (0.0, 1.0))])
def test_shakedrop_train_mean_matches_eval(p, alpha_range):
    torch.manual_seed(0)
    n = 40_000
    x = torch.ones(n, 1)
    coef = shake_drop(x, p, training=True, alpha_range=alpha_range).squeeze(1)
    expected = p + (1 - p) * sum(alpha_range) / 2
    se = coef.std().item() / math.sqrt(n)
    assert abs(coef.mean().item() - expected) < 5 * se
    # Kept samples are exactly 1; the kept fraction is p.
    kept = (coef == 1).float().mean().item()
    assert abs(kept - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_shakedrop_train_is_random_and_seedable():
    m = ShakeDrop(0.5).train()
    x = torch.randn(64, 8, requires_grad=True)
    torch.manual_seed(1)
    y1 = m(x)
    (g1,) = torch.autograd.grad(y1.sum(), x)
    y2 = m(x)
    assert not torch.equal(y1, y2)
    torch.manual_seed(1)
    y3 = m(x)
    (g3,) = torch.autograd.grad(y3.sum(), x)
    assert torch.equal(y1, y3) and torch.equal(g1, g3)


def test_shakedrop_backward_uses_independent_beta():
    torch.manual_seed(0)
    n = 4000
    x = torch.ones(n, 2, requires_grad=True)
    y = shake_drop(x, 0.0, training=True)  # always drop: forward alpha, backward beta
    (g,) = torch.autograd.grad(y.sum(), x)
    alpha, beta = y[:, 0].detach(), g[:, 0]
    assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(g[:, 0], g[:, 1])  # per sample
    assert alpha.min() < -0.9 and alpha.max() > 0.9 and alpha.abs().max() <= 1
    assert beta.min() >= 0 and beta.max() <= 1 and beta.min() < 0.05 and beta.max() > 0.95
    assert not torch.allclose(alpha, beta)
    corr = torch.corrcoef(torch.stack([alpha, beta]))[0, 1].item()
    assert abs(corr) < 4 / math.sqrt(n)
    # p = 1 keeps the branch: identity both ways.
    y = shake_drop(x, 1.0, training=True)
    (g,) = torch.autograd.grad(y.sum(), x)
    assert torch.equal(y, x) and torch.equal(g, torch.ones_like(x))


def test_shakedrop_function_scales_forward_and_backward_differently():
    x = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    fwd = torch.tensor([[-0.5], [1.0], [0.25]], dtype=torch.float64)
    bwd = torch.tensor([[0.75], [1.0], [0.0]], dtype=torch.float64)
    y = ShakeDropFunction.apply(x, fwd, bwd)
    torch.testing.assert_close(y, x * fwd)
    gy = torch.randn_like(y)
    (gx,) = torch.autograd.grad(y, x, gy)
    torch.testing.assert_close(gx, gy * bwd)


def test_shakedrop_survival_probs_and_validation():
    assert shakedrop_survival_probs(4) == pytest.approx([0.875, 0.75, 0.625, 0.5])
    assert shakedrop_survival_probs(2, 0.0) == pytest.approx([0.5, 0.0])
    x = torch.ones(2, 2)
    bad = [
        lambda: shakedrop_survival_probs(0),
        lambda: shakedrop_survival_probs(3, 1.5),
        lambda: shake_drop(x, 1.5, training=True),
        lambda: shake_drop(x, True, training=True),
        lambda: shake_drop(x, 0.5, training=True, alpha_range=(-2.0, 1.0)),
        lambda: shake_drop(x, 0.5, training=True, beta_range=(0.8, 0.2)),
        lambda: shake_drop(x, 0.5, training=True, beta_range=3),
        lambda: ShakeDrop(-0.1),
        lambda: shake_drop(torch.tensor(1.0), 0.5, training=True),
    ]
    for call in bad:
        with pytest.raises(ValueError, match="Invalid"):
            call()


# --------------------------------------------------------------------------- torch.func


def _tiny(name: str) -> nn.Module:
    if name == "pyramidnet_tiny":
        return PyramidNet(11, 12, num_classes=10, in_channels=3)
    if name == "resnet20_b":
        return create_model("resnet20", num_classes=10, in_channels=3, image_size=16, shortcut="B")
    if name == "mlp":
        return create_model("mlp", num_classes=10, in_channels=3, image_size=16, hidden=(32,))
    return create_model(name, num_classes=10, in_channels=3, image_size=16)


def _stack(name: str, replicas: int = 2):
    models = [_tiny(name) for _ in range(replicas)]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    return models, params, buffers, base


def _clone(tree: dict) -> dict:
    return {k: v.clone() for k, v in tree.items()}


DETERMINISTIC = ["mlp", "smallconvnet", "resnet20", "resnet20_b"]


@pytest.mark.parametrize("name", DETERMINISTIC)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_vmap_functional_call_matches_loop(name, mode):
    torch.manual_seed(0)
    models, params, buffers, base = _stack(name)
    for m in [*models, base]:
        m.train(mode == "train")
    x = torch.randn(2, 4, 3, 16, 16)  # an independent minibatch per replica
    y = torch.randint(0, 10, (2, 4))

    def loss_fn(p, b, xb, yb):
        return F.cross_entropy(functional_call(base, (p, b), (xb,)), yb)

    def forward(p, b, xb):
        return functional_call(base, (p, b), (xb,))

    out = vmap(forward, randomness="different")(params, buffers, x)
    grads = vmap(grad(loss_fn), randomness="different")(params, buffers, x, y)
    for i, m in enumerate(models):
        torch.testing.assert_close(out[i], m(x[i]), rtol=1e-5, atol=1e-5)
        F.cross_entropy(m(x[i]), y[i]).backward()
        for k, p in m.named_parameters():
            torch.testing.assert_close(grads[k][i], p.grad, rtol=1e-4, atol=1e-5)
    if mode == "train" and buffers:
        # BatchNorm running statistics were updated in the stacked buffers: twice (forward
        # and grad passes), like the loop models (two forwards each).
        for k, v in buffers.items():
            torch.testing.assert_close(v[1], models[1].state_dict()[k])


def test_vmap_pyramidnet_shakedrop_randomness():
    torch.manual_seed(0)
    model = _tiny("pyramidnet_tiny").train()
    # Two replicas with identical parameters: only ShakeDrop can make them differ.
    params, buffers = stack_module_state([model, copy.deepcopy(model)])
    base = copy.deepcopy(model).to("meta")
    x = torch.randn(4, 3, 16, 16).expand(2, -1, -1, -1, -1)

    def forward(p, b, xb):
        return functional_call(base, (p, b), (xb,))

    def loss_fn(p, b, xb):
        return functional_call(base, (p, b), (xb,)).square().mean()

    b0 = _clone(buffers)
    out = vmap(forward, randomness="different")(params, _clone(b0), x)
    assert not torch.allclose(out[0], out[1])
    same = vmap(forward, randomness="same")(params, _clone(b0), x)
    torch.testing.assert_close(same[0], same[1])
    torch.manual_seed(5)
    g1 = vmap(grad(loss_fn), randomness="different")(params, _clone(b0), x)
    torch.manual_seed(5)
    g2 = vmap(grad(loss_fn), randomness="different")(params, _clone(b0), x)
    for k in g1:
        assert torch.isfinite(g1[k]).all()
        assert torch.equal(g1[k], g2[k])
    assert not torch.allclose(g1["conv1.weight"][0], g1["conv1.weight"][1])
    # Eval mode is deterministic and equal to the plain module.
    model.eval()
    base.eval()
    out = vmap(forward)(params, buffers, x)
    torch.testing.assert_close(out[0], model(x[0]), rtol=1e-5, atol=1e-5)
