"""Entropy-SGD (Chaudhari et al., 2019; Algorithm 1 of Pittorino et al., ICLR 2021)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.amp import GradScaler
from torch.optim import Optimizer

from .. import _rng
from .. import _validate as check
from .._kernels import esgd_coupling_, local_entropy_grad_, running_mean_
from . import _amp
from ._closures import lightning_closure_problem
from ._esgd_noise import NoiseDraw as _NoiseDraw
from ._esgd_scratch import Scratch as _Scratch
from .errors import MissingClosureError, NonFiniteLossError

__all__ = ["EntropySGD", "auto_gamma0_esgd"]

_SGD_KEYS = ("momentum", "dampening", "nesterov", "weight_decay")
_CONVENTIONS = ("paper", "original")


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

    Conventions. ``convention="paper"`` (the default) is Algorithm 1 as printed; the
    reference code varies (ucla-vision/entropy-sgd#2, #5). The noise is ``√η'·ε·N(0, I)``,
    added *after* the inner optimizer's update; the running mean weights the *old* mean by
    α. Weight decay is applied by the inner and by the outer optimizer, once each, as in the
    paper's deep-network runs; the coupling and the noise never see it. The inner
    optimizer keeps its state (e.g. momentum) across outer iterations, like Lookahead's
    fast optimizer. ``convention="original"`` follows the original Entropy-SGD code
    (ucla-vision/entropy-sgd, ``python/optim.py``). With SGD inside (momentum m,
    dampening d, weight decay λ, buffer v), one inner step reads::

        paper:     g' = ∇L(w') + λ w' + γ (w' − w)     v ← m v + (1 − d) g'
                   w' ← w' − η' (g' + m v  [Nesterov]  or  v)  +  √η' ε ξ
        original:  v ← 0 at the start of every outer step
                   g' = ∇L(w') + λ w'                  v ← m v + (1 − d) g'
                   w' ← w' − η' (g' + m v  [Nesterov]  or  v)  −  η' γ (w' − w)  +  √(2η') ε ξ

    (ξ ~ N(0, I); the original code subtracts its noise, the same in law). In both, the outer
    optimizer then steps w on g = w − μ (adding its own λ w and its momentum, which persists
    across outer steps); ``outer_gamma_scaled=True`` hands it ``γ (w − μ)`` instead, the
    local-entropy gradient itself, as in Chaudhari et al.'s Algorithm 1 (η γ (w − μ)).

    The differences (l. = line of ``python/optim.py`` at ucla-vision/entropy-sgd 61329f9):

    =====================  =========================  ==========================  ==========
    quantity               ``"paper"`` (default)      ``"original"``              source
    =====================  =========================  ==========================  ==========
    inner optimizer state  kept across outer steps    reset every outer step      l.56
    coupling γ (w' − w)    in g', through momentum    added after the momentum    l.71-80
    Langevin noise on w'   √η' ε ξ (Alg. 1 l.6)       √(2η') ε ξ                  l.80, l.83
    outer gradient         w − μ (Alg. 1 l.8)         w − μ                       l.90
    =====================  =========================  ==========================  ==========

    The code behind it: l.56 ``lp['mdw'][i].zero_()``; l.72-76 the momentum on
    ``dw = ∇L + λ w'``, then l.80 ``dw.add_(-g, wc-w.data).add_(eps/np.sqrt(0.5*llr), eta)``
    and l.83 ``w.data.add_(-llr, dw)``, i.e. a noise of η' ε / √(η'/2) = ε √(2η'); l.90
    ``w.grad.data.copy_(w.data-lp['mw'][i])``, with no γ.

    ``outer_gamma_scaled`` (default False under both, since the original code does not scale
    either) switches the last row to γ (w − μ). Shared by both conventions, as in the original
    code: w', μ ← w at every outer step (l.54-55), μ ← α μ + (1 − α) w' with α = 0.75 weighting
    the old mean (l.84), weight decay before the momentum in both loops (l.69-70, l.95-96), an
    outer momentum that persists (l.92-104). Not reproduced, being artefacts rather than choices:
    the inner learning rate and α hard-coded to 0.1 and 0.75 (l.49-50); γ never focused (l.61
    reads ``state['t']``, which nothing increments); an extra closure call at w (l.22: L + 1
    calls); the outer momentum buffer started from that call's gradient (l.44); and, without
    Nesterov, ``dw = mdw`` (l.76) aliasing the buffer so that the coupling and the noise pile
    up in it. Under ``"original"`` the reset clears the inner optimizer's state, so torch's
    SGD restarts with v = g' where the original code has v = (1 − d) g' (equal for d = 0, its
    default). With another inner optimizer (Adam, ...) the coupling bypasses its scaling too.

    Which to use: ``"paper"`` reproduces Pittorino et al.'s Algorithm 1 and every earlier
    wideflat run, bit for bit. ``"original"`` compares with results from the ucla-vision code
    (Chaudhari et al.'s experiments): its fresh inner momentum does not carry the previous
    loop's drift into the new loop from w, and its noise is √2 larger. ``outer_gamma_scaled``
    gives an outer step η γ (w − μ) that grows with focusing; divide η by γ0 to start from the
    same step as the unscaled version.

    Special cases: ε = 0 gives an approximate proximal step; ε = α = γ = 0 is Lookahead
    (Zhang et al., 2019) with k = L fast steps and slow step size η (``"paper"``; under
    ``"original"`` the fast optimizer's momentum restarts every k steps).

    Both optimizers may be any ``torch.optim`` class that treats parameters independently;
    the outer one shares this optimizer's ``param_groups`` (so ``lr`` and LR schedulers act
    on η), the inner one takes its learning rate from each group's ``inner_lr``.

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
        maximize: maximize the closure's objective; exactly equivalent to minimizing its
            negative (the coupling keeps pulling w' towards w, the outer step towards μ).
            Both optimizer classes must accept ``maximize``.
        outer, inner: optimizer classes for the two updates (default ``torch.optim.SGD``).
        outer_kwargs, inner_kwargs: extra keyword arguments for those classes; they win
            over the shared settings (e.g. ``inner_kwargs={"weight_decay": 0}``).
        seed: seed of the Langevin-noise generators (default: drawn from torch's global
            RNG). On an accelerator the noise is the device's ``torch.randn`` stream for that
            seed; on CPU its blocks of 65,536 numbers come from separate streams (the first
            is ``torch.randn``'s), so that torch's threads can draw them in parallel: the
            same numbers with any number of threads.
        check_finite: verify each closure loss, and the parameters once after the inner
            loop (one fused check, which catches a NaN/inf gradient behind a finite loss);
            on a NaN/inf the step is rolled back (parameters and every optimizer state as
            before) and :class:`~wideflat.optim.errors.NonFiniteLossError` is raised.
        convention: ``"paper"`` (Algorithm 1 as printed) or ``"original"`` (the original
            Entropy-SGD code: inner state reset every outer step, coupling after the
            momentum, noise √(2η') ε); see the table above. Stored in each param group.
        outer_gamma_scaled: hand the outer optimizer γ (w − μ) instead of w − μ (either
            convention). Stored in each param group.

    A step is all or nothing: whatever interrupts the inner loop (a NaN, an exception
    from the closure such as ``StopIteration`` from an exhausted loader, ``Ctrl-C``)
    leaves the parameters, both optimizers' states and the noise generator as they were,
    so the next step is the one an uninterrupted run would take. Step hooks (the
    optimizer's own and torch's global ones) fire once per outer step; the wrapped
    optimizers' hooks are not called.

    Threads. torch's CPU generator is serial and the Langevin draw is most of eSGD's extra
    cost, so on CPU the noise of an inner step comes in blocks of 65,536 numbers, each from
    its own stream. When torch's intra-op threads leave a core free, a worker thread draws
    it (≥ 65,536 numbers) while the closure runs on the calling thread; otherwise torch's
    OpenMP threads draw the blocks in parallel after the closure. The bits are those of
    drawing the blocks one by one after the closure (the draw is redone when the closure
    leaves a parameter that requires a gradient without one), so results depend neither
    on the threads nor on ``torch.set_num_threads``.

    Mixed precision. Run the closure's forward pass under ``torch.autocast`` (bfloat16 on
    CPU; float16 or bfloat16 on CUDA). The parameters, both optimizers' states, μ, the
    coupling and the noise stay in the parameters' dtype (float32): only the closure runs in
    low precision. For float16, pass a ``torch.amp.GradScaler`` to :meth:`step` (not
    ``scaler.step(opt, closure)``: GradScaler refuses closures, and it would check and
    unscale the gradients before the closure has computed them). The closure backpropagates
    the scaled loss and returns the unscaled one; call ``scaler.update()`` after every step,
    as after ``scaler.step(opt)``::

        scaler = torch.amp.GradScaler("cuda")
        def closure():
            x, t = next(batches)                  # a fresh minibatch per inner step
            with torch.autocast("cuda", dtype=torch.float16):
                loss = F.cross_entropy(model(x), t)
            scaler.scale(loss).backward()
            return loss
        loss = opt.step(closure, scaler=scaler)
        scaler.update()

    Each inner step's gradient is unscaled (g ← g/s, with GradScaler's kernel) before the
    coupling is added, so with a power-of-two scale the trajectory is bit for bit the
    unscaled one. If any of the L gradients holds a NaN/inf, the whole outer step is skipped,
    as GradScaler skips ``optimizer.step()``: it is rolled back like an interrupted step
    (:attr:`steps` does not move), the scaler is told of the inf, and ``scaler.update()``
    shrinks the scale by its backoff factor. A non-finite *loss* still raises
    :class:`~wideflat.optim.errors.NonFiniteLossError` (``check_finite``), since a smaller
    scale cannot cure it; with ``check_finite=False`` the scaler alone decides. An autocast
    region may also enclose ``step()``: torch keeps its casts of the parameters until the
    outermost region exits, so the optimizer drops them before each closure call, and every
    forward pass reads the current w'.

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
        >>> scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
        >>> def amp_closure():                 # autocast forward, scaled backward
        ...     i = torch.randint(0, 64, (16,))
        ...     with torch.autocast("cpu", dtype=torch.bfloat16):
        ...         loss = torch.nn.functional.mse_loss(model(x[i]), t[i])
        ...     scaler.scale(loss).backward()
        ...     return loss
        >>> loss = opt.step(amp_closure, scaler=scaler)
        >>> scaler.update()
        >>> opt.steps, scaler.get_scale(), model.weight.dtype
        (2, 1024.0, torch.float32)
        >>> ucla = EntropySGD(model.parameters(), lr=0.5, inner_lr=0.1, convention="original")
        >>> ucla.param_groups[0]["convention"], ucla.param_groups[0]["outer_gamma_scaled"]
        ('original', False)

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
        maximize: bool = False,
        outer: type[Optimizer] = torch.optim.SGD,
        inner: type[Optimizer] = torch.optim.SGD,
        outer_kwargs: dict[str, Any] | None = None,
        inner_kwargs: dict[str, Any] | None = None,
        seed: int | None = None,
        check_finite: bool = True,
        convention: str = "paper",
        outer_gamma_scaled: bool = False,
    ):
        _check_convention(convention)
        _check_outer_gamma_scaled(outer_gamma_scaled)
        check.non_negative("lr", lr)
        check.non_negative("inner_lr", inner_lr)
        check.positive_int("inner_steps", inner_steps)
        check.non_negative("gamma", gamma)
        check.in_unit_interval("alpha", alpha)
        check.non_negative("noise", noise)
        check.sgd_settings(momentum, dampening, nesterov, weight_decay)
        check.coupling_step("inner_lr * gamma", inner_lr * gamma)
        for name, cls, kwargs in (("outer", outer, outer_kwargs), ("inner", inner, inner_kwargs)):
            if not (isinstance(cls, type) and issubclass(cls, Optimizer)):
                raise ValueError(f"Invalid {name}: {cls!r} is not a torch.optim.Optimizer class")
            if "maximize" in (kwargs or {}):
                raise ValueError(
                    f"Invalid {name}_kwargs: 'maximize' concerns both loops (the coupling and "
                    "the outer step change sign with it); pass maximize=True to EntropySGD"
                )
        shared = dict(
            momentum=momentum,
            dampening=dampening,
            nesterov=nesterov,
            weight_decay=weight_decay,
            maximize=bool(maximize),
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
            convention=convention,
            outer_gamma_scaled=outer_gamma_scaled,
            **{k: v for k, v in outer_args.items() if k != "lr"},
        )
        super().__init__(params, defaults)
        check.real_dense_params(self._params())
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
        self._scratch: _Scratch | None = None

    def _params(self) -> list[torch.Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    def _inner_group(self, group: dict[str, Any]) -> dict[str, Any]:
        # A group's own SGD settings reach the inner optimizer, unless inner_kwargs set them.
        if group.get("maximize") and "maximize" not in self._inner_args:
            raise ValueError("Invalid maximize: True, but the inner optimizer has no maximize")
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
        _check_group(self.param_groups[-1])
        if "inner" in self.__dict__:  # a group added after construction reaches both loops
            start = sum(len(g["params"]) for g in self.param_groups[:-1])
            check.real_dense_params(self.param_groups[-1]["params"], start)
            # The outer optimizer steps our groups: give the new one its keys (fused, ...).
            check.fill_group_defaults(self.param_groups[-1:], self.outer.defaults)
            self.inner.add_param_group(self._inner_group(self.param_groups[-1]))

    def __getstate__(self) -> dict[str, Any]:
        # torch.optim.Optimizer pickles only defaults/state/groups; keep our parts too
        # (not the scratch buffers, rebuilt on the next step).
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
        for group in self.param_groups:  # pickled before the switches existed
            group.setdefault("convention", "paper")
            group.setdefault("outer_gamma_scaled", False)
        self._scratch = None
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
        for group in self.param_groups:  # saved before the switches existed: today's default
            group.setdefault("convention", "paper")
            group.setdefault("outer_gamma_scaled", False)
            _check_group(group)
        self.outer.load_state_dict(outer_sd)
        self.outer.param_groups = self.param_groups  # one list of groups, ours
        self.inner.load_state_dict(inner_sd)
        # A state saved before torch added a key (maximize, foreach, fused, ...) lacks it.
        check.fill_group_defaults(self.param_groups, {**self.outer.defaults, **self.defaults})
        check.fill_group_defaults(self.inner.param_groups, self.inner.defaults)
        self._steps = int(extra["steps"])
        self._noise.load_state_dict(extra["noise_rng"])

    @property
    def steps(self) -> int:
        """Number of completed outer steps."""
        return self._steps

    def mean_distance(self) -> float:
        """d(w, μ) = ½ Σ (w − μ)² after the last step (the paper's eSGD stopping quantity),
        accumulated in float64 (a float32 sum's rounding depends on the reduction order)."""
        total = 0.0
        for group in self.param_groups:
            for p in group["params"]:
                mu = self.state[p].get("mean")
                if mu is not None:
                    diff = p.detach().double() - mu.double()
                    total += 0.5 * float(diff.pow(2).sum())
        return total

    def probe_inner_loop(self, closure: Callable, gamma: float = 0.0) -> tuple[float, float]:
        """Run one inner loop from the current w with coupling ``gamma``, then undo it.

        Returns ``(L(w), d(w', w))``: the first closure's loss and ½‖w' − w‖² at the loop's
        end point w'. The parameters, their gradients, the inner optimizer's state and the
        noise generator are restored, and the step count does not move; only the closure's
        own side effects remain (e.g. a data iterator advancing). :func:`auto_gamma0_esgd`
        uses it with γ = 0. The closure must not scale its loss (no GradScaler here);
        autocast is fine.
        """
        check.non_negative("gamma", gamma)
        saved = self._snapshot()
        first_loss, params, anchors, _, _ = self._run_inner(closure, gamma_override=gamma)
        with torch.no_grad():
            distance = sum(
                0.5 * float((p - w).pow(2).sum()) for p, w in zip(params, anchors, strict=True)
            )
        self._restore(params, anchors, saved)
        loss = float(first_loss.detach() if isinstance(first_loss, torch.Tensor) else first_loss)
        return loss, distance

    # -- the algorithm -----------------------------------------------------------------
    def _run_inner(
        self,
        closure: Callable,
        gamma_override: float | None = None,
        scaler: GradScaler | None = None,
    ):
        """Run the L inner steps from w; the parameters end at w'.

        Returns (first loss, params, anchors w, means μ, indices of params that got a grad);
        w and μ live in scratch buffers that the next call reuses.

        If the closure raises, a gradient is sparse or (with ``check_finite``) a loss or a
        parameter is not finite, everything this call changed (parameters, gradients, inner
        optimizer state, noise generator) is restored before the exception propagates.

        With a (enabled) ``scaler``, each inner step's gradient is unscaled before the
        coupling enters it; the first NaN/inf stops the loop, which is rolled back, and the
        scaler is told of it (``_amp.Overflow`` is raised). Once the loop has succeeded the
        scaler is told of no inf, as the last thing before returning.
        """
        # Lightning's automatic closure re-runs one batch; its empty one computes nothing.
        problem = lightning_closure_problem(
            closure, "EntropySGD", calls=self.param_groups[0]["inner_steps"]
        )
        if problem is not None:
            raise MissingClosureError(problem)
        conventions = [_check_group(g) for g in self.param_groups]  # before changing anything
        steps = {g["inner_steps"] for g in self.param_groups}
        if len(steps) != 1:
            raise ValueError(f"Invalid inner_steps: groups disagree ({sorted(steps)}); one closure")
        n_inner = steps.pop()
        params = self._params()
        scratch = self._scratch
        if scratch is None or not scratch.fits(params):
            scratch = self._scratch = _Scratch(params)
        anchors, means = scratch.anchors, scratch.means
        if params:
            with torch.no_grad():
                torch._foreach_copy_(anchors, params)  # w
                torch._foreach_copy_(means, params)  # μ
        saved = self._snapshot()
        for inner_group, group, convention in zip(
            self.inner.param_groups, self.param_groups, conventions, strict=True
        ):
            inner_group["lr"] = group["inner_lr"]
            if "maximize" in inner_group:
                inner_group["maximize"] = group.get("maximize", False)
            if convention == "original":
                # The original code zeroes the inner momentum at every outer step
                # (python/optim.py:56): the inner optimizer starts afresh from w. After the
                # snapshot, so that a rolled-back step gets the old state back.
                for p in group["params"]:
                    self.inner.state.pop(p, None)
        touched: set[int] = set()
        first_loss = scale = draw = None
        try:
            for step in range(n_inner):
                for p in params:
                    p.grad = None
                # This step's Langevin noise, drawn (on CPU with a core to spare: on a worker
                # thread) while the closure runs; it does not depend on the closure.
                draw = _NoiseDraw(self.param_groups, params, scratch, self._noise)
                # An autocast region around step() keeps its casts of the parameters until
                # it exits, so the next forward would read w' before this update: drop them.
                torch.clear_autocast_cache()
                with torch.enable_grad():
                    loss = closure()
                if self.check_finite and not check.finite_loss(loss):
                    raise NonFiniteLossError(
                        f"non-finite loss {float(torch.as_tensor(loss).detach())} from the "
                        "closure at inner step "
                        f"{step + 1} of {n_inner} (outer step {self._steps + 1}); the step "
                        "was rolled back",
                        step=self._steps + 1,
                    )
                if step == 0:
                    first_loss = loss
                live = _with_grad(self.param_groups)
                touched.update(i for idx in live for i in idx)
                if scaler is not None:
                    # g ← g / s, GradScaler's unscale_ (its kernel, its inf test). The scale is
                    # fixed during the outer step: scaler.update() runs between outer steps.
                    if scale is None:  # after the first closure: scaler.scale() made it
                        scale = scaler.get_scale()
                    grads = [params[i].grad for idx in live for i in idx]
                    if _amp.unscale_grads_(grads, scale):
                        raise _amp.Overflow(first_loss, step + 1)
                with torch.no_grad():  # also from probe_inner_loop, outside step()
                    _esgd_inner_update(
                        self.param_groups,
                        live,
                        lambda: check.step_without_hooks(self.inner),
                        params,
                        anchors,
                        means,
                        draw,
                        gamma_override,
                    )
                draw = None
            if self.check_finite:
                # A NaN/inf gradient with a finite loss (or a non-finite update) stays in w'
                # for the rest of the loop, so the final iterate shows it: one fused check.
                moved = [params[i] for i in sorted(touched)]
                if not check.all_finite(moved):
                    bad = sorted(touched)[check.first_nonfinite(moved)]
                    raise NonFiniteLossError(
                        f"non-finite value in param {bad} after the {n_inner} inner steps of "
                        f"outer step {self._steps + 1} (a NaN/inf gradient or update with a "
                        "finite loss); the step was rolled back",
                        step=self._steps + 1,
                    )
            if scaler is not None:  # the step will be taken: no inf this step
                self._scaler_report(scaler, False, params)
        except _amp.Overflow:
            if draw is not None:
                draw.settle()
            self._restore(params, anchors, saved)
            self._scaler_report(scaler, True, params)  # update() backs the scale off
            raise
        except BaseException:  # StopIteration, KeyboardInterrupt, NaN, ...: undo, re-raise
            if draw is not None:  # the generator is reset: no draw may be running then
                draw.settle()
            self._restore(params, anchors, saved)
            raise
        return first_loss, params, anchors, means, touched

    @torch.no_grad()
    def step(self, closure: Callable | None = None, *, scaler: GradScaler | None = None):
        """One outer iteration of Entropy-SGD.

        Args:
            closure: called exactly ``inner_steps`` times; each call must draw a *fresh*
                minibatch, compute the loss, call ``backward()`` and return the loss
                (unlike LBFGS, whose closure re-evaluates the same batch). Gradients are
                cleared before each call, so the closure need not zero them. With a
                ``scaler`` it calls ``scaler.scale(loss).backward()`` and returns the
                unscaled loss.
            scaler: a ``torch.amp.GradScaler`` (see *Mixed precision* in the class
                docstring): each inner step's gradient is unscaled before it is used, and a
                NaN/inf in any of them skips the whole step. Call ``scaler.update()`` after
                every step. ``None`` or a disabled scaler: no scaling.

        Returns:
            The first closure's return value: the loss at w before the step (also when the
            scaler skipped the step; :attr:`steps` then does not move).

        Raises:
            MissingClosureError: no closure given.
            NonFiniteLossError: a NaN/inf loss or parameter (``check_finite``).
            ValueError: a sparse gradient; with a scaler, a float16 gradient (GradScaler
                needs float32 parameters) or a closure that did not scale its loss.
            RuntimeError: with a scaler, ``scaler.update()`` was not called since the last
                step.

            On these, and on any exception from the closure (e.g. ``StopIteration`` from an
            exhausted loader, ``KeyboardInterrupt``), the parameters and every state are
            restored first, so the next step is the one an uninterrupted run would take;
            the scaler has not been told anything.
        """
        if closure is None:
            raise MissingClosureError(
                "EntropySGD.step requires a closure that draws a fresh minibatch, computes "
                "the loss, calls backward() and returns the loss"
            )
        scaler = _amp.amp_scaler(scaler)
        try:
            first_loss, params, anchors, means, touched = self._run_inner(closure, scaler=scaler)
        except _amp.Overflow as skipped:  # rolled back already; GradScaler's skipped step
            return skipped.first_loss
        if not params:
            self._steps += 1
            return first_loss
        # Outer update: w ← outer_step(w, g = w − μ), or g = γ (w − μ) (the local-entropy
        # gradient itself) with outer_gamma_scaled. Parameters that never received a
        # gradient in the inner loop keep grad None and are skipped, as torch optimizers do.
        # With maximize the outer optimizer negates g, so it is handed μ − w instead.
        torch._foreach_copy_(params, anchors)
        grads = anchors  # the scratch copy of w is free now: g = w − μ in place
        local_entropy_grad_(grads, means)
        offset = 0
        for group in self.param_groups:
            n = len(group["params"])
            if group.get("maximize"):
                torch._foreach_neg_(grads[offset : offset + n])
            if group["outer_gamma_scaled"] and n:
                torch._foreach_mul_(grads[offset : offset + n], group["gamma"])
            offset += n
        for i in touched:
            params[i].grad = grads[i]
        self._scratch.means = [self.state[p].get("mean") for p in params]  # reused next step
        for p, mu in zip(params, means, strict=True):
            self.state[p]["mean"] = mu
        check.step_without_hooks(self.outer)
        for p in params:
            p.grad = None
        self._steps += 1
        return first_loss

    def _scaler_report(self, scaler: GradScaler, found_inf: bool, params) -> None:
        report = self.__dict__.get("_amp_report")
        if report is None:  # one per optimizer, never pickled: GradScaler keys it by id()
            report = self._amp_report = _amp.ScalerReport("EntropySGD")
        report(scaler, found_inf, params[0].device if params else torch.device("cpu"))

    # -- rollback support --------------------------------------------------------------
    def _snapshot(self):
        def clone(value):
            return value.clone() if isinstance(value, torch.Tensor) else value

        inner_state = {p: {k: clone(v) for k, v in s.items()} for p, s in self.inner.state.items()}
        return inner_state, self._noise.state_dict()

    def _restore(self, params, anchors, saved) -> None:
        with torch.no_grad():
            if params:
                torch._foreach_copy_(params, anchors)
            for p in params:
                p.grad = None
        inner_state, noise_state = saved
        self.inner.state.clear()
        self.inner.state.update(inner_state)
        self._noise.load_state_dict(noise_state)


def auto_gamma0_esgd(optimizer: EntropySGD, closure: Callable) -> float:
    r"""The paper's optional automatic γ0 for eSGD: γ0 = L(w) / d(w', w).

    Runs one inner loop of ``optimizer`` with γ = 0 from the current w
    (:meth:`EntropySGD.probe_inner_loop`), where L(w) is the first closure's loss and w' the
    end point; the parameters and every optimizer state are restored, so training is
    unaffected except through the closure's own side effects (e.g. a data iterator
    advancing). The paper found this criterion not robust; treat it as a starting point.
    """
    if not isinstance(optimizer, EntropySGD):
        raise ValueError(f"Invalid optimizer: {type(optimizer).__name__} is not an EntropySGD")
    loss, distance = optimizer.probe_inner_loop(closure, gamma=0.0)
    if distance == 0:
        raise ValueError("Invalid closure: the inner loop did not move w (d(w', w) = 0)")
    return loss / distance


def _with_grad(groups) -> list[list[int]]:
    """Per group, the (flat) indices of the parameters that received a gradient."""
    live, offset = [], 0
    for group in groups:
        idx = []
        for i, p in enumerate(group["params"], offset):
            if p.grad is not None:
                check.dense_grad(i, p.grad)
                idx.append(i)
        live.append(idx)
        offset += len(group["params"])
    return live


def _esgd_inner_update(groups, live, inner_step, params, anchors, means, draw, gamma_override):
    """One SGLD step on every group, in place on ``params`` (the w').

    ``convention="paper"``: g' = ∇L(w') + γ (w' − w); w' ← inner_step(w', g');
    w' += √η' ε ξ; μ ← α μ + (1 − α) w'. With ``maximize`` the inner optimizer negates g', so
    the coupling enters as −γ (w' − w): the algorithm then maximizes L exactly as it minimizes
    −L.

    ``convention="original"``: w' ← inner_step(w', ∇L(w')) − η' γ (w'₀ − w) + √(2η') ε ξ,
    with w'₀ the iterate before this step: the coupling bypasses the inner optimizer (its
    momentum, its maximize), as the original code adds it after the momentum.

    Lists are processed with foreach kernels, one call per group.
    """
    after = []  # "original" groups: (inner params, −η'γ, w'₀ − w), applied after inner_step
    for group, idx in zip(groups, live, strict=True):
        gamma = group["gamma"] if gamma_override is None else gamma_override
        if gamma != 0 and idx:
            ps, ws = [params[i] for i in idx], [anchors[i] for i in idx]
            if group["convention"] == "original":
                # w'₀ − w now: the inner step moves w' (and its weight decay reads it first)
                after.append((ps, -group["inner_lr"] * gamma, torch._foreach_sub(ps, ws)))
                continue
            # g' += γ (w' − w), as two in-place passes (no temporary the size of the model)
            gamma = -gamma if group.get("maximize") else gamma
            esgd_coupling_([p.grad for p in ps], ps, ws, gamma)
    inner_step()
    for ps, step, diffs in after:  # w' −= η' γ (w'₀ − w), outside the inner optimizer
        torch._foreach_add_(ps, diffs, alpha=step)
    draw.add_(live)  # the Langevin noise √η' ε ξ (√(2η') ε ξ under "original")
    for group, idx in zip(groups, live, strict=True):
        if idx:
            ps = [params[i] for i in idx]
            running_mean_([means[i] for i in idx], ps, group["alpha"])


def _check_convention(convention: Any) -> str:
    return check.choice("convention", convention, _CONVENTIONS)


def _check_outer_gamma_scaled(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"Invalid outer_gamma_scaled: {value!r} (expected True or False)")
    return value


def _check_group(group: dict[str, Any]) -> str:
    """Validate a group's switches (they may be edited like ``lr``); return its convention."""
    _check_outer_gamma_scaled(group["outer_gamma_scaled"])
    return _check_convention(group["convention"])
