"""Endless, resumable minibatch streams: one per replica, each reproducible from (seed, a)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .. import _rng
from .loader import DeviceLoader

__all__ = ["BatchStream", "replica_streams"]


class BatchStream:
    """An endless iterator over a :class:`DeviceLoader`, epoch after epoch, resumable.

    ``state_dict()`` after k batches, loaded into a stream over the same data, makes it
    yield exactly the batches the original yields next.
    """

    def __init__(self, loader: DeviceLoader):
        self.loader = loader
        self._it = None

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._it is None:
            self._it = iter(self.loader)
        try:
            return next(self._it)
        except StopIteration:
            self._it = iter(self.loader)
            return next(self._it)

    def state_dict(self) -> dict:
        """The underlying loader's position and generator state (``DeviceLoader.state_dict``)."""
        return self.loader.state_dict()

    def load_state_dict(self, state: dict) -> None:
        """Continue from a :meth:`state_dict`: the next batches are the saved stream's next."""
        self.loader.load_state_dict(state)
        self._it = None


def replica_streams(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    batch_size: int,
    *,
    replicas: int | Sequence[int],
    seed: int,
    device: torch.device | str | None = None,
    transform: Callable | None = None,
) -> list[BatchStream]:
    """Independent shuffled minibatch streams for replicas ``replicas`` (an int y means 0..y−1).

    Stream a shuffles with the seed derived from ``(seed, a)``, so a replica sees the same
    batches whichever engine or process holds it: the distributed engine builds only its own
    rank's stream (``replicas=[rank]``) and gets the batches the loop engine gives replica a.
    Incomplete last batches are dropped so batches stack across replicas.

    Example:
        >>> import torch
        >>> x, t = torch.randn(100, 3), torch.randint(0, 2, (100,))
        >>> s0, s1 = replica_streams(x, t, 10, replicas=2, seed=0)
        >>> xb, tb = next(s0)
        >>> xb.shape, torch.equal(xb, next(s1)[0])
        (torch.Size([10, 3]), False)
    """
    indices = list(range(replicas)) if isinstance(replicas, int) else list(replicas)
    return [
        BatchStream(
            DeviceLoader(
                inputs,
                targets,
                batch_size,
                drop_last=True,
                seed=_rng.derive_seed(seed, a, 2),
                device=device,
                transform=transform,
            )
        )
        for a in indices
    ]
