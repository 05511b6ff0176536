r"""Sharpness-Aware Minimization (SAM) as a wrapper around any base optimizer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.optim import Optimizer

from . import _validate as check
from .errors import MissingClosureError, NonFiniteLossError


@torch.no_grad()
def _sam_perturbation(
    params: list[torch.Tensor], grads: list[torch.Tensor], rho: float, adaptive: bool
) -> list[torch.Tensor]:
    r"""ε = ρ s ⊙ g / ‖s ⊙ g‖₂ with s = |w| (adaptive, ASAM) or s = 1 (SAM); ε·s for ASAM."""
    scaled = [g * p.abs() if adaptive else g for p, g in zip(params, grads, strict=True)]
    norm = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(s.double()) for s in scaled])
    )
    scale = rho / (float(norm) + 1e-12)
    return [(s * p.abs() if adaptive else s) * scale for p, s in zip(params, scaled, strict=True)]


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
    perturbation is global (one norm over all parameters, as in Foret et al.); ρ = 0
    reproduces the base optimizer exactly. Deviation from the paper: none in the update;
    BatchNorm running statistics are updated by both forward passes unless the closure
    prevents it (the training runner freezes them on the second pass).

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

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if "base" in self.__dict__:  # re-share after load_state_dict / unpickling
            self.base.param_groups = self.param_groups
            self.base.state = self.state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.base.param_groups = self.param_groups
        self.base.state = self.state

    def _clear_grads(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def step(self, closure: Callable[[], Any] | None = None):  # type: ignore[override]
        """One SAM step; returns the loss of the first closure call (at w).

        Raises:
            MissingClosureError: no closure given.
            NonFiniteLossError: a closure returned NaN/inf; the parameters are restored
                and nothing is updated.
        """
        if closure is None:
            raise MissingClosureError(
                "SAM.step needs a closure that computes the loss on one minibatch and calls "
                "backward(); it is called twice with the same minibatch"
            )
        self._clear_grads()
        with torch.enable_grad():
            loss = closure()
        if not check.finite_loss(loss):
            raise NonFiniteLossError(f"non-finite loss {float(loss)} at w; nothing was updated")
        moved = []
        with torch.no_grad():
            for group in self.param_groups:
                params = [p for p in group["params"] if p.grad is not None]
                if group["rho"] == 0 or not params:
                    continue
                eps = _sam_perturbation(
                    params, [p.grad for p in params], group["rho"], group["adaptive"]
                )
                # Keep w itself: (w + ε) − ε is not w bit for bit.
                moved.append((params, [p.detach().clone() for p in params]))
                for p, e in zip(params, eps, strict=True):
                    p.add_(e)
        self._clear_grads()
        with torch.enable_grad():
            second = closure()
        with torch.no_grad():
            for params, saved in moved:
                for p, w in zip(params, saved, strict=True):
                    p.copy_(w)
        if not check.finite_loss(second):
            self._clear_grads()
            raise NonFiniteLossError(
                f"non-finite loss {float(second)} at w + eps; nothing was updated"
            )
        self.base.step()
        return loss

    def __repr__(self) -> str:
        g = self.param_groups[0]
        return f"SAM(base={type(self.base).__name__}, rho={g['rho']}, adaptive={g['adaptive']})"
