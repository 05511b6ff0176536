"""Types shared by every reader: the error, the in-memory image set, the dataset facts."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

__all__ = ["DatasetError", "DatasetInfo", "ImageSet"]


class DatasetError(ValueError):
    """A dataset file is missing, unreadable or malformed.

    Raised when a reader is constructed (never later, on first access). The message is one line
    (line breaks in quoted library errors are folded into spaces); it names the file and the
    defect, and for missing files says where to put them.

    Example:
        >>> from wideflat.data import DatasetError, load_fashion_mnist
        >>> try:
        ...     load_fashion_mnist("/nonexistent")
        ... except DatasetError as err:
        ...     print("train-images-idx3-ubyte" in str(err))
        True
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(line.strip() for line in str(message).splitlines()))


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a registered image dataset.

    Example:
        >>> from wideflat.data import dataset_info
        >>> dataset_info("cifar10").num_classes
        10
    """

    name: str
    num_classes: int
    image_shape: tuple[int, ...]  # (C, H, W) as returned by ``ImageSet.images[i]`` (C omitted if 1)
    crop_padding: int  # zero padding (pixels) of the standard random-crop augmentation
    train_size: int  # images in the official training split
    test_size: int  # images in the official test (or validation) split


@dataclass(frozen=True, eq=False)
class ImageSet(Dataset):
    """A whole image split held in memory: a map-style ``torch.utils.data.Dataset``.

    It works with ``DataLoader(num_workers=k)`` (the tensors are shared with workers), and
    with :class:`wideflat.data.DeviceLoader`, which moves ``images`` and ``labels`` to a device
    once and draws batches there.

    Attributes:
        images: ``uint8`` tensor (N×H×W for grey images, N×C×H×W for colour), or a float
            tensor with values in [0, 1] when the reader was asked for ``dtype=torch.float32``.
        labels: ``int64`` tensor of shape (N,) with values in ``[0, len(classes))``.
        classes: class names, index ``i`` naming label ``i``.
        name: dataset name, e.g. ``"fashion-mnist"``.
        split: ``"train"``, ``"test"`` or ``"val"``.
        source: the folder (or, for a CIFAR tarball, the ``.tar.gz`` file) the data was
            actually read from, after any search: record it to know which copy was used.

    Example:
        >>> import torch
        >>> s = ImageSet(torch.zeros(3, 2, 2, dtype=torch.uint8), torch.tensor([0, 1, 0]),
        ...              ("a", "b"), "toy", "train", "memory")
        >>> len(s), s[1][1]
        (3, 1)
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    name: str
    split: str
    source: str

    def __post_init__(self) -> None:
        if not isinstance(self.images, torch.Tensor) or not isinstance(self.labels, torch.Tensor):
            raise TypeError(
                f"ImageSet {self.name!r}: images and labels must be tensors, got "
                f"{type(self.images).__name__} and {type(self.labels).__name__}"
            )
        if self.labels.ndim != 1 or self.images.shape[0] != self.labels.shape[0]:
            raise ValueError(
                f"ImageSet {self.name!r}: {tuple(self.images.shape)} images do not match "
                f"{tuple(self.labels.shape)} labels (need N images and N labels)"
            )

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(classes)``)."""
        return len(self.classes)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])

    def __repr__(self) -> str:
        return (
            f"ImageSet(name={self.name!r}, split={self.split!r}, n={len(self)}, "
            f"shape={tuple(self.images.shape[1:])}, dtype={self.images.dtype}, "
            f"classes={len(self.classes)}, source={self.source!r})"
        )
