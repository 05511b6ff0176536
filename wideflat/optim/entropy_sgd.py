"""Entropy-SGD (Chaudhari et al., 2019; Algorithm 1 of Pittorino et al., ICLR 2021)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.optim import Optimizer

from .. import _rng
from . import _validate as check
from .errors import MissingClosureError, NonFiniteLossError

_SGD_KEYS = ("momentum", "dampening", "nesterov", "weight_decay")


class EntropySGD(Optimizer):
    r"""Entropy-SGD: SGD on the local entropy, with an SGLD inner loop.

    One call to :meth:`step` performs one outer iteration of Algorithm 1::

        w', μ ← w
        repeat L times:
            g' ← ∇L(w'; Ξ) + γ (w' − w)              # closure draws a fresh minibatch Ξ
            w' ← inner_step(w', g')                    # SGD(lr=η', momentum, wd) by default
            w' ← w' + √η' · ε · N(0, I)                # Langevin noise, after the inner step
            μ  ← α μ + (1 − α) w'
        w ← outer_step(w, g = w − μ)                   # SGD(lr=η, momentum, wd) by default

    With plain SGD outside, the last line is ``w ← w − η (w − μ)``, a step along the
    local-entropy gradient ∇L_LE(w) = γ (w − ⟨w'⟩) with ⟨w'⟩ estimated by μ.

    Conventions pinned here (the reference code varies, ucla-vision/entropy-sgd#2, #5):
    the noise is ``√η'·ε·N(0, I)``, added *after* the inner optimizer's update; the
    running mean weights the *old* mean by α. Weight decay is applied by the inner and
    by the outer optimizer, once each, as in the paper's deep-network runs; the coupling
    and the noise never see it.

    Special cases: ε = 0 gives an approximate proximal step; ε = α = γ = 0 is Lookahead
    (Zhang et al., 2019) with k = L fast steps and slow step size η.

    The inner optimizer keeps its state (e.g. momentum) across outer iterations, like
    Lookahead's fast optimizer. Both optimizers may be any ``torch.optim`` class that
    treats parameters independently; the outer one shares this optimizer's
    ``param_groups`` (so ``lr`` and LR schedulers act on η), the inner one takes its
    learning rate from each group's ``inner_lr``.

    Args:
        params: parameters or parameter groups, as for any torch optimizer.
        lr: outer learning rate η.
        inner_lr: SGLD learning rate η'.
        inner_steps: number L of inner steps; the closure is called exactly L times per step.
        gamma: coupling γ between w' and w (a focusing scheduler may change it).
        alpha: running-mean factor α in [0, 1].
        noise: Langevin noise scale ε (the paper uses 1e-4).
        momentum, dampening, nesterov, weight_decay: SGD settings used by both loops
            (passed to any other optimizer class that accepts them).
        outer, inner: optimizer classes for the two updates (default ``torch.optim.SGD``).
        outer_kwargs, inner_kwargs: extra keyword arguments for those classes; they win
            over the shared settings (e.g. ``inner_kwargs={"weight_decay": 0}``).
        seed: seed of the Langevin-noise generator (default: drawn from torch's global RNG).
        check_finite: verify each closure loss is finite; on a NaN/inf the step is rolled
            back (parameters and every optimizer state as before) and
            :class:`~wideflat.optim.errors.NonFiniteLossError` is raised.

    Example:
        >>> import torch
        >>> from wideflat.optim import EntropySGD
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> model = torch.nn.Linear(4, 1)
        >>> opt = EntropySGD(model.parameters(), lr=0.5, inner_lr=0.1, inner_steps=5,
        ...                  gamma=0.03, momentum=0.9, nesterov=True)
        >>> x, t = torch.randn(64, 4), torch.randn(64, 1)
        >>> def closure():                     # called L times per step
        ...     i = torch.randint(0, 64, (16,))  # a fresh minibatch each call
        ...     loss = torch.nn.functional.mse_loss(model(x[i]), t[i])
        ...     loss.backward()
        ...     return loss
        >>> loss = opt.step(closure)           # the loss at w, before the step

    References:
        P. Chaudhari et al., "Entropy-SGD: biasing gradient descent into wide valleys",
        J. Stat. Mech. 2019. F. Pittorino et al., "Entropic gradient descent algorithms
        and wide flat minima", ICLR 2021, Algorithm 1.
    """

    def __init__(
        self,
        params,
        lr: float,
        *,
        inner_lr: float,
        inner_steps: int = 5,
        gamma: float = 0.03,
        alpha: float = 0.75,
        noise: float = 1e-4,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        outer: type[Optimizer] = torch.optim.SGD,
        inner: type[Optimizer] = torch.optim.SGD,
        outer_kwargs: dict[str, Any] | None = None,
        inner_kwargs: dict[str, Any] | None = None,
        seed: int | None = None,
        check_finite: bool = True,
    ):
        check.non_negative("lr", lr)
        check.non_negative("inner_lr", inner_lr)
        check.positive_int("inner_steps", inner_steps)
        check.non_negative("gamma", gamma)
        check.in_unit_interval("alpha", alpha)
        check.non_negative("noise", noise)
        check.sgd_settings(momentum, dampening, nesterov, weight_decay)
        check.coupling_step("inner_lr * gamma", inner_lr * gamma)
        for name, cls in (("outer", outer), ("inner", inner)):
            if not (isinstance(cls, type) and issubclass(cls, Optimizer)):
                raise ValueError(f"Invalid {name}: {cls!r} is not a torch.optim.Optimizer class")
        shared = dict(
            momentum=momentum, dampening=dampening, nesterov=nesterov, weight_decay=weight_decay
        )
        outer_args = check.base_kwargs(outer, shared, outer_kwargs)
        self._inner_args = check.base_kwargs(inner, shared, inner_kwargs)
        self._inner_overrides = dict(inner_kwargs or {})
        defaults = dict(
            lr=lr,
            inner_lr=inner_lr,
            inner_steps=inner_steps,
            gamma=gamma,
            alpha=alpha,
            noise=noise,
            **{k: v for k, v in outer_args.items() if k != "lr"},
        )
        super().__init__(params, defaults)
        check.real_dense_params([p for g in self.param_groups for p in g["params"]])
        # Wrap, don't fork: the outer optimizer shares our groups (lr, momentum, schedulers
        # act on it); its per-parameter state is its own and nests in our state_dict, since
        # optimizers such as Adam initialize a parameter's state only while it is empty.
        self.outer = outer(
            self.param_groups, lr=lr, **{k: v for k, v in outer_args.items() if k != "lr"}
        )
        self.outer.param_groups = self.param_groups
        self.inner = inner(
            [self._inner_group(g) for g in self.param_groups], lr=inner_lr, **self._inner_args
        )
        self.check_finite = check_finite
        self._noise = _rng.DeviceGenerators(_rng.seed_from_global() if seed is None else seed)
        self._steps = 0

    def _inner_group(self, group: dict[str, Any]) -> dict[str, Any]:
        # A group's own SGD settings reach the inner optimizer, unless inner_kwargs set them.
        shared = {k: group[k] for k in _SGD_KEYS if k in group and k in self._inner_args}
        return {
            **self._inner_args,
            **shared,
            **self._inner_overrides,
            "params": group["params"],
            "lr": group["inner_lr"],
        }

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        if hasattr(self, "inner"):  # groups added after construction reach both loops
            self.inner.add_param_group(self._inner_group(self.param_groups[-1]))

    def __getstate__(self) -> dict[str, Any]:
        # torch.optim.Optimizer pickles only defaults/state/groups; keep our parts too.
        extra = (
            "outer",
            "inner",
            "check_finite",
            "_noise",
            "_steps",
            "_inner_args",
            "_inner_overrides",
        )
        return {**super().__getstate__(), **{k: self.__dict__[k] for k in extra}}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if "outer" in self.__dict__:  # re-share after load_state_dict / unpickling
            self.outer.param_groups = self.param_groups

    def state_dict(self) -> dict[str, Any]:
        sd = super().state_dict()  # our groups + per-parameter state (the means μ)
        sd["outer"] = self.outer.state_dict()
        sd["inner"] = self.inner.state_dict()
        sd["entropy_sgd"] = {"steps": self._steps, "noise_rng": self._noise.state_dict()}
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        for key in ("outer", "inner", "entropy_sgd"):
            if key not in state_dict:
                raise ValueError(f"Invalid state_dict: missing {key!r} (not an EntropySGD state)")
        outer_sd = state_dict.pop("outer")
        inner_sd = state_dict.pop("inner")
        extra = state_dict.pop("entropy_sgd")
        super().load_state_dict(state_dict)
        self.outer.load_state_dict(outer_sd)
        self.outer.param_groups = self.param_groups  # one list of groups, ours
        self.inner.load_state_dict(inner_sd)
        self._steps = int(extra["steps"])
        self._noise.load_state_dict(extra["noise_rng"])

    @property
    def steps(self) -> int:
        """Number of completed outer steps."""
        return self._steps

    def mean_distance(self) -> float:
        """d(w, μ) = ½ Σ (w − μ)² after the last step (the paper's eSGD stopping quantity)."""
        total = 0.0
        for group in self.param_groups:
            for p in group["params"]:
                mu = self.state[p].get("mean")
                if mu is not None:
                    total += 0.5 * float((p.detach() - mu).pow(2).sum())
        return total

    # -- the algorithm -----------------------------------------------------------------
    def _run_inner(self, closure: Callable, gamma_override: float | None = None):
        """Run the L inner steps from w; the parameters end at w'.

        Returns (first loss, params, anchors w, means μ, indices of params that got a grad).

        On a non-finite loss everything this call changed is restored before raising.
        """
        steps = {g["inner_steps"] for g in self.param_groups}
        if len(steps) != 1:
            raise ValueError(f"Invalid inner_steps: groups disagree ({sorted(steps)}); one closure")
        n_inner = steps.pop()
        params = [p for g in self.param_groups for p in g["params"]]
        with torch.no_grad():
            anchors = [p.detach().clone() for p in params]  # w
            means = [a.clone() for a in anchors]  # μ
        saved = self._snapshot() if self.check_finite else None
        for inner_group, group in zip(self.inner.param_groups, self.param_groups, strict=True):
            inner_group["lr"] = group["inner_lr"]
        touched: set[int] = set()
        first_loss = None
        for step in range(n_inner):
            for p in params:
                p.grad = None
            with torch.enable_grad():
                loss = closure()
            if self.check_finite and not check.finite_loss(loss):
                self._restore(params, anchors, saved)
                raise NonFiniteLossError(
                    f"non-finite loss {float(loss)} from the closure at inner step {step + 1} "
                    f"of {n_inner} (outer step {self._steps + 1}); the step was rolled back"
                )
            if first_loss is None:
                first_loss = loss
            with torch.no_grad():
                _esgd_inner_update(
                    self.param_groups,
                    self.inner,
                    params,
                    anchors,
                    means,
                    touched,
                    self._noise,
                    gamma_override,
                )
        return first_loss, params, anchors, means, touched

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        """One outer iteration of Entropy-SGD.

        Args:
            closure: called exactly ``inner_steps`` times; each call must draw a *fresh*
                minibatch, compute the loss, call ``backward()`` and return the loss
                (unlike LBFGS, whose closure re-evaluates the same batch). Gradients are
                cleared before each call, so the closure need not zero them.

        Returns:
            The first closure's return value: the loss at w before the step.
        """
        if closure is None:
            raise MissingClosureError(
                "EntropySGD.step requires a closure that draws a fresh minibatch, computes "
                "the loss, calls backward() and returns the loss"
            )
        first_loss, params, anchors, means, touched = self._run_inner(closure)
        # Outer update: w ← outer_step(w, g = w − μ). Parameters that never received a
        # gradient in the inner loop keep grad None and are skipped, as torch optimizers do.
        torch._foreach_copy_(params, anchors)
        live = sorted(touched)
        grads = torch._foreach_sub([anchors[i] for i in live], [means[i] for i in live])
        for i, g in zip(live, grads, strict=True):
            params[i].grad = g
        for p, mu in zip(params, means, strict=True):
            self.state[p]["mean"] = mu
        self.outer.step()
        for p in params:
            p.grad = None
        self._steps += 1
        return first_loss

    # -- rollback support --------------------------------------------------------------
    def _snapshot(self):
        def clone(value):
            return value.clone() if isinstance(value, torch.Tensor) else value

        inner_state = {p: {k: clone(v) for k, v in s.items()} for p, s in self.inner.state.items()}
        return inner_state, self._noise.state_dict()

    def _restore(self, params, anchors, saved) -> None:
        with torch.no_grad():
            for p, w in zip(params, anchors, strict=True):
                p.copy_(w)
                p.grad = None
        inner_state, noise_state = saved
        self.inner.state.clear()
        self.inner.state.update(inner_state)
        self._noise.load_state_dict(noise_state)


def _esgd_inner_update(groups, inner, params, anchors, means, touched, noise_gens, gamma_override):
    """One SGLD step on every group, in place on ``params`` (the w').

    g' = ∇L(w') + γ (w' − w); w' ← inner_step(w', g'); w' += √η' ε ξ; μ ← α μ + (1 − α) w'.
    Lists are processed with foreach kernels, one call per group and device.
    """
    offset = 0
    coupled = []
    for group in groups:
        n = len(group["params"])
        idx = range(offset, offset + n)
        offset += n
        with_grad = [i for i in idx if params[i].grad is not None]
        touched.update(with_grad)
        gamma = group["gamma"] if gamma_override is None else gamma_override
        if gamma != 0 and with_grad:
            # g' += γ (w' − w), as two in-place passes (no temporary the size of the model)
            grads = [params[i].grad for i in with_grad]
            torch._foreach_add_(grads, [params[i] for i in with_grad], alpha=gamma)
            torch._foreach_add_(grads, [anchors[i] for i in with_grad], alpha=-gamma)
        coupled.append((group, with_grad))
    inner.step()
    for group, with_grad in coupled:
        if not with_grad:
            continue
        ps = [params[i] for i in with_grad]
        scale = math.sqrt(group["inner_lr"]) * group["noise"]
        if scale != 0:
            _add_gaussian_(ps, scale, noise_gens)
        torch._foreach_lerp_([means[i] for i in with_grad], ps, 1.0 - group["alpha"])


def _add_gaussian_(params: list[torch.Tensor], scale: float, gens: _rng.DeviceGenerators) -> None:
    """params += scale · N(0, I), one flat draw per (device, dtype) from the device's stream."""
    buckets: dict[tuple, list[torch.Tensor]] = {}
    for p in params:
        buckets.setdefault((p.device, p.dtype), []).append(p)
    for (device, dtype), ps in buckets.items():
        sizes = [p.numel() for p in ps]
        flat = torch.randn(sum(sizes), generator=gens.get(device), device=device, dtype=dtype)
        pieces = [x.view_as(p) for x, p in zip(flat.split(sizes), ps, strict=True)]
        torch._foreach_add_(ps, pieces, alpha=scale)
