"""Small models: the paper's SmallConvNet (appendix C.1) and a configurable MLP."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from wideflat import _validate as check
from wideflat.models._init import kaiming_normal_init_
from wideflat.models._registry import register_model

__all__ = ["MLP", "SmallConvNet"]


class SmallConvNet(nn.Module):
    """LeNet-like network of the paper's appendix C.1.

    ``Conv(5x5, 20) - MaxPool(2) - Conv(5x5, 50) - MaxPool(2) - Dense(500) - Dense(classes)``,
    with ReLU after each convolution and after the 500-unit dense layer; convolutions have
    no padding. For 1x28x28 inputs the flattened features are 50x4x4 = 800, for 3x32x32
    inputs 50x5x5 = 1250. The output is logits (the softmax is in the cross-entropy loss).
    As the paper says for this model, parameters keep PyTorch's default initialization.

    Args:
        num_classes: Number of output logits.
        in_channels: Input channels (1 for Fashion-MNIST, 3 for CIFAR).
        image_size: Side of the square input; at least 16.

    Raises:
        ValueError: If a size is not a positive int or ``image_size`` < 16.

    Example:
        >>> import torch
        >>> net = SmallConvNet(num_classes=10, in_channels=3, image_size=32)
        >>> net(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])

    References:
        Pittorino et al. "Entropic gradient descent algorithms and wide flat minima."
        ICLR 2021, appendix C.1; LeCun et al. "Gradient-based learning applied to document
        recognition." Proc. IEEE 1998.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> None:
        super().__init__()
        check.positive_int("num_classes", num_classes)
        check.positive_int("in_channels", in_channels)
        check.positive_int("image_size", image_size)
        side = ((image_size - 4) // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"Invalid image_size: {image_size} (SmallConvNet needs at least 16)")
        self.conv1 = nn.Conv2d(in_channels, 20, kernel_size=5)
        self.conv2 = nn.Conv2d(20, 50, kernel_size=5)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(50 * side * side, 500)
        self.fc2 = nn.Linear(500, num_classes)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.conv1(x)))
        x = self.pool(self.relu(self.conv2(x)))
        x = self.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)


_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


class MLP(nn.Module):
    """Fully connected network with configurable hidden widths, for fast tests and benchmarks.

    ``Flatten - [Linear(width) - activation] * len(hidden) - Linear(num_classes)``, with
    Kaiming-normal weights and zero biases. ``hidden=()`` gives a linear classifier.

    Args:
        in_features: Size of the flattened input.
        num_classes: Number of output logits.
        hidden: Widths of the hidden layers.
        activation: ``"relu"``, ``"tanh"`` or ``"gelu"``.
        dropout: probability of zeroing a hidden unit in training (a ``Dropout`` after each
            hidden activation; ``0`` adds no module, so the state_dict keys stay those of a
            network without dropout).

    Raises:
        ValueError: If a size or width is not a positive int, or ``activation`` is unknown.

    Example:
        >>> import torch
        >>> net = MLP(in_features=12, num_classes=3, hidden=(8, 8))
        >>> net(torch.zeros(2, 3, 2, 2)).shape
        torch.Size([2, 3])

    References:
        Rumelhart, Hinton, Williams. "Learning representations by back-propagating
        errors." Nature 1986.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: Sequence[int] = (256, 256),
        *,
        activation: str = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check.positive_int("in_features", in_features)
        check.positive_int("num_classes", num_classes)
        if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
            raise ValueError(f"Invalid hidden: {hidden!r} (expected a sequence of ints)")
        for width in hidden:
            check.positive_int("hidden width", width)
        if activation not in _ACTIVATIONS:
            known = ", ".join(sorted(_ACTIVATIONS))
            raise ValueError(f"Invalid activation: {activation!r} (expected one of {known})")
        check.number("dropout", dropout, minimum=0.0, maximum=1.0, finite=True)
        if dropout >= 1.0:
            raise ValueError(f"Invalid dropout: {dropout} (expected a probability < 1)")
        layers: list[nn.Module] = [nn.Flatten()]
        width_in = in_features
        for width in hidden:
            layers += [nn.Linear(width_in, width), _ACTIVATIONS[activation]()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            width_in = width
        layers.append(nn.Linear(width_in, num_classes))
        self.net = nn.Sequential(*layers)
        self.in_features = in_features
        kaiming_normal_init_(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2 or x[0].numel() != self.in_features:
            raise ValueError(
                f"Invalid input shape: {tuple(x.shape)} "
                f"(expected a batch of {self.in_features}-element samples)"
            )
        return self.net(x)


@register_model("smallconvnet")
def smallconvnet(*, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """SmallConvNet (paper appendix C.1), PyTorch default initialization."""
    return SmallConvNet(num_classes=num_classes, in_channels=in_channels, image_size=image_size)


@register_model("mlp")
def mlp(
    *,
    num_classes: int,
    in_channels: int,
    image_size: int,
    hidden: Sequence[int] = (256, 256),
    activation: str = "relu",
    dropout: float = 0.0,
) -> nn.Module:
    """MLP on flattened images with configurable hidden widths (Kaiming-normal init)."""
    return MLP(
        in_channels * image_size * image_size,
        num_classes,
        tuple(hidden),
        activation=activation,
        dropout=dropout,
    )
