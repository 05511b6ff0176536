"""One registry of image datasets: ``list_datasets()``, ``dataset_info()``, ``load_dataset()``."""

from __future__ import annotations

import os
from collections.abc import Callable

from .base import DatasetInfo, ImageSet
from .cifar import load_cifar10, load_cifar100
from .fashion_mnist import load_fashion_mnist
from .tiny_imagenet import load_tiny_imagenet

__all__ = ["dataset_info", "list_datasets", "load_dataset"]

_REGISTRY: dict[str, tuple[DatasetInfo, Callable[..., ImageSet]]] = {
    "fashion-mnist": (
        DatasetInfo("fashion-mnist", 10, (28, 28), 4, 60000, 10000),
        load_fashion_mnist,
    ),
    "cifar10": (DatasetInfo("cifar10", 10, (3, 32, 32), 4, 50000, 10000), load_cifar10),
    "cifar100": (DatasetInfo("cifar100", 100, (3, 32, 32), 4, 50000, 10000), load_cifar100),
    "tiny-imagenet": (
        DatasetInfo("tiny-imagenet", 200, (3, 64, 64), 8, 100000, 10000),
        load_tiny_imagenet,
    ),
}


def list_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`, sorted.

    Example:
        >>> list_datasets()
        ['cifar10', 'cifar100', 'fashion-mnist', 'tiny-imagenet']
    """
    return sorted(_REGISTRY)


def _entry(name: str) -> tuple[DatasetInfo, Callable[..., ImageSet]]:
    if name not in _REGISTRY:
        raise ValueError(f"Unknown dataset: {name!r} (known: {', '.join(list_datasets())})")
    return _REGISTRY[name]


def dataset_info(name: str) -> DatasetInfo:
    """Static facts (classes, shape, crop padding, split sizes) about a registered dataset.

    Example:
        >>> dataset_info("tiny-imagenet").crop_padding
        8
    """
    return _entry(name)[0]


def load_dataset(
    name: str, root: str | os.PathLike | None = None, *, split: str = "train", **kwargs
) -> ImageSet:
    """Load a registered dataset's split; ``"test"`` means ``"val"`` for Tiny ImageNet.

    Keyword arguments (``dtype``, ``download``, ``verify``, ``checksums``, ``search``) go to the
    dataset's reader.

    Example:
        >>> load_dataset("fashion-mnist", split="test").labels.shape  # doctest: +SKIP
        torch.Size([10000])
    """
    info, reader = _entry(name)
    if name == "tiny-imagenet" and split == "test":
        split = "val"
    return reader(root, split=split, **kwargs)
