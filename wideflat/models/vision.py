"""torchvision models (EfficientNet-B0, ResNet-50, DenseNet-121), registered lazily.

torchvision is an optional extra (``pip install 'wideflat[vision]'``). These builders import
it only when called; the registry lists the models in any case and says what to install
when torchvision is missing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from wideflat import _validate as check
from wideflat._optional import import_optional
from wideflat.models._init import kaiming_normal_init_
from wideflat.models._registry import register_model

__all__ = ["ResizedInput"]


def _torchvision_models():
    return import_optional("torchvision.models", "the torchvision models")


def _replace_stem(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """A copy of ``conv``'s hyper-parameters with ``in_channels`` inputs."""
    if in_channels == conv.in_channels:
        return conv
    return nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=1,
        bias=conv.bias is not None,
    )


class ResizedInput(nn.Module):
    """``net`` applied to its input resized to ``size`` × ``size`` pixels (bilinear).

    The resize is part of the model, so training, evaluation and flatness measurements all see
    the same image size and the data set stays at its stored size in memory. Bilinear
    interpolation is linear with weights summing to 1, so it commutes with per-channel
    normalization (up to rounding).
    """

    def __init__(self, net: nn.Module, size: int):
        super().__init__()
        self.net = net
        self.size = size

    def resize_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` resized to ``size`` × ``size`` (bilinear; returned as is when already so)."""
        if tuple(x.shape[-2:]) == (self.size, self.size):
            return x
        return F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.resize_input(x))

    def extra_repr(self) -> str:
        return f"size={self.size}"


@register_model("efficientnet_b0", requires=("torchvision",))
def efficientnet_b0(
    *, num_classes: int, in_channels: int, image_size: int, resize: int = 0
) -> nn.Module:
    """torchvision EfficientNet-B0 (Tan & Le, 2019), random Kaiming-normal init.

    ``resize`` > 0 upsamples every input to ``resize`` × ``resize`` pixels first (the paper
    trains on CIFAR-100 resized to 224, appendix C.1); 0 keeps the input size.
    """
    check.integer("resize", resize, minimum=0, numpy=False)  # 0 = off
    net = _torchvision_models().efficientnet_b0(weights=None, num_classes=num_classes)
    net.features[0][0] = _replace_stem(net.features[0][0], in_channels)
    net = kaiming_normal_init_(net)
    return ResizedInput(net, resize) if resize else net


@register_model("resnet50", requires=("torchvision",))
def resnet50(*, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """torchvision ResNet-50 (He et al., 2016; ImageNet stem), random Kaiming-normal init."""
    net = _torchvision_models().resnet50(weights=None, num_classes=num_classes)
    net.conv1 = _replace_stem(net.conv1, in_channels)
    return kaiming_normal_init_(net)


@register_model("densenet121", requires=("torchvision",))
def densenet121(*, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """torchvision DenseNet-121 (Huang et al., 2017), random Kaiming-normal init."""
    net = _torchvision_models().densenet121(weights=None, num_classes=num_classes)
    net.features.conv0 = _replace_stem(net.features.conv0, in_channels)
    return kaiming_normal_init_(net)
