"""wideflat.models: the paper's architectures and a registry to build them by name.

Registered names (``list_models()``): ``smallconvnet``, ``mlp``, ``resnet18``, ``resnet20``,
``resnet110``, ``pyramidnet272`` and, when torchvision is installed (``pip install
'wideflat[vision]'``), ``efficientnet_b0``, ``resnet50``, ``densenet121``. torchvision is never
imported when this package is imported.

Example:
    >>> import torch
    >>> from wideflat.models import create_model
    >>> net = create_model("resnet20", num_classes=10, in_channels=3, image_size=32)
    >>> net(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 10])
"""

from wideflat.models import vision as _vision  # noqa: F401  (registers the lazy torchvision models)
from wideflat.models._init import kaiming_normal_init_
from wideflat.models._registry import (
    ModelInfo,
    create_model,
    is_model_available,
    list_models,
    model_info,
    register_model,
)
from wideflat.models.committee import CommitteeMachine
from wideflat.models.pgdl import PGDLModel, load_pgdl_model
from wideflat.models.pyramidnet import PyramidBottleneck, PyramidNet
from wideflat.models.resnet import BasicBlock, CifarResNet, ResNet18
from wideflat.models.shakedrop import (
    ShakeDrop,
    ShakeDropFunction,
    shake_drop,
    shakedrop_survival_probs,
)
from wideflat.models.small import MLP, SmallConvNet
from wideflat.models.vision import ResizedInput

__all__ = [
    "MLP",
    "BasicBlock",
    "CifarResNet",
    "CommitteeMachine",
    "ModelInfo",
    "PGDLModel",
    "PyramidBottleneck",
    "PyramidNet",
    "ResNet18",
    "ResizedInput",
    "ShakeDrop",
    "ShakeDropFunction",
    "SmallConvNet",
    "create_model",
    "is_model_available",
    "kaiming_normal_init_",
    "list_models",
    "load_pgdl_model",
    "model_info",
    "register_model",
    "shake_drop",
    "shakedrop_survival_probs",
]
