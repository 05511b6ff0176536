"""A minibatch loader that keeps the whole dataset on the device (no workers, no copies).

Small datasets (Fashion-MNIST, CIFAR, the committee sets) fit in GPU memory many times over;
holding them there and indexing with a permutation is the fastest loader there is (the
cifar10-airbench approach). Shuffling and augmentation draw from the loader's own generators,
so the stream of batches is fixed by ``seed`` and can be checkpointed mid-epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from .. import _rng
from .. import _validate as check
from .base import ImageSet

__all__ = ["DeviceLoader"]

_STATE_VERSION = 1


class DeviceLoader:
    """Shuffled minibatches from tensors held on one device.

    Each epoch's order is ``randperm`` from a CPU generator seeded by ``(seed, epoch)``; the
    ``transform`` (e.g. :class:`~wideflat.data.Augment`) draws from a second generator on the
    device. uint8 images are converted to float32 in [0, 1] per batch, and grey N×H×W images
    get a channel dim (N×1×H×W). Iterating runs from the current position to the end of the
    epoch; ``state_dict()`` taken after k batches and loaded into a fresh loader makes it yield
    exactly the batches the original would yield next (bit-identical).

    Args:
        images: tensor with the sample dim first (uint8 images, or float features).
        labels: tensor of length N.
        batch_size: samples per batch.
        shuffle: draw a new permutation each epoch (else sequential order).
        drop_last: drop the last incomplete batch.
        seed: seed of the permutations and of the transform's generator.
        device: where the data lives (default: where ``images`` already is).
        transform: ``f(x, generator) -> x`` applied to each float batch on the device.

    Example:
        >>> import torch
        >>> loader = DeviceLoader(torch.arange(10.0)[:, None], torch.arange(10), 4, seed=0)
        >>> [len(y) for _, y in loader], loader.epoch
        ([4, 4, 2], 1)
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        *,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        device: torch.device | str | None = None,
        transform: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    ) -> None:
        if not isinstance(images, torch.Tensor) or not isinstance(labels, torch.Tensor):
            raise TypeError("DeviceLoader: images and labels must be tensors")
        if images.ndim < 1 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise ValueError(
                f"DeviceLoader: images {tuple(images.shape)} and labels {tuple(labels.shape)} "
                "must share the first dim N"
            )
        if images.shape[0] == 0:
            raise ValueError("DeviceLoader: the dataset is empty (N = 0)")
        check.integer("batch_size", batch_size, minimum=1, numpy=False, context="DeviceLoader")
        check.integer("seed", seed, numpy=False, context="DeviceLoader")
        if transform is not None and not callable(transform):
            raise TypeError(f"DeviceLoader: transform must be callable, got {type(transform)}")
        self.device = torch.device(device) if device is not None else images.device
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.seed = seed
        self.transform = transform
        self.epoch = 0
        self.batch_index = 0  # batches of the current epoch already yielded
        self.generator = torch.Generator(device=self.device).manual_seed(_rng.epoch_seed(seed, -1))

    @classmethod
    def from_imageset(cls, data: ImageSet, batch_size: int, **kwargs) -> DeviceLoader:
        """A loader over an :class:`ImageSet` (``images``, ``labels``)."""
        if not isinstance(data, ImageSet):
            raise TypeError(f"from_imageset needs an ImageSet, got {type(data).__name__}")
        return cls(data.images, data.labels, batch_size, **kwargs)

    def __len__(self) -> int:
        n = int(self.labels.shape[0])
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _order(self) -> torch.Tensor:
        n = int(self.labels.shape[0])
        if not self.shuffle:
            return torch.arange(n, device=self.device)
        g = torch.Generator().manual_seed(_rng.epoch_seed(self.seed, self.epoch))
        return torch.randperm(n, generator=g).to(self.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.batch_index >= len(self):  # the previous epoch was consumed to its end
            self.epoch += 1
            self.batch_index = 0
        order = self._order()
        while self.batch_index < len(self):
            start = self.batch_index * self.batch_size
            idx = order[start : start + self.batch_size]
            x = self.images[idx]
            if x.dtype == torch.uint8:
                x = x.to(torch.float32) / 255.0
            if x.ndim == 3:
                x = x.unsqueeze(1)
            if self.transform is not None:
                x = self.transform(x, self.generator)
            self.batch_index += 1
            yield x, self.labels[idx]
        self.epoch += 1
        self.batch_index = 0

    def state_dict(self) -> dict:
        """Position and generator state (uint8 tensor), loadable with ``weights_only=True``."""
        return {
            "version": _STATE_VERSION,
            "seed": self.seed,
            "epoch": self.epoch,
            "batch_index": self.batch_index,
            "num_samples": int(self.labels.shape[0]),
            "batch_size": self.batch_size,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Resume from :meth:`state_dict` (same data size and batch size required)."""
        need = {"version", "seed", "epoch", "batch_index", "num_samples", "batch_size", "generator"}
        if not isinstance(state, dict) or not need <= set(state):
            raise ValueError(f"DeviceLoader.load_state_dict: state lacks keys {sorted(need)}")
        if state["version"] != _STATE_VERSION:
            raise ValueError(f"DeviceLoader: unsupported state version {state['version']}")
        if (
            state["num_samples"] != int(self.labels.shape[0])
            or state["batch_size"] != self.batch_size
        ):
            raise ValueError(
                f"DeviceLoader: state is for {state['num_samples']} samples in batches of "
                f"{state['batch_size']}, this loader has {int(self.labels.shape[0])} and "
                f"{self.batch_size}"
            )
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        self.batch_index = int(state["batch_index"])
        self.generator.set_state(state["generator"].clone())
