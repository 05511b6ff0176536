"""The vmap engine, ``StackedReplicas``: y replicas as stacked tensors, one vmapped program."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from .._kernels import replica_coupling_
from .base import OneProcess, local_index
from .loop import Replicas

__all__ = ["StackedReplicas", "stacked_center"]


class StackedReplicas(OneProcess, nn.Module):
    r"""The vectorized replica engine: parameters and buffers stacked along a leading dim y.

    Parameter ``name`` of replica ``a`` is ``stacked[name][a]``. A forward pass runs every
    replica on its own minibatch at once with ``torch.func.functional_call`` under
    ``torch.func.vmap``: inputs of shape ``(y, B, ...)`` give outputs ``(y, B, ...)``.
    BatchNorm keeps separate running statistics per replica (the stacked buffers are updated
    in place), and dropout draws independent masks per replica (``randomness="different"``).
    The coupling and the base optimizer act on the stacked tensors, so every update is one
    kernel over all replicas instead of y. A frozen parameter (``requires_grad=False``) of
    the model stays frozen, as in the other engines.

    The replicas are initialized exactly as :class:`Replicas` with the same ``init`` and
    ``seed`` (replica 0 holds the model's weights), so the engines are interchangeable.
    The model itself is only a template here: it is not trained in place. ``reps[a]`` is a
    live module for replica a whose parameters and buffers share storage with row a of the
    stacked tensors (see :mod:`wideflat.replicas.base`); :meth:`center` is a new module.

    Example:
        >>> import torch
        >>> reps = StackedReplicas(torch.nn.Linear(3, 2), y=4, seed=0)
        >>> reps(torch.randn(4, 8, 3)).shape          # 4 replicas, 8 examples each
        torch.Size([4, 8, 2])
        >>> reps.stacked["weight"].shape
        torch.Size([4, 2, 3])
    """

    engine = "vmap"
    batched = True

    def __init__(
        self,
        model: nn.Module | Replicas,
        y: int | None = None,
        *,
        init: str = "independent",
        seed: int | None = None,
    ):
        super().__init__()
        replicas = (
            model if isinstance(model, Replicas) else Replicas(model, y, init=init, seed=seed)
        )
        if y is not None and y != replicas.y:
            raise ValueError(f"Invalid y: {y} but the Replicas hold {replicas.y}")
        self.seed = replicas.seed
        params, buffers = stack_module_state(list(replicas))
        self.param_names = list(params)
        self.buffer_names = list(buffers)
        frozen = {n for n, p in replicas[0].named_parameters() if not p.requires_grad}
        self.stacked = nn.ParameterDict(
            {
                _key(n): nn.Parameter(t.detach().clone(), requires_grad=n not in frozen)
                for n, t in params.items()
            }
        )
        for i, name in enumerate(self.buffer_names):
            self.register_buffer(f"buffer_{i}", buffers[name].detach().clone())
        # The template provides the module structure for functional_call; it is kept out of
        # the module tree so its own (unused) tensors are not parameters of this module.
        object.__setattr__(self, "_template", copy.deepcopy(replicas[0]))
        object.__setattr__(self, "_reference", list(replicas[0].parameters()))
        self._y = replicas.y

    @property
    def y(self) -> int:
        """The number of replicas (the stacked leading dimension)."""
        return self._y

    def __len__(self) -> int:
        return self._y

    def _stacked_params(self) -> dict[str, torch.Tensor]:
        return {n: self.stacked[_key(n)] for n in self.param_names}

    def _stacked_buffers(self) -> dict[str, torch.Tensor]:
        return {n: getattr(self, f"buffer_{i}") for i, n in enumerate(self.buffer_names)}

    def reference_parameters(self) -> list[torch.Tensor]:
        """The source model's parameters, which parameter groups refer to."""
        return list(self._reference)

    def optimizer_params(self, positions: list[int]) -> list[torch.Tensor]:
        """The stacked tensors an optimizer updates for model parameters ``positions``."""
        stacked = self.parameter_lists()
        return [stacked[i] for i in positions]

    @torch.no_grad()
    def couple_(self, params: list[torch.Tensor], strength: float) -> None:
        """g += strength · (W − W̄) on each stacked tensor: all replicas in one kernel each."""
        for p in params:
            if p.grad is not None:
                replica_coupling_(p.grad, p, stacked_center(p), strength)

    def parameter_lists(self) -> list[torch.Tensor]:
        """The stacked parameters, in the model's parameter order."""
        return list(self._stacked_params().values())

    def train(self, mode: bool = True) -> StackedReplicas:
        super().train(mode)
        self._template.train(mode)
        return self

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        self._template._apply(fn, recurse)
        return out

    def forward(self, x: torch.Tensor, *args, randomness: str = "different") -> torch.Tensor:
        """Run replica a on ``x[a]`` for every a, in one vmapped call."""
        if x.shape[0] != self._y:
            raise ValueError(f"Invalid input: leading dim {x.shape[0]} != y = {self._y}")
        template = self._template

        def one(params, buffers, xa, *rest):
            return functional_call(template, (params, buffers), (xa, *rest))

        return vmap(one, randomness=randomness)(
            self._stacked_params(), self._stacked_buffers(), x, *args
        )

    def losses(
        self,
        batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """Per-replica losses ``(y,)`` of ``loss_fn(replica_a(x_a), t_a)`` in one batched call."""
        if len(batches) != self._y:
            raise ValueError(f"Invalid batches: {len(batches)} given for y = {self._y} replicas")
        x = torch.stack([b[0] for b in batches])
        t = torch.stack([b[1] for b in batches])
        return vmap(loss_fn)(self(x), t)

    def nonfinite_replicas(self, params: list[torch.Tensor]) -> list[int]:
        """The replicas with a NaN/inf gradient: row a of a stacked gradient is replica a."""
        bad = set()
        for p in params:
            if p.grad is not None:
                rows = ~torch.isfinite(p.grad.reshape(self._y, -1)).all(1)
                bad.update(rows.nonzero().flatten().tolist())
        return sorted(bad)

    def _module_with(self, params: dict, buffers: dict) -> nn.Module:
        module = copy.deepcopy(self._template)
        with torch.no_grad():
            for name, p in module.named_parameters():
                p.copy_(params[name])
            for name, b in module.named_buffers():
                b.copy_(buffers[name])
        return module

    def replica(self, a: int) -> nn.Module:
        """``self[a]``: a live module for replica ``a``, its tensors sharing storage with row a.

        Its parameters are new leaf tensors over the rows of the stacked parameters (in-place
        writes change the engine), and a hook adds the gradient each one accumulates into row
        a of the stacked gradient, where the optimizer reads it; its buffers are the rows of
        the stacked buffers, so a training-mode forward updates replica a's BatchNorm
        statistics. The module is made on each call (cheap: no tensor is copied) and follows
        this engine's train/eval mode at that moment.
        """
        a = local_index(a, self._y, range(self._y))
        template = self._template
        memo: dict[int, object] = {}
        own = dict(template.named_parameters())
        for name, stacked in self._stacked_params().items():
            memo[id(own[name])] = _row_parameter(stacked, a)
        own = dict(template.named_buffers())
        for name, stacked in self._stacked_buffers().items():
            memo[id(own[name])] = stacked[a]
        return copy.deepcopy(template, memo).train(self.training)

    def __getitem__(self, a: int) -> nn.Module:
        return self.replica(a)

    def __iter__(self) -> Iterator[nn.Module]:
        """Live modules of the replicas, in order."""
        return (self.replica(a) for a in range(self._y))

    @torch.no_grad()
    def center_parameters(self) -> list[torch.Tensor]:
        """w̄ = w_0 + (1/y) Σ_a (w_a − w_0) per parameter (as :class:`Replicas`)."""
        return [stacked_center(p) for p in self.parameter_lists()]

    @torch.no_grad()
    def distances(self) -> torch.Tensor:
        """d(w_a, w̄) = ½ Σ_i (w_a,i − w̄_i)² for each replica, float64."""
        out = torch.zeros(self._y, dtype=torch.float64)
        for p in self.parameter_lists():
            diff = (p.detach() - stacked_center(p)).double()
            out += 0.5 * diff.pow(2).reshape(self._y, -1).sum(1).cpu()
        return out

    @torch.no_grad()
    def center(self) -> nn.Module:
        """The center w̄ as a plain module; float buffers averaged (see :meth:`Replicas.center`)."""
        params = dict(zip(self.param_names, self.center_parameters(), strict=True))
        buffers = {
            n: (b.mean(0) if b.is_floating_point() else b[0])
            for n, b in self._stacked_buffers().items()
        }
        return self._module_with(params, buffers)


def stacked_center(p: torch.Tensor) -> torch.Tensor:
    """The mean over the leading (replica) dim, as w_0 + mean(w_a − w_0)."""
    first = p.detach()[0]
    return first + (p.detach() - first).sum(0) / p.shape[0]


def _row_parameter(stacked: nn.Parameter, a: int) -> nn.Parameter:
    """A leaf parameter sharing storage with ``stacked[a]``; its gradients go to that row."""
    row = nn.Parameter(stacked.detach()[a], requires_grad=stacked.requires_grad)
    if row.requires_grad:

        def forward_grad(leaf: torch.Tensor) -> None:
            grad, leaf.grad = leaf.grad, None
            if stacked.grad is None:
                stacked.grad = torch.zeros_like(stacked)
            stacked.grad[a].add_(grad)

        row.register_post_accumulate_grad_hook(forward_grad)
    return row


def _key(name: str) -> str:
    return name.replace(".", "__")
