"""CIFAR ResNets: the common ResNet-18 variant and He et al.'s 6n+2 family (ResNet-110)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from wideflat import _validate as check
from wideflat.models._init import kaiming_normal_init_
from wideflat.models._registry import register_model

__all__ = ["BasicBlock", "CifarResNet", "ResNet18"]

_SHORTCUTS = ("A", "B")


class BasicBlock(nn.Module):
    """Post-activation residual block: ``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))``.

    When the block changes the resolution or the width, the shortcut is either option A
    (parameter-free: subsample by 2 with stride-2 slicing, then append zero channels) or
    option B (1x1 convolution with stride plus BatchNorm), as named by He et al. (2016).

    Args:
        in_planes: Input channels.
        planes: Output channels.
        stride: Stride of the first convolution (1 or 2).
        shortcut: ``"A"`` or ``"B"``.

    Raises:
        ValueError: For a non-positive size, a stride other than 1 or 2, an unknown
            shortcut, or option A with fewer output than input channels.

    Example:
        >>> import torch
        >>> BasicBlock(16, 32, stride=2, shortcut="A")(torch.zeros(1, 16, 8, 8)).shape
        torch.Size([1, 32, 4, 4])

    References:
        He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition." CVPR 2016.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1, shortcut: str = "B") -> None:
        super().__init__()
        check.positive_int("in_planes", in_planes)
        check.positive_int("planes", planes)
        check.choice("stride", stride, (1, 2))
        if shortcut not in _SHORTCUTS:
            raise ValueError(f"Invalid shortcut: {shortcut!r} (expected 'A' or 'B')")
        if shortcut == "A" and planes < in_planes:
            raise ValueError(f"Invalid planes: {planes} < in_planes {in_planes} with shortcut 'A'")
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride = stride
        self.extra_channels = planes - in_planes
        self.option_a = shortcut == "A"
        self.shortcut = nn.Sequential()
        if not self.option_a and (stride != 1 or in_planes != planes):
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        if not self.option_a:
            return self.shortcut(x)
        if self.stride == 2:
            x = x[:, :, ::2, ::2]
        if self.extra_channels:
            # Zero channels appended at the end: (left, right) pads for W, H, then C.
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self._residual(x))


class _CifarResNetBase(nn.Module):
    """3x3 stem (no max-pool), stages of BasicBlocks, global average pool, linear head."""

    def __init__(
        self,
        *,
        widths: Sequence[int],
        blocks: Sequence[int],
        shortcut: str,
        num_classes: int,
        in_channels: int,
    ) -> None:
        super().__init__()
        check.positive_int("num_classes", num_classes)
        check.positive_int("in_channels", in_channels)
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages = []
        in_planes = widths[0]
        for i, (width, n) in enumerate(zip(widths, blocks, strict=True)):
            layers = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(BasicBlock(in_planes, width, stride, shortcut))
                in_planes = width
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(in_planes, num_classes)
        kaiming_normal_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.stages(out)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


class ResNet18(_CifarResNetBase):
    """ResNet-18 in its common CIFAR form (3x3 stem, no max-pool), about 11.17M parameters.

    ``conv3x3(64)-BN-ReLU``, four stages of two BasicBlocks with 64/128/256/512 channels
    (strides 1, 2, 2, 2), option-B (1x1 conv + BN) shortcuts where the shape changes,
    global average pooling and a linear head. This is the variant popularized by
    kuangliu/pytorch-cifar and used for the paper's CIFAR-10 ResNet-18 runs. Kaiming-normal
    initialization (paper appendix C).

    Args:
        num_classes: Number of output logits.
        in_channels: Input channels.

    Example:
        >>> import torch
        >>> ResNet18(num_classes=10)(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])

    References:
        He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition." CVPR 2016.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__(
            widths=(64, 128, 256, 512),
            blocks=(2, 2, 2, 2),
            shortcut="B",
            num_classes=num_classes,
            in_channels=in_channels,
        )


class CifarResNet(_CifarResNetBase):
    """He et al.'s CIFAR ResNet of depth 6n+2 (ResNet-20, -56, -110, ...).

    ``conv3x3(16)-BN-ReLU``, three stages of n BasicBlocks with 16/32/64 channels (the
    first block of stages 2 and 3 has stride 2), global average pooling and a linear head.
    ResNet-110 (n = 18) has about 1.73M parameters with option A. The default shortcut is
    option A (zero-padding identity, parameter-free), which He et al. used for their CIFAR
    experiments; option B uses 1x1 projections where the shape changes. Kaiming-normal
    initialization (paper appendix C).

    Args:
        depth: Total depth, 6n+2 with n >= 1 (110 for ResNet-110).
        num_classes: Number of output logits.
        in_channels: Input channels.
        shortcut: ``"A"`` (default) or ``"B"``.

    Raises:
        ValueError: If ``depth`` is not of the form 6n+2 or another argument is invalid.

    Example:
        >>> import torch
        >>> CifarResNet(depth=20)(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])

    References:
        He, Zhang, Ren, Sun. "Deep Residual Learning for Image Recognition." CVPR 2016,
        section 4.2.
    """

    def __init__(
        self,
        depth: int = 110,
        num_classes: int = 10,
        in_channels: int = 3,
        *,
        shortcut: str = "A",
    ) -> None:
        if not check.is_integer(depth, numpy=False) or depth < 8 or (depth - 2) % 6:
            raise ValueError(f"Invalid depth: {depth!r} (expected 6n+2 with n >= 1, e.g. 110)")
        if shortcut not in _SHORTCUTS:
            raise ValueError(f"Invalid shortcut: {shortcut!r} (expected 'A' or 'B')")
        n = (depth - 2) // 6
        super().__init__(
            widths=(16, 32, 64),
            blocks=(n, n, n),
            shortcut=shortcut,
            num_classes=num_classes,
            in_channels=in_channels,
        )
        self.depth = depth


@register_model("resnet18")
def resnet18(*, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """CIFAR ResNet-18 (3x3 stem, no max-pool; ~11.17M parameters for 10 classes)."""
    return ResNet18(num_classes=num_classes, in_channels=in_channels)


@register_model("resnet20")
def resnet20(*, num_classes: int, in_channels: int, image_size: int, shortcut: str = "A"):
    """He et al. CIFAR ResNet-20 (3 stages of 3 blocks, 16/32/64 channels; ~0.27M params)."""
    return CifarResNet(20, num_classes, in_channels, shortcut=shortcut)


@register_model("resnet110")
def resnet110(*, num_classes: int, in_channels: int, image_size: int, shortcut: str = "A"):
    """He et al. CIFAR ResNet-110 (3 stages of 18 blocks, 16/32/64 channels; ~1.73M params)."""
    return CifarResNet(110, num_classes, in_channels, shortcut=shortcut)
