"""The loop engine, ``Replicas``: y copies of a model in one process, their center and distances."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from .. import _rng
from .. import _validate as check
from .._kernels import replica_coupling_
from .base import OneProcess, local_index

__all__ = ["Replicas", "mean_over_replicas"]


class Replicas(OneProcess, nn.Module):
    r"""``y`` replicas of a model for Replicated-SGD.

    Replica 0 *is* the given model (trained in place, so a y = 1 run is plain training of
    ``model``); replicas 1..y−1 are deep copies. With ``init="independent"`` (default)
    each copy is re-initialized by its modules' ``reset_parameters()`` under its own seed
    derived from ``(seed, replica index)``, so the replicas start apart (the paper's
    automatic γ0 divides by their distance to the center); ``init="copy"`` keeps them
    identical. Parameters of modules without ``reset_parameters`` stay copied.

    The center is w̄ = (1/y) Σ_a w_a; :meth:`distances` gives d(w_a, w̄) = ½‖w_a − w̄‖².
    ``reps[a]`` is replica a's module itself (see :mod:`wideflat.replicas.base`).

    Example:
        >>> import torch
        >>> from wideflat.replicas import Replicas
        >>> reps = Replicas(torch.nn.Linear(3, 2), y=3, seed=0)
        >>> len(reps), reps.distances().shape
        (3, torch.Size([3]))
        >>> center = reps.center()          # a plain nn.Linear holding w̄
    """

    engine = "loop"
    batched = False

    def __init__(
        self, model: nn.Module, y: int, *, init: str = "independent", seed: int | None = None
    ):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise ValueError(f"Invalid model: {type(model).__name__} is not a torch.nn.Module")
        check.positive_int("y", y)
        check.choice("init", init, INITS)
        self.seed = _rng.seed_from_global() if seed is None else int(seed)
        self.init = init
        copies = [model]
        for a in range(1, y):
            replica = copy.deepcopy(model)
            if init == "independent":
                _reinitialize(replica, _rng.derive_seed(self.seed, a))
            copies.append(replica)
        self.replicas = nn.ModuleList(copies)

    def __len__(self) -> int:
        return len(self.replicas)

    def __getitem__(self, a: int) -> nn.Module:
        return self.replicas[local_index(a, self.y, range(self.y))]

    def __iter__(self) -> Iterator[nn.Module]:
        return iter(self.replicas)

    @property
    def y(self) -> int:
        """The number of replicas."""
        return len(self.replicas)

    def forward(self, *args, **kwargs):
        raise RuntimeError(
            "Replicas has no single forward: call a replica (replicas[a](x)) or the center "
            "(replicas.center()(x))"
        )

    def reference_parameters(self) -> list[torch.Tensor]:
        """The model's parameters (replica 0), which parameter groups refer to."""
        return list(self.replicas[0].parameters())

    def optimizer_params(self, positions: list[int]) -> list[torch.Tensor]:
        """The tensors an optimizer updates for model parameters ``positions``: replica-major."""
        lists = self.parameter_lists()
        return [lists[a][i] for a in range(self.y) for i in positions]

    def losses(
        self,
        batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """Per-replica losses ``(y,)`` of ``loss_fn(replica_a(x_a), t_a)``, one call each."""
        return replica_losses(self, batches, loss_fn)

    def nonfinite_replicas(self, params: list[torch.Tensor]) -> list[int]:
        """The replicas with a NaN/inf gradient in ``params`` (as from optimizer_params)."""
        owner = {id(p): a for a, r in enumerate(self.replicas) for p in r.parameters()}
        return nonfinite_owners(params, owner)

    @torch.no_grad()
    def couple_(self, params: list[torch.Tensor], strength: float) -> None:
        """g_a += strength · (w_a − w̄) on the gradients of ``params`` (as from optimizer_params).

        Gradients that are None are left alone (the center still includes that replica).
        """
        n = len(params) // self.y
        slices = [params[a * n : (a + 1) * n] for a in range(self.y)]
        center = mean_over_replicas(slices)
        for replica in slices:
            live = [i for i, p in enumerate(replica) if p.grad is not None]
            if live:
                ws, cs = [replica[i] for i in live], [center[i] for i in live]
                replica_coupling_([w.grad for w in ws], ws, cs, strength)

    def parameter_lists(self) -> list[list[torch.Tensor]]:
        """``out[a][i]`` is parameter i of replica a (same order for every replica)."""
        return [list(r.parameters()) for r in self.replicas]

    @torch.no_grad()
    def center_parameters(self) -> list[torch.Tensor]:
        """w̄ = (1/y) Σ_a w_a for each parameter, summed in replica order."""
        lists = self.parameter_lists()
        return mean_over_replicas(lists)

    @torch.no_grad()
    def distances(self) -> torch.Tensor:
        """d(w_a, w̄) = ½ Σ_i (w_a,i − w̄_i)² for each replica a, as a float64 tensor."""
        lists = self.parameter_lists()
        center = mean_over_replicas(lists)
        out = torch.zeros(self.y, dtype=torch.float64)
        for a, params in enumerate(lists):
            for p, c in zip(params, center, strict=True):
                out[a] += 0.5 * (p.detach().double() - c.double()).pow(2).sum().cpu()
        return out

    @torch.no_grad()
    def center(self) -> nn.Module:
        """A plain copy of replica 0 whose parameters are the center w̄.

        Floating-point buffers (e.g. BatchNorm running statistics) are averaged over the
        replicas, integer ones (``num_batches_tracked``) are taken from replica 0. For a
        BatchNorm model, recompute the statistics on training data with
        :func:`wideflat.replicas.recompute_bn` before evaluating: averaged statistics of
        different networks are not the statistics of the center.
        """
        center = copy.deepcopy(self.replicas[0])
        for p, c in zip(center.parameters(), self.center_parameters(), strict=True):
            p.copy_(c)
        buffer_lists = [list(r.buffers()) for r in self.replicas]
        for i, b in enumerate(center.buffers()):
            if b.is_floating_point():
                b.copy_(mean_over_replicas([[bl[i]] for bl in buffer_lists])[0])
        return center


INITS = ("independent", "copy")


def replica_losses(engine, batches, loss_fn) -> torch.Tensor:
    """``loss_fn(engine[a](x), t)`` for each local replica a and its batch, stacked."""
    local = engine.local_indices
    if len(batches) != len(local):
        raise ValueError(f"Invalid batches: {len(batches)} given for {len(local)} local replica(s)")
    return torch.stack([loss_fn(engine[a](x), t) for a, (x, t) in zip(local, batches, strict=True)])


def nonfinite_owners(params: list[torch.Tensor], owner: dict[int, int]) -> list[int]:
    """The replicas (``owner[id(p)]``) of the parameters whose gradient is not finite."""
    return sorted(
        {
            owner[id(p)]
            for p in params
            if p.grad is not None and not bool(torch.isfinite(p.grad).all())
        }
    )


def mean_over_replicas(lists: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    """w̄ = w_0 + (1/y) Σ_a (w_a − w_0), per parameter.

    Algebraically the plain mean, but it sums the (small) deviations from replica 0 rather
    than the weights, so identical replicas give w̄ = w_0 exactly and the rounding error
    scales with the spread of the replicas, not with the size of the weights.
    """
    first = [p.detach() for p in lists[0]]
    if len(lists) == 1:
        return [p.clone() for p in first]
    spread = torch._foreach_sub([p.detach() for p in lists[1]], first)
    for params in lists[2:]:
        torch._foreach_add_(spread, torch._foreach_sub([p.detach() for p in params], first))
    torch._foreach_div_(spread, float(len(lists)))
    return torch._foreach_add(first, spread)


def _reinitialize(module: nn.Module, seed: int) -> None:
    """Re-run every submodule's ``reset_parameters()`` under a private seed."""
    devices = sorted({p.device.index for p in module.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices):
        torch.default_generator.manual_seed(seed)
        for index in devices:
            torch.cuda.default_generators[index].manual_seed(seed)
        for m in module.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()
