"""The data a local-energy measurement evaluates: re-iterable ``(x, y)`` batches on a device.

From a ``DataLoader`` or a tensor pair ``(X, y)``, optionally restricted to a fixed subset
(random, drawn from the measurement's seed, or given as indices).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, IterableDataset, Subset

from wideflat import _rng
from wideflat import _validate as check

__all__ = ["Batches", "make_batches"]


class Batches:
    """Re-iterable source of ``(x, y)`` batches on ``device``."""

    def __init__(
        self,
        tensors: tuple[Tensor, Tensor] | None,
        loader: DataLoader | None,
        batch_size: int,
        device: torch.device,
    ):
        self.tensors = tensors
        self.loader = loader
        self.batch_size = batch_size
        self.device = device

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        if self.tensors is not None:
            X, y = self.tensors
            for start in range(0, X.shape[0], self.batch_size):
                yield X[start : start + self.batch_size], y[start : start + self.batch_size]
            return
        for batch in self.loader or ():
            if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                raise ValueError(
                    f"Invalid data: loader batches must be (x, y, ...), got {type(batch).__name__}"
                )
            yield batch[0].to(self.device), batch[1].to(self.device)


def _subset_indices(subset: Any, n: int, seed: int) -> Tensor | None:
    """The example indices ``subset`` selects out of ``n`` (``None``: all of them)."""
    if subset is None:
        return None
    if check.is_integer(subset):
        check.integer("subset", subset, minimum=1, maximum=n)
        rng = _rng.numpy_generator(seed, 1)
        idx = np.sort(rng.choice(n, size=int(subset), replace=False))
        return torch.from_numpy(idx).long()
    if isinstance(subset, (Tensor, np.ndarray)):
        subset = subset.tolist()
    if not isinstance(subset, Sequence) or isinstance(subset, str):
        raise ValueError(f"Invalid subset: {subset!r} (expected None, an int or indices)")
    idx = list(subset)
    if not idx:
        raise ValueError("Invalid subset: empty index list")
    for i in idx:
        check.integer("subset index", i, minimum=0, maximum=n - 1)
    if len(set(idx)) != len(idx):
        raise ValueError("Invalid subset: repeated indices")
    return torch.tensor(idx, dtype=torch.long)


def make_batches(
    data: Any, subset: Any, batch_size: int, seed: int, device: torch.device
) -> Batches:
    """Check ``data`` (a loader or ``(X, y)``) and serve it, restricted to ``subset``, on
    ``device``; an int ``subset`` draws that many examples from ``(seed, 1)``."""
    if isinstance(data, DataLoader):
        dataset = data.dataset
        if subset is not None:
            if isinstance(dataset, IterableDataset) or not hasattr(dataset, "__len__"):
                raise ValueError("Invalid subset: the loader's dataset is not indexable")
            if len(dataset) == 0:
                raise ValueError("Invalid data: the loader's dataset is empty")
            idx = _subset_indices(subset, len(dataset), seed)
            data = DataLoader(
                Subset(dataset, idx.tolist()),
                batch_size=batch_size,
                shuffle=False,
                collate_fn=data.collate_fn,
                num_workers=data.num_workers,
                pin_memory=data.pin_memory,
            )
        elif (
            hasattr(dataset, "__len__")
            and not isinstance(dataset, IterableDataset)
            and len(dataset) == 0
        ):
            raise ValueError("Invalid data: the loader's dataset is empty")
        return Batches(None, data, batch_size, device)
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(
            f"Invalid data: expected a DataLoader or a tuple (X, y), got {type(data).__name__}"
        )
    X, y = data
    if not isinstance(X, Tensor) or not isinstance(y, Tensor):
        raise ValueError(
            f"Invalid data: X and y must be tensors, got {type(X).__name__}, {type(y).__name__}"
        )
    if X.dim() == 0 or y.dim() == 0:
        raise ValueError("Invalid data: X and y must have a batch dimension")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"Invalid data: len(X) = {X.shape[0]} != len(y) = {y.shape[0]}")
    if X.shape[0] == 0:
        raise ValueError("Invalid data: X and y are empty (0 examples)")
    idx = _subset_indices(subset, X.shape[0], seed)
    if idx is not None:
        X, y = X[idx], y[idx]
    return Batches((X.to(device), y.to(device)), None, batch_size, device)
