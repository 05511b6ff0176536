"""The distributed engine, ``DistributedReplicas``: one replica per process (torch.distributed)."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Iterator, Sequence

import torch
import torch.distributed as dist
from torch import nn

from .. import _rng
from .. import _validate as check
from .._kernels import replica_coupling_
from .base import local_index
from .loop import INITS, _reinitialize, nonfinite_owners, replica_losses

__all__ = ["DistributedReplicas"]


class DistributedReplicas(nn.Module):
    r"""The distributed replica engine: replica a lives in process (rank) a; y = world size.

    Launch one process per replica (``torchrun --nproc-per-node=y``), initialize the default
    process group (gloo on CPU, NCCL on GPU), build the same model on every rank with the same
    torch seed, and wrap it. Rank 0 keeps the model's weights; with ``init="independent"``
    rank a > 0 re-initializes with the seed derived from ``(seed, a)``, exactly as
    :class:`Replicas` does, so all engines start from the same replicas.

    The center w̄ is an all-reduce (sum, then / y) of the flattened parameters, computed
    only when needed (every K steps by :class:`~wideflat.optim.ReplicatedSGD`). The replicas
    are *not* wrapped in DistributedDataParallel: that would average gradients and collapse
    them into one model.

    At construction every rank all-gathers a hash of (y, init, seed, parameter names and
    shapes): ranks launched with different settings fail together with one message
    (:class:`~wideflat.optim.ReplicatedSGD` does the same for its hyper-parameters, through
    :meth:`check_same`).

    ``reps[a]`` is this rank's replica module (also ``reps.replica``) for a = rank; any other
    index raises :class:`~wideflat.replicas.base.ReplicaIndexError` (see
    :mod:`wideflat.replicas.base`).

    Args:
        model: this rank's replica (trained in place).
        init: ``"independent"`` or ``"copy"``.
        seed: the shared seed; ``None`` draws one on rank 0 and broadcasts it.
        group: the process group (default: the world).
    """

    engine = "distributed"
    batched = False
    spans_processes = True

    def __init__(
        self,
        model: nn.Module,
        *,
        init: str = "independent",
        seed: int | None = None,
        group: dist.ProcessGroup | None = None,
    ):
        super().__init__()
        if not dist.is_available() or not dist.is_initialized():
            raise RuntimeError(
                "DistributedReplicas needs an initialized process group: launch with torchrun "
                "and call torch.distributed.init_process_group first"
            )
        check.choice("init", init, INITS)
        self.group = group
        self.rank = dist.get_rank(group)
        self._y = dist.get_world_size(group)
        first = next(iter(model.parameters()), None)
        if first is None:
            raise ValueError(
                "Invalid model: it has no parameters (optimizer got an empty parameter list)"
            )
        self.device = first.device
        if seed is None:
            box = torch.tensor(
                [_rng.seed_from_global() if self.rank == 0 else 0], dtype=torch.int64
            )
            dist.broadcast(box.to(self._comm_device()), src=_global_rank(0, group), group=group)
            seed = int(box.item())
        self.seed = int(seed)
        self.init = init
        self._check_same_config(model)
        if init == "independent" and self.rank > 0:
            _reinitialize(model, _rng.derive_seed(self.seed, self.rank))
        self.replica = model

    @property
    def y(self) -> int:
        """The number of replicas: the world size."""
        return self._y

    @property
    def local_indices(self) -> list[int]:
        """The replica this process holds: ``[rank]``."""
        return [self.rank]

    def __len__(self) -> int:
        return self._y

    def __getitem__(self, a: int) -> nn.Module:
        local_index(a, self._y, self.local_indices)
        return self.replica

    def __iter__(self) -> Iterator[nn.Module]:
        return iter([self.replica])

    def losses(
        self,
        batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """This rank's replica's loss ``(1,)`` on its one batch."""
        return replica_losses(self, batches, loss_fn)

    def nonfinite_replicas(self, params: list[torch.Tensor]) -> list[int]:
        """``[rank]`` if a gradient in ``params`` holds a NaN/inf, else ``[]``."""
        return nonfinite_owners(params, {id(p): self.rank for p in self.replica.parameters()})

    def reference_parameters(self) -> list[torch.Tensor]:
        """This rank's replica's parameters (the model), which parameter groups refer to."""
        return list(self.replica.parameters())

    def optimizer_params(self, positions: list[int]) -> list[torch.Tensor]:
        """The tensors an optimizer updates for model parameters ``positions``: this rank's."""
        params = self.reference_parameters()
        return [params[i] for i in positions]

    @torch.no_grad()
    def couple_(self, params: list[torch.Tensor], strength: float) -> None:
        """g += strength · (w − w̄), with w̄ from one all-reduce of ``params`` (all ranks call it).

        :class:`~wideflat.optim.ReplicatedSGD` first has the ranks agree that every replica
        is finite (:meth:`agree_on_failures`), so a NaN never reaches the center.
        """
        center = [p.detach().clone() for p in params]
        self.all_reduce_mean_(center)
        live = [i for i, p in enumerate(params) if p.grad is not None]
        if live:
            ws, cs = [params[i] for i in live], [center[i] for i in live]
            replica_coupling_([w.grad for w in ws], ws, cs, strength)

    def forward(self, *args, **kwargs):
        return self.replica(*args, **kwargs)

    def _comm_device(self) -> torch.device:
        backend = dist.get_backend(self.group)
        return self.device if backend == "nccl" else torch.device("cpu")

    def _check_same_config(self, model: nn.Module) -> None:
        shapes = [(n, tuple(p.shape)) for n, p in model.named_parameters()]
        self.check_same(
            "y, init, seed or the model's parameters", repr((self._y, self.init, self.seed, shapes))
        )

    def check_same(self, what: str, text: str) -> None:
        """Raise ``ValueError`` on every rank unless all ranks pass the same ``text``.

        One all-gather of a 60-bit hash of ``text`` (every rank must call it): ranks launched
        with different settings stop together, with the same message, instead of pairing
        mismatched collectives later or waiting for the process-group timeout.
        """
        digest = int(hashlib.sha256(text.encode()).hexdigest()[:15], 16)
        mine = torch.tensor([digest], dtype=torch.int64, device=self._comm_device())
        everyone = [torch.zeros_like(mine) for _ in range(self._y)]
        dist.all_gather(everyone, mine, group=self.group)
        hashes = [int(h) for h in everyone]
        differ = [r for r, h in enumerate(hashes) if h != hashes[0]]
        if differ:
            raise ValueError(
                f"Invalid distributed configuration: ranks disagree on {what}: rank(s) {differ} "
                "differ from rank 0 (launch every rank with the same settings)"
            )

    def sum_over_ranks(self, value: float) -> float:
        """Σ over ranks of a number (float64; a collective: every rank must call it)."""
        box = torch.tensor([float(value)], dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(box, group=self.group)
        return float(box.item())

    def all_reduce_mean_(self, tensors: list[torch.Tensor]) -> None:
        """Average ``tensors`` over ranks in place, with one collective on a flat buffer.

        Every rank receives the same reduced buffer, so the result agrees across ranks bit
        for bit (the summation order is the backend's, not the loop engine's).
        """
        flat = torch.cat([t.detach().reshape(-1) for t in tensors])
        device = flat.device
        flat = flat.to(self._comm_device())
        dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=self.group)
        flat = flat.to(device)
        offset = 0
        for t in tensors:
            t.copy_(flat[offset : offset + t.numel()].view_as(t) / self._y)
            offset += t.numel()

    def agree_on_failures(self, local_bad: list[int]) -> list[int]:
        """All-reduce per-rank failure flags: every rank gets the full list of failed replicas."""
        flags = torch.zeros(self._y, dtype=torch.int32, device=self._comm_device())
        for a in local_bad:
            flags[a] = 1
        dist.all_reduce(flags, group=self.group)
        return [a for a in range(self._y) if int(flags[a]) != 0]

    @torch.no_grad()
    def center_parameters(self) -> list[torch.Tensor]:
        """w̄ = (1/y) Σ_a w_a per parameter (a collective: every rank must call it)."""
        center = [p.detach().clone() for p in self.replica.parameters()]
        self.all_reduce_mean_(center)
        return center

    @torch.no_grad()
    def distances(self) -> torch.Tensor:
        """d(w_a, w̄) for every replica a (a collective), float64 on CPU."""
        center = self.center_parameters()
        mine = sum(
            0.5 * float((p.detach().double() - c.double()).pow(2).sum())
            for p, c in zip(self.replica.parameters(), center, strict=True)
        )
        out = torch.zeros(self._y, dtype=torch.float64)
        out[self.rank] = mine
        box = out.to(self._comm_device())
        dist.all_reduce(box, group=self.group)
        return box.cpu()

    @torch.no_grad()
    def center(self) -> nn.Module:
        """The center as a plain module on every rank (a collective); float buffers averaged."""
        module = copy.deepcopy(self.replica)
        for p, c in zip(module.parameters(), self.center_parameters(), strict=True):
            p.copy_(c)
        floats = [b for b in module.buffers() if b.is_floating_point()]
        if floats:
            self.all_reduce_mean_(floats)
        return module


def _global_rank(group_rank: int, group) -> int:
    return group_rank if group is None else dist.get_global_rank(group, group_rank)
