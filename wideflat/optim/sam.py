r"""Sharpness-Aware Minimization (SAM) as a wrapper around any base optimizer."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.optim import Optimizer

from .. import _validate as check
from .errors import MissingClosureError, NonFiniteLossError

__all__ = ["SAM"]


@torch.no_grad()
def _sam_perturbation(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    rhos: list[float],
    adaptive: list[bool],
) -> list[torch.Tensor]:
    r"""ε_i = ρ_i s_i ⊙ g_i / ‖s ⊙ g‖₂, s_i = |w_i| (adaptive, ASAM) or 1 (SAM); ε_i·s_i for ASAM.

    ρ_i and the adaptive flag are those of parameter i's group; the norm is one, over all
    parameters (as in Foret et al.), taken in float64. The tensors are real: the caller
    passes a complex parameter as its ``view_as_real``, as torch's optimizers treat it.
    A negative ρ gives the opposite point (used for ``maximize``).
    """
    scaled = [g * p.abs() if a else g for p, g, a in zip(params, grads, adaptive, strict=True)]
    norm = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(s.double()) for s in scaled])
    )
    norm = float(norm)
    if not math.isfinite(norm):
        raise NonFiniteLossError(
            f"non-finite gradient at w (norm {norm}) with a finite loss; nothing was updated"
        )
    return [
        (s * p.abs() if a else s) * (rho / (norm + 1e-12))
        for p, s, rho, a in zip(params, scaled, rhos, adaptive, strict=True)
    ]


def _real(t: torch.Tensor) -> torch.Tensor:
    return torch.view_as_real(t) if t.is_complex() else t


class SAM(Optimizer):
    r"""SAM: descend with the gradient taken at the worst point of a ρ-ball.

    One call to :meth:`step` is::

        g  = ∇L(w; B)                       first closure call
        ε  = ρ g / ‖g‖₂                     (adaptive: ε = ρ w² ⊙ g / ‖|w| ⊙ g‖₂)
        g' = ∇L(w + ε; B)                   second closure call, same minibatch B
        w  ← base_step(w, g')               e.g. SGD with momentum and weight decay

    The closure is called **twice per step and must use the same minibatch both times**
    (unlike :class:`~wideflat.optim.EntropySGD`, whose closure draws a fresh one); gradients
    are cleared before each call. One step therefore costs two minibatch gradients. The
    perturbation is global (one norm over all parameters of all groups, as in Foret et al.;
    each group scales it by its own ρ); ρ = 0 reproduces the base optimizer exactly.
    Deviation from the paper: none in the update; BatchNorm running statistics are updated
    by both forward passes unless the closure prevents it (the training runner freezes them
    on the second pass). Complex parameters count as their real view, as in torch's
    optimizers. Step hooks fire once per SAM step (the base optimizer's are not called).

    Args:
        params: parameters or parameter groups (ignored when ``base`` is an instance).
        base: the base optimizer class (default ``torch.optim.SGD``) or an instance.
        rho: radius ρ ≥ 0 of the neighbourhood.
        adaptive: ASAM's scale-invariant neighbourhood (Kwon et al., 2021).
        **base_kwargs: keyword arguments of the base class (``lr``, ``momentum``, ...).

    Example:
        >>> import torch
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> model = torch.nn.Linear(3, 1)
        >>> opt = SAM(model.parameters(), rho=0.05, lr=0.1, momentum=0.9)
        >>> x, t = torch.randn(16, 3), torch.randn(16, 1)
        >>> def closure():                  # the same minibatch on both calls
        ...     loss = torch.nn.functional.mse_loss(model(x), t)
        ...     loss.backward()
        ...     return loss
        >>> loss = opt.step(closure)        # loss at w, before the step

    Two-call form (as davda54/sam and pytorch_optimizer), for loops that cannot pass a
    closure (mixed precision, gradient accumulation, Lightning manual optimization)::

        loss_fn(model(x), t).backward(); opt.first_step(zero_grad=True)   # w → w + ε
        loss_fn(model(x), t).backward(); opt.second_step(zero_grad=True)  # back to w, step

    It gives the same update as :meth:`step` bit for bit. Between the two calls the
    parameters are at w + ε; :meth:`state_dict` refuses to save there.

    References:
        P. Foret, A. Kleiner, H. Mobahi, B. Neyshabur, "Sharpness-Aware Minimization for
        Efficiently Improving Generalization", ICLR 2021.
    """

    def __init__(
        self,
        params=None,
        base: type[Optimizer] | Optimizer = torch.optim.SGD,
        *,
        rho: float = 0.05,
        adaptive: bool = False,
        **base_kwargs: Any,
    ):
        check.non_negative("rho", rho)
        if isinstance(base, Optimizer):
            if base_kwargs:
                raise ValueError(
                    f"Invalid base_kwargs: {sorted(base_kwargs)} given with a base instance"
                )
            self.base = base
        elif isinstance(base, type) and issubclass(base, Optimizer):
            if params is None:
                raise ValueError("Invalid params: None (needed to build the base optimizer)")
            self.base = base(params, **base_kwargs)
        else:
            raise ValueError(f"Invalid base: {base!r} is not an Optimizer class or instance")
        # Wrap, don't fork: one param_groups list and one state shared with the base.
        defaults = {**self.base.defaults, "rho": rho, "adaptive": bool(adaptive)}
        super().__init__(self.base.param_groups, defaults)
        self.base.param_groups = self.param_groups
        self.base.state = self.state
        self._at_w: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # first_step's w

    def _params(self) -> list[torch.Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    def _params_with_groups(self):
        return [(p, g) for g in self.param_groups for p in g["params"]]

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)  # our defaults include the base's
        start = sum(len(g["params"]) for g in self.param_groups[:-1])
        check.dense_params(self.param_groups[-1]["params"], start)

    def __getstate__(self) -> dict[str, Any]:
        # torch.optim.Optimizer pickles only defaults/state/groups; the base must come too.
        return {**super().__getstate__(), "base": self.base}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._at_w = None
        if "base" in self.__dict__:  # re-share after load_state_dict / unpickling
            self.base.param_groups = self.param_groups
            self.base.state = self.state

    def state_dict(self) -> dict[str, Any]:
        if self._at_w is not None:
            raise RuntimeError(
                "SAM.state_dict between first_step and second_step: the parameters are at "
                "w + eps; call second_step first"
            )
        return super().state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._at_w = None
        super().load_state_dict(state_dict)
        self.base.param_groups = self.param_groups
        self.base.state = self.state
        # A state saved before torch added a key (maximize, foreach, fused, ...) lacks it.
        check.fill_group_defaults(self.param_groups, self.defaults)

    @torch.no_grad()
    def _perturb(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Move each parameter with a gradient to w + ε; return the (parameter, w) pairs.
        With ``maximize`` ε points the other way. Nothing moves if a gradient is NaN/inf."""
        params, rhos, adaptive = [], [], []
        for i, (p, group) in enumerate(self._params_with_groups()):
            if p.grad is not None:
                check.dense_grad(i, p.grad)
                params.append(p)
                rho = group["rho"]
                rhos.append(-rho if group.get("maximize") else rho)
                adaptive.append(group["adaptive"])
        moved: list[tuple[torch.Tensor, torch.Tensor]] = []
        if params and any(rhos):
            grads = [_real(p.grad) for p in params]
            params = [_real(p.detach()) for p in params]
            eps = _sam_perturbation(params, grads, rhos, adaptive)
            for p, e, rho in zip(params, eps, rhos, strict=True):
                if rho != 0:
                    # Keep w itself: (w + ε) − ε is not w bit for bit.
                    moved.append((p, p.clone()))
                    p.add_(e)
        return moved

    def first_step(self, zero_grad: bool = False) -> None:
        """Move to w + ε along the gradients ``backward()`` left at w (the first half of a
        step); ``zero_grad`` clears them after.

        Raises:
            RuntimeError: called twice without :meth:`second_step` in between.
            NonFiniteLossError: a gradient is NaN/inf; nothing moved.
        """
        if self._at_w is not None:
            raise RuntimeError("SAM.first_step called twice: call second_step after first_step")
        self._at_w = self._perturb()
        if zero_grad:
            self._clear_grads()

    def second_step(self, zero_grad: bool = False) -> None:
        """Return to w and take the base optimizer's step with the gradients ``backward()``
        left at w + ε (the second half); ``zero_grad`` clears them after.

        Raises:
            RuntimeError: called without :meth:`first_step` before it.
            NonFiniteLossError: a gradient at w + ε is NaN/inf; w is restored, no step.
        """
        if self._at_w is None:
            raise RuntimeError("SAM.second_step without first_step: call first_step first")
        with torch.no_grad():
            for p, w in self._at_w:
                p.copy_(w)
        self._at_w = None
        grads = [p.grad for p in self._params() if p.grad is not None]
        if not check.all_finite(grads):
            self._clear_grads()
            raise NonFiniteLossError(
                "non-finite gradient at w + eps; w is restored and nothing was updated"
            )
        check.step_without_hooks(self.base)
        if zero_grad:
            self._clear_grads()

    def _clear_grads(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def step(self, closure: Callable[[], Any] | None = None):  # type: ignore[override]
        """One SAM step; returns the loss of the first closure call (at w).

        With ``maximize`` (a base optimizer setting) the perturbation points the other way,
        ε = −ρ g/‖g‖, so maximizing L is exactly minimizing −L.

        Raises:
            MissingClosureError: no closure given.
            NonFiniteLossError: a closure returned NaN/inf, or a gradient is NaN/inf; the
                parameters are restored and nothing is updated.
            ValueError: a sparse gradient, naming the parameter.

            If the closure raises, the parameters are restored before the exception
            propagates; the base optimizer has not stepped.
        """
        if self._at_w is not None:
            raise RuntimeError("SAM.step between first_step and second_step: finish with "
                               "second_step first")  # fmt: skip
        if closure is None:
            raise MissingClosureError(
                "SAM.step needs a closure that computes the loss on one minibatch and calls "
                "backward(); it is called twice with the same minibatch"
            )
        self._clear_grads()
        with torch.enable_grad():
            loss = closure()
        if not check.finite_loss(loss):
            value = float(torch.as_tensor(loss).detach())
            raise NonFiniteLossError(f"non-finite loss {value} at w; nothing was updated")
        moved: list[tuple[torch.Tensor, torch.Tensor]] = []  # (parameter, its w)
        try:
            moved = self._perturb()
            self._clear_grads()
            with torch.enable_grad():
                second = closure()
        except BaseException:
            self._clear_grads()
            raise
        finally:
            with torch.no_grad():
                for p, w in moved:
                    p.copy_(w)
        if not check.finite_loss(second):
            self._clear_grads()
            raise NonFiniteLossError(
                f"non-finite loss {float(torch.as_tensor(second).detach())} at w + eps; "
                "nothing was updated"
            )
        grads = [p.grad for p in self._params() if p.grad is not None]
        if not check.all_finite(grads):
            self._clear_grads()
            raise NonFiniteLossError(
                "non-finite gradient at w + eps with a finite loss; nothing was updated"
            )
        check.step_without_hooks(self.base)
        return loss

    def __repr__(self) -> str:
        g = self.param_groups[0]
        return f"SAM(base={type(self.base).__name__}, rho={g['rho']}, adaptive={g['adaptive']})"
