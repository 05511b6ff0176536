"""PyramidNet with bottleneck blocks and ShakeDrop (PyramidNet-272, alpha = 200)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from wideflat import _validate as check
from wideflat.models._init import kaiming_normal_init_
from wideflat.models._registry import register_model
from wideflat.models.shakedrop import ShakeDrop, shakedrop_survival_probs

__all__ = ["PyramidBottleneck", "PyramidNet"]


class PyramidBottleneck(nn.Module):
    """PyramidNet bottleneck residual unit with optional ShakeDrop on the residual branch.

    Branch: ``BN - conv1x1(planes) - BN - ReLU - conv3x3(planes, stride) - BN - ReLU -
    conv1x1(4 planes) - BN`` (no ReLU after the addition). Shortcut: identity, or 2x2
    average pooling when ``stride == 2``, with zero channels appended to reach
    ``4 * planes`` channels (parameter-free).

    Args:
        in_planes: Input channels.
        planes: Bottleneck width; the output has ``4 * planes`` channels.
        stride: 1 or 2.
        survival_prob: ShakeDrop survival probability ``p_l``; ``None`` disables ShakeDrop.

    Raises:
        ValueError: For a non-positive size, a stride other than 1 or 2, or
            ``4 * planes < in_planes``.

    Example:
        >>> import torch
        >>> PyramidBottleneck(16, 6, stride=2, survival_prob=0.9)(torch.zeros(2, 16, 8, 8)).shape
        torch.Size([2, 24, 4, 4])

    References:
        Han, Kim, Kim. "Deep Pyramidal Residual Networks." CVPR 2017.
    """

    expansion = 4

    def __init__(
        self, in_planes: int, planes: int, stride: int = 1, survival_prob: float | None = None
    ) -> None:
        super().__init__()
        check.positive_int("in_planes", in_planes)
        check.positive_int("planes", planes)
        check.choice("stride", stride, (1, 2))
        out_planes = planes * self.expansion
        if out_planes < in_planes:
            raise ValueError(f"Invalid planes: {planes} (4 * planes < in_planes {in_planes})")
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn4 = nn.BatchNorm2d(out_planes)
        self.shake_drop = ShakeDrop(survival_prob) if survival_prob is not None else None
        self.stride = stride
        self.extra_channels = out_planes - in_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        out = self.bn4(out)
        if self.shake_drop is not None:
            out = self.shake_drop(out)
        shortcut = x
        if self.stride == 2:
            shortcut = F.avg_pool2d(shortcut, 2, stride=2, ceil_mode=True)
        if self.extra_channels:
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra_channels))
        return out + shortcut


class PyramidNet(nn.Module):
    """Bottleneck PyramidNet for CIFAR with ShakeDrop; the default is PyramidNet-272, alpha=200.

    With ``n = (depth - 2) / 9`` units per stage (30 for depth 272), the bottleneck width
    grows linearly by ``alpha / (3n)`` per unit from 16 (rounded to an int per unit),
    ending at 16 + alpha; stages 2 and 3 start with stride 2. Layout:
    ``conv3x3(16) - BN - 3n units - BN - ReLU - global avg pool - linear``. ShakeDrop is on
    every unit with the linear-decay rule ``p_l = 1 - (l / 3n)(1 - p_L)``, ``p_L = 0.5``,
    ``alpha in [-1, 1]``, ``beta in [0, 1]`` (Yamada et al.). PyramidNet-272 (alpha = 200)
    has about 26.0M parameters for 10 classes. Kaiming-normal initialization (paper
    appendix C).

    Args:
        depth: 9n+2 with n >= 1 (272 for the paper's model).
        alpha: Total widening factor (200 for the paper's model).
        num_classes: Number of output logits.
        in_channels: Input channels.
        final_survival_prob: ``p_L`` of the last unit; ``None`` disables ShakeDrop.

    Raises:
        ValueError: If ``depth`` is not 9n+2 or another argument is invalid.

    Example:
        >>> import torch
        >>> net = PyramidNet(depth=11, alpha=12, num_classes=10)
        >>> net(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])

    References:
        Han, Kim, Kim. "Deep Pyramidal Residual Networks." CVPR 2017;
        Yamada, Iwamura, Akiba, Kise. "ShakeDrop Regularization for Deep Residual Learning."
        IEEE Access 2019 (arXiv:1802.02375, 2018).
    """

    def __init__(
        self,
        depth: int = 272,
        alpha: float = 200,
        num_classes: int = 10,
        in_channels: int = 3,
        *,
        final_survival_prob: float | None = 0.5,
    ) -> None:
        super().__init__()
        if not check.is_integer(depth, numpy=False) or depth < 11 or (depth - 2) % 9:
            raise ValueError(f"Invalid depth: {depth!r} (expected 9n+2 with n >= 1, e.g. 272)")
        check.number("alpha", alpha, minimum=0)
        check.positive_int("num_classes", num_classes)
        check.positive_int("in_channels", in_channels)
        n = (depth - 2) // 9
        num_units = 3 * n
        if final_survival_prob is None:
            probs: list[float | None] = [None] * num_units
        else:
            probs = list(shakedrop_survival_probs(num_units, final_survival_prob))
        add_rate = alpha / num_units
        base = 16
        self.conv1 = nn.Conv2d(in_channels, base, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        units = []
        in_planes, width = base, float(base)
        for u in range(num_units):
            width += add_rate
            stride = 2 if u in (n, 2 * n) else 1
            planes = int(round(width))
            units.append(PyramidBottleneck(in_planes, planes, stride, probs[u]))
            in_planes = planes * PyramidBottleneck.expansion
        self.units = nn.Sequential(*units)
        self.bn_final = nn.BatchNorm2d(in_planes)
        self.fc = nn.Linear(in_planes, num_classes)
        self.depth, self.alpha = depth, alpha
        kaiming_normal_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(self.conv1(x))
        out = self.units(out)
        out = F.relu(self.bn_final(out))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


@register_model("pyramidnet272")
def pyramidnet272(
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    alpha: float = 200,
    final_survival_prob: float | None = 0.5,
) -> nn.Module:
    """PyramidNet-272 (alpha=200) with bottleneck units and ShakeDrop (~26.0M parameters)."""
    return PyramidNet(272, alpha, num_classes, in_channels, final_survival_prob=final_survival_prob)
