"""The replica-engine interface: what :class:`~wideflat.optim.ReplicatedSGD` asks of y replicas.

Three engines implement it: :class:`~wideflat.replicas.Replicas` (``"loop"``, y modules in one
process), :class:`~wideflat.replicas.StackedReplicas` (``"vmap"``, stacked tensors run as one
``torch.func.vmap`` program) and :class:`~wideflat.replicas.DistributedReplicas`
(``"distributed"``, replica a in process a). Each is an ``nn.Module`` (``state_dict``,
``buffers``, ``to``, ``train``), and the optimizer never asks which one it holds: where they
differ it reads a declared property (:attr:`batched`, :attr:`spans_processes`).

**Indexing means one thing everywhere.** ``engine[a]`` is a *live* module for replica ``a``,
which this process must hold (``a`` in :attr:`local_indices`; a negative ``a`` counts from y,
as for a list): its forward pass computes with replica a's current weights, in-place writes to
its parameters and buffers change the engine's replica a, and the gradients of its outputs
accumulate where the optimizer reads them. The loop and distributed engines return the
replica's module itself. The vmap engine returns a module whose parameters and buffers share
storage with row ``a`` of the stacked tensors (made on each call; a hook passes its gradients
on to the stacked tensors). Any other ``a`` raises :class:`ReplicaIndexError`. Iterating an
engine yields its local replicas in order. For a standalone copy use
``copy.deepcopy(engine[a])``; ``center()`` always returns a new module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from .. import _validate as check

__all__ = ["OneProcess", "ReplicaEngine", "ReplicaIndexError", "local_index"]


class ReplicaIndexError(IndexError, ValueError):
    """``engine[a]`` for a replica this process does not hold (or outside ``range(-y, y)``).

    An ``IndexError`` (so iteration protocols stop on it) and, as before the engines shared
    one interface, a ``ValueError``.
    """


@runtime_checkable
class ReplicaEngine(Protocol):
    """y replicas of a model, their center w̄ = (1/y) Σ_a w_a and the elastic coupling.

    Distances are d(w_a, w̄) = ½‖w_a − w̄‖². Methods marked *collective* must be called by
    every process at once with the distributed engine (they all-reduce).
    """

    engine: str
    """The engine's name: ``"loop"``, ``"vmap"`` or ``"distributed"``."""

    seed: int
    """The seed of replica initialization and of ReplicatedSGD's per-replica RNG streams."""

    @property
    def y(self) -> int:
        """The number of replicas (over all processes)."""

    @property
    def local_indices(self) -> list[int]:
        """The replicas this process holds, in order (all of them, or this rank's one)."""

    @property
    def batched(self) -> bool:
        """Whether one program runs all local replicas at once (vmap): a step closure then
        takes no argument and returns the ``(y,)`` losses, and the local replicas share one
        RNG stream (index 0); otherwise the closure is called per replica, ``closure(a)``."""

    @property
    def spans_processes(self) -> bool:
        """Whether the replicas live in several processes: failures are then agreed on with
        :meth:`agree_on_failures` at coupling steps instead of raised at once."""

    def __len__(self) -> int:
        """y."""

    def __getitem__(self, a: int) -> nn.Module:
        """The live module of local replica ``a`` (see the module docstring)."""

    def __iter__(self) -> Iterator[nn.Module]:
        """The live modules of the local replicas, in :attr:`local_indices` order."""

    def reference_parameters(self) -> list[torch.Tensor]:
        """The model's parameters, which an optimizer's parameter groups name."""

    def optimizer_params(self, positions: list[int]) -> list[torch.Tensor]:
        """The tensors an optimizer updates for model parameters ``positions``."""

    def couple_(self, params: list[torch.Tensor], strength: float) -> None:
        """g_a += strength · (w_a − w̄) on the gradients of ``params`` (from
        :meth:`optimizer_params`); a ``None`` gradient is left alone. Collective."""

    def center_parameters(self) -> list[torch.Tensor]:
        """w̄ for each model parameter. Collective."""

    def center(self) -> nn.Module:
        """A new plain module holding w̄ (float buffers averaged over replicas). Collective."""

    def distances(self) -> torch.Tensor:
        """d(w_a, w̄) for every replica a = 0..y−1, float64 on the CPU. Collective."""

    def losses(
        self,
        batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """``loss_fn(replica_a(x_a), t_a)`` for each local replica a, one batch each (in
        :attr:`local_indices` order), as a differentiable tensor of that length."""

    def nonfinite_replicas(self, params: list[torch.Tensor]) -> list[int]:
        """The local replicas whose gradient in ``params`` (from :meth:`optimizer_params`)
        holds a NaN or an infinity (element-wise: the slow path after a failed check)."""

    def agree_on_failures(self, local_bad: list[int]) -> list[int]:
        """Every process's failed replicas, given this one's (single process: ``local_bad``).
        Collective."""

    def sum_over_ranks(self, value: float) -> float:
        """Σ of ``value`` over the processes (single process: ``value``). Collective."""

    def check_same(self, what: str, text: str) -> None:
        """Raise ``ValueError`` unless every process passes the same ``text`` (single
        process: nothing to compare). Collective."""

    def buffers(self, recurse: bool = True) -> Iterator[torch.Tensor]:
        """Every buffer of every local replica (``nn.Module``)."""

    def named_parameters(self, *args, **kwargs) -> Iterator[tuple[str, nn.Parameter]]:
        """``nn.Module.named_parameters``: the tensors :meth:`optimizer_params` draws from."""

    def state_dict(self, *args, **kwargs) -> dict:
        """Every local replica, parameters and buffers (``nn.Module``)."""

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Inverse of :meth:`state_dict` (``nn.Module``)."""


class OneProcess:
    """The process-level part of an engine that holds all its replicas in this process: its
    failures are everyone's, sums need no reduction, and there is no other process to agree
    with. Mixed into the loop and vmap engines."""

    spans_processes = False

    @property
    def local_indices(self) -> list[int]:
        """The replicas held by this process: all of them."""
        return list(range(self.y))

    def agree_on_failures(self, local_bad: list[int]) -> list[int]:
        """One process holds every replica: its failures are all of them."""
        return list(local_bad)

    def sum_over_ranks(self, value: float) -> float:
        """One process: ``value``."""
        return float(value)

    def check_same(self, what: str, text: str) -> None:
        """One process: nothing to compare."""


def local_index(a: int, y: int, local: Sequence[int]) -> int:
    """``a`` as an index in ``range(y)`` (negative counts from y), if this process holds it.

    Raises :class:`ReplicaIndexError` otherwise.

    Example:
        >>> local_index(-1, 3, [0, 1, 2])
        2
    """
    if not check.is_integer(a):
        raise ReplicaIndexError(f"Invalid replica index: {a!r} (expected an integer)")
    index = int(a) + y if a < 0 else int(a)
    if index not in local:
        held = "holds replica" if len(local) == 1 else "holds replicas"
        raise ReplicaIndexError(
            f"Invalid replica index: {a} (y = {y}; this process {held} {list(local)})"
        )
    return index
