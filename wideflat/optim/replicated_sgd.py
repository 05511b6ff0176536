"""Replicated-SGD (Algorithm 2 of Pittorino et al., ICLR 2021)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torch.amp import GradScaler
from torch.nn import functional as F
from torch.optim import Optimizer

from .. import _rng
from .. import _validate as check
from .._deprecated import moved
from ..replicas import ReplicaEngine, make_replicas
from . import _amp
from ._closures import lightning_closure_problem
from ._rsgd_plumbing import check_saved_state, replicated_groups, settings_text
from .errors import MissingClosureError, NonFiniteLossError

__all__ = ["ReplicatedSGD"]

# Engine construction moved to wideflat.replicas (make_replicas); the old names still work.
__getattr__ = moved(__name__, dict.fromkeys(("ENGINES", "choose_engine"), "wideflat.replicas"))


class ReplicatedSGD(Optimizer):
    r"""Replicated-SGD: y replicas trained by any optimizer, coupled to their center.

    One call to :meth:`step` is one iteration t = 1, 2, ... of Algorithm 2::

        w̄ ← (1/y) Σ_a w_a
        for each replica a (own minibatch Ξ_a):
            g_a ← ∇L(w_a; Ξ_a)
            if t ≡ 0 (mod K):  g_a ← g_a + K γ (w_a − w̄)
            w_a ← base_step(w_a, g_a)                 # SGD(lr, momentum, wd) by default

    It is gradient descent on the replicated loss
    L_R({w_a}) = Σ_a L(w_a) + γ Σ_a d(w_a, w̄), with the elastic term applied every K
    steps at strength Kγ, so that the communication period K and γ are decoupled. The
    coupling enters the gradient before the base optimizer, so momentum carries it and
    weight decay is applied once, by the base optimizer.

    The replicas live in one of three engines (``engine=``, built by
    :func:`~wideflat.replicas.make_replicas`), which start from the same replicas for the same
    seed and follow the same trajectory; the optimizer drives any
    :class:`~wideflat.replicas.base.ReplicaEngine` through that interface alone:

    * ``"loop"``: :class:`~wideflat.replicas.Replicas`, y modules in this process (replica 0
      is the model you pass, trained in place);
    * ``"vmap"``: :class:`~wideflat.replicas.StackedReplicas`, stacked tensors run as one
      ``torch.func.vmap`` program (the model is a template);
    * ``"distributed"``: :class:`~wideflat.replicas.DistributedReplicas`, replica a in
      process a of an initialized process group, coupled by all-reduce; before each
      coupling the ranks agree that every replica is finite, and all raise together if not;
    * ``"auto"`` (default): see :func:`~wideflat.replicas.choose_engine`.

    The base optimizer updates the replicas' tensors; it must treat parameters
    independently (as SGD, Adam or RMSprop do). Ways to feed it:

    * :meth:`step_batches`: one minibatch per local replica, the same call for every engine.
    * ``step(closure)``: ``closure(a)`` computes replica ``a``'s loss on *its own* fresh
      minibatch, calls ``backward()`` and returns the loss; it is called once per replica
      per step (gradients are cleared before each call). Random ops inside the closure
      (dropout, data order through torch's global RNG) run on a per-replica RNG stream
      derived from ``(seed, a)`` and saved in ``state_dict``, so replicas explore
      independently and resumes are exact.
    * ``step()`` without a closure uses the gradients already in ``.grad`` (e.g. from
      ``sum(losses).backward()`` over the replicas).

    Args:
        replicas: the model to replicate (then ``y`` is required, except for the
            distributed engine where y is the world size, and replicas are built with
            ``init`` and ``seed``), or a replica container of any engine.
        lr: learning rate η of the base optimizer.
        y: number of replicas.
        engine: ``"auto"``, ``"loop"``, ``"vmap"`` or ``"distributed"``.
        gamma: coupling γ (a focusing scheduler may change it).
        coupling_every: the coupling period K ≥ 1.
        momentum, dampening, nesterov, weight_decay: base optimizer settings (passed to any
            other class that accepts them).
        base: the base optimizer class (default ``torch.optim.SGD``).
        base_kwargs: extra keyword arguments for ``base`` (they win).
        groups: optional parameter groups over the *model's* (replica 0's) parameters,
            e.g. ``[{"params": model.head.parameters(), "lr": 0.01}]``; each maps to the
            same parameters of every replica. Default: one group with all parameters.
        init: ``"independent"`` or ``"copy"`` initialization of replicas 1..y−1.
        seed: seed for replica initialization and the per-replica RNG streams (default:
            drawn from torch's global RNG).
        check_finite: raise :class:`~wideflat.optim.errors.NonFiniteLossError` naming the
            replica when a closure's loss or a gradient is NaN/inf, before anything is
            updated (distributed: at the next coupling step, on every rank; the failed rank
            stops updating meanwhile). It costs one host synchronization per step.

    A refused step changes nothing: no parameter, optimizer state, step count or RNG
    stream moves, and the buffers the closures' forward passes touched (BatchNorm running
    statistics) are restored; so is everything when a closure raises. Sparse gradients
    (``nn.Embedding(sparse=True)``) are refused with a ``ValueError`` naming the parameter.

    Saving and resuming: :meth:`state_dict` holds, besides torch's ``state`` (momentum
    buffers) and ``param_groups`` (lr, γ, K, ...), a ``"replicated_sgd"`` entry with the
    step count t, the seed and per-replica RNG streams, and every replica this process
    holds, parameters and buffers (``"replicas"``: the container's ``state_dict()``; all y
    replicas for the loop engine, replica 0 = the model included, and for the vmap engine,
    whose model is only a template; this rank's replica for the distributed one). It holds
    only tensors and plain values, so ``torch.load(..., weights_only=True)`` reads it, and
    the usual torch recipe resumes bit for bit::

        torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, path)
        # later, in a fresh process:
        ck = torch.load(path, weights_only=True)
        model.load_state_dict(ck["model"])
        opt = ReplicatedSGD(model, lr=..., y=..., ...)   # the same settings
        opt.load_state_dict(ck["opt"])                   # restores every replica

    :meth:`load_state_dict` refuses with a ``ValueError``, before loading anything, a state
    dict saved with another y, engine, replica (distributed rank) or tensor shape. Like
    torch's, the state dict shares its tensors with the live ones: deep-copy it to keep a
    snapshot in memory.

    Mixed precision. Run each replica's forward pass under ``torch.autocast`` (bfloat16 on
    CPU; float16 or bfloat16 on CUDA), or wrap :meth:`step_batches` in it; the replicas'
    parameters, the base optimizer's state and the coupling stay in float32 (one region may
    span several steps: the optimizer drops autocast's cached casts of the parameters
    before the forward passes). For float16, pass a ``torch.amp.GradScaler`` to
    :meth:`step` or :meth:`step_batches` (``scaler.step(opt, closure)`` cannot work: GradScaler
    refuses closures); the closure backpropagates the scaled loss and returns the unscaled
    one, and ``scaler.update()`` follows every step, as after ``scaler.step(opt)``::

        scaler = torch.amp.GradScaler("cuda")
        def closure(a):
            x, t = next(streams[a])               # replica a's own minibatch
            with torch.autocast("cuda", dtype=torch.float16):
                loss = F.cross_entropy(opt.replicas[a](x), t)
            scaler.scale(loss).backward()
            return loss
        loss = opt.step(closure, scaler=scaler)   # or opt.step_batches(batches, scaler=scaler)
        scaler.update()

    The gradients are unscaled (g ← g/s, GradScaler's kernel) before the coupling is added.
    If any replica's gradient holds a NaN/inf, the step is skipped for *all* replicas (one
    scale serves them all, and the coupling needs them at the same t): nothing moves, as for
    a refused step (:attr:`steps` included), and ``scaler.update()`` shrinks the scale. A
    non-finite *loss* still raises :class:`~wideflat.optim.errors.NonFiniteLossError`
    (``check_finite``). The distributed engine: every rank passes a scaler, and the ranks
    agree at every step (two small all-reduces) so that they skip together. Without a
    closure, ``scaler.step(opt)`` after ``scaler.scale(loss).backward()`` works as for any
    optimizer (a skipped step then keeps the buffers the forward passes updated).

    Example:
        >>> import torch
        >>> from wideflat.optim import ReplicatedSGD
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> model = torch.nn.Linear(4, 1)
        >>> opt = ReplicatedSGD(model, lr=0.05, y=3, gamma=0.01, coupling_every=2,
        ...                     momentum=0.9, seed=0)
        >>> x, t = torch.randn(64, 4), torch.randn(64, 1)
        >>> def closure(a):                     # replica a, its own fresh minibatch
        ...     i = torch.randint(0, 64, (16,))
        ...     loss = torch.nn.functional.mse_loss(opt.replicas[a](x[i]), t[i])
        ...     loss.backward()
        ...     return loss
        >>> loss = opt.step(closure)            # mean of the replicas' losses
        >>> center = opt.center()               # nn.Linear holding w̄
        >>> scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
        >>> def amp_closure(a):                 # autocast forward, scaled backward
        ...     i = torch.randint(0, 64, (16,))
        ...     with torch.autocast("cpu", dtype=torch.bfloat16):
        ...         loss = torch.nn.functional.mse_loss(opt.replicas[a](x[i]), t[i])
        ...     scaler.scale(loss).backward()
        ...     return loss
        >>> loss = opt.step(amp_closure, scaler=scaler)
        >>> scaler.update()
        >>> opt.steps, scaler.get_scale()
        (2, 1024.0)

    References:
        F. Pittorino et al., "Entropic gradient descent algorithms and wide flat minima",
        ICLR 2021, Algorithm 2; C. Baldassi et al., PNAS 113:E7655 (2016).
    """

    def __init__(
        self,
        replicas: ReplicaEngine | nn.Module,
        lr: float,
        *,
        y: int | None = None,
        engine: str = "auto",
        gamma: float = 0.0,
        coupling_every: int = 1,
        momentum: float = 0.0,
        dampening: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        base: type[Optimizer] = torch.optim.SGD,
        base_kwargs: dict[str, Any] | None = None,
        groups: Iterable[dict[str, Any]] | None = None,
        init: str = "independent",
        seed: int | None = None,
        check_finite: bool = True,
    ):
        check.non_negative("lr", lr)
        check.non_negative("gamma", gamma)
        check.positive_int("coupling_every", coupling_every)
        check.sgd_settings(momentum, dampening, nesterov, weight_decay)
        check.coupling_step("lr * coupling_every * gamma", lr * coupling_every * gamma)
        if not (isinstance(base, type) and issubclass(base, Optimizer)):
            raise ValueError(f"Invalid base: {base!r} is not a torch.optim.Optimizer class")
        replicas = make_replicas(replicas, y, engine, init=init, seed=seed)
        shared = dict(
            momentum=momentum, dampening=dampening, nesterov=nesterov, weight_decay=weight_decay
        )
        base_args = check.base_kwargs(base, shared, base_kwargs)
        base_args.pop("lr", None)
        defaults = dict(lr=lr, gamma=gamma, coupling_every=coupling_every, **base_args)
        super().__init__(replicated_groups(replicas, groups), defaults)
        check.real_dense_params([p for g in self.param_groups for p in g["params"]])
        self.replicas = replicas
        self.base = base(self.param_groups, lr=lr, **base_args)
        self.base.param_groups = self.param_groups
        self.base.state = self.state
        self.check_finite = check_finite
        if replicas.spans_processes:  # every hyper-parameter, all ranks
            replicas.check_same(
                "the optimizer's settings (param groups, base optimizer or check_finite)",
                settings_text(replicas, self.param_groups, base, check_finite),
            )
        self._steps = 0
        # Private RNG streams, {device: generator state} per local replica (the vectorized
        # engine has one stream for all replicas); CUDA entries are made on first use.
        self._rng_states = {a: {} for a in ([0] if replicas.batched else replicas.local_indices)}
        self._failure: tuple[int, list[int]] | None = None  # distributed: (step, replicas)

    @property
    def engine(self) -> str:
        """``"loop"``, ``"vmap"`` or ``"distributed"``."""
        return self.replicas.engine

    @property
    def y(self) -> int:
        """The number of replicas (over all processes)."""
        return self.replicas.y

    @property
    def steps(self) -> int:
        """Number of completed steps t."""
        return self._steps

    def center(self) -> nn.Module:
        """The center w̄ as a plain module (see :meth:`Replicas.center`)."""
        return self.replicas.center()

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if "replicas" in self.__dict__:
            raise ValueError(
                "Invalid add_param_group: ReplicatedSGD groups map model parameters to every "
                "replica; pass them as groups= at construction"
            )
        super().add_param_group(param_group)

    def __getstate__(self) -> dict[str, Any]:
        extra = ("replicas", "base", "check_finite", "_steps", "_rng_states", "_failure")
        return {**super().__getstate__(), **{k: self.__dict__[k] for k in extra}}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if "base" in self.__dict__:  # re-share after load_state_dict / unpickling
            self.base.param_groups = self.param_groups
            self.base.state = self.state
            # Groups saved before the base optimizer grew a setting (SGD's maximize,
            # foreach, fused, ...) get its default, as torch's own __setstate__ does.
            for group in self.param_groups:
                for key, value in self.base.defaults.items():
                    group.setdefault(key, value)

    def state_dict(self) -> dict[str, Any]:
        """torch's state dict plus ``"replicated_sgd"``: t, RNG streams and the replicas.

        See the class docstring for the contents and the save/resume recipe.
        """
        sd = super().state_dict()
        sd["replicated_sgd"] = {
            "y": self.y,
            "engine": self.engine,
            "local_indices": list(self.replicas.local_indices),
            "seed": self.replicas.seed,
            "steps": self._steps,
            "rng_states": {
                a: {k: v.clone() for k, v in st.items()} for a, st in self._rng_states.items()
            },
            "replicas": self.replicas.state_dict(),
        }
        return sd

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a :meth:`state_dict`: optimizer state, t, RNG streams and every replica.

        Raises ``ValueError`` before loading anything if it was saved with another y,
        engine, replica (distributed rank) or tensor shape. A state dict from an older
        wideflat without replicas loads with a warning (then load the replicas yourself).
        """
        state_dict = dict(state_dict)
        if "replicated_sgd" not in state_dict:
            raise ValueError(
                "Invalid state_dict: missing 'replicated_sgd' (not a ReplicatedSGD state)"
            )
        extra = state_dict.pop("replicated_sgd")
        check_saved_state(extra, self.replicas)
        super().load_state_dict(state_dict)
        saved = extra.get("replicas")
        if saved is None:
            warnings.warn(
                "ReplicatedSGD.load_state_dict: this state dict holds no replicas (saved by an "
                "older wideflat); only replica 0 comes back through the model's state dict, "
                "load the others with opt.replicas.load_state_dict(...)",
                UserWarning,
                stacklevel=2,
            )
        else:
            self.replicas.load_state_dict(saved)
        if "seed" in extra:
            self.replicas.seed = int(extra["seed"])
        self._steps = int(extra["steps"])
        self._rng_states = {
            int(a): {k: v.clone() for k, v in st.items()} for a, st in extra["rng_states"].items()
        }

    # -- the algorithm -----------------------------------------------------------------
    def _with_stream(self, index: int, module: nn.Module, fn: Callable):
        """Run ``fn()`` on the private RNG stream ``index`` (CPU and the module's GPUs)."""
        generators = _generators(module)
        states = self._rng_states[index]
        with torch.random.fork_rng(devices=[int(k[5:]) for k in generators if k != "cpu"]):
            for key, gen in generators.items():
                if key in states:
                    gen.set_state(states[key])
                else:
                    gen.manual_seed(_rng.derive_seed(self.replicas.seed, index, 1))
            with torch.enable_grad():
                out = fn()
            new_state = {key: gen.get_state() for key, gen in generators.items()}
        return out, new_state

    def _losses(self, closure: Callable) -> tuple[list, dict]:
        """Call the closure for every local replica: their losses and advanced RNG streams.

        Nothing is committed here (the caller keeps the streams only if the step is taken).
        """
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None
        # An autocast region around several steps keeps its casts of the parameters until it
        # exits: the forward passes would read the replicas before the last update.
        torch.clear_autocast_cache()
        new_states = {}
        if self.replicas.batched:  # one program, one stream, closure() gives the y losses
            losses, new_states[0] = self._with_stream(0, self.replicas, closure)
            return list(losses), new_states
        losses = []
        for a in self.replicas.local_indices:
            loss, new_states[a] = self._with_stream(a, self.replicas[a], lambda a=a: closure(a))
            losses.append(loss)
        return losses, new_states

    def _failed_replicas(self, losses: list, t: int, check_grads: bool = True) -> list[int]:
        """The local replicas whose loss or gradient is NaN/inf at step t (one host sync).

        Raises ``ValueError`` for a sparse gradient, and
        :class:`~wideflat.optim.errors.NonFiniteLossError` for a failure in a
        single-process engine; a distributed rank returns its failed replicas instead.
        ``check_grads=False`` (a GradScaler checks them) looks at the losses only.
        """
        params = self._local_params()
        grads = [p.grad for p in params if p.grad is not None and check_grads]
        for p in params:
            if p.grad is not None and p.grad.layout != torch.strided:
                raise ValueError(
                    f"Invalid gradient of parameter {self._name_of(p)!r}: sparse gradients "
                    "(e.g. from nn.Embedding(sparse=True)) are not supported; use a dense layer"
                )
        if not self.check_finite:
            return []
        numbers = [loss for loss in losses if not isinstance(loss, torch.Tensor)]
        tensors = [loss for loss in losses if isinstance(loss, torch.Tensor)]
        if all(map(check.finite_loss, numbers)) and check.all_finite(_floating(tensors + grads)):
            return []
        named = zip(self.replicas.local_indices, losses, strict=bool(losses))
        bad_loss = [a for a, loss in named if not check.finite_loss(loss)]
        bad_grad = self.replicas.nonfinite_replicas(params) if check_grads else []
        bad = sorted(set(bad_loss) | set(bad_grad))
        if self.replicas.spans_processes:
            return bad
        if bad_loss:
            raise NonFiniteLossError(
                f"non-finite loss from the closure for replica(s) {bad_loss} at step {t}; "
                "nothing was updated",
                replicas=bad_loss,
                step=t,
            )
        raise NonFiniteLossError(
            f"non-finite gradient for replica(s) {bad} at step {t} (the loss was finite); "
            "nothing was updated",
            replicas=bad,
            step=t,
        )

    def _name_of(self, tensor: torch.Tensor) -> str:
        return next(n for n, p in self.replicas.named_parameters() if p is tensor)

    def _synchronize_failures(self, t: int) -> None:
        """Distributed, at a synchronization step: agree on failures; raise on every rank.

        A rank has failed if a closure loss or a gradient was NaN/inf since the last
        synchronization, or if its parameters are not finite.
        """
        local = [] if self._failure is None else self._failure[1]
        if not local and not check.all_finite(self._local_params()):
            local = list(self.replicas.local_indices)
        failed = self.replicas.agree_on_failures(local)  # one small all-reduce, every rank
        if failed:
            first = (
                f" (first seen on this rank at step {self._failure[0]})" if self._failure else ""
            )
            raise NonFiniteLossError(
                f"non-finite loss, gradient or parameters on replica(s) {failed}{first}; all "
                f"{self.y} ranks stopped at step {t} before the coupling, nothing was updated",
                replicas=failed,
                step=t,
            )

    def _local_params(self) -> list[torch.Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    @torch.no_grad()
    def step(self, closure: Callable | None = None, *, scaler: GradScaler | None = None):
        """One iteration of Replicated-SGD.

        Args:
            closure: optional. Loop and distributed engines: ``closure(a)`` returns replica
                ``a``'s loss after ``backward()`` on its own fresh minibatch; it is called
                for each replica held by this process. Vectorized engine: ``closure()``
                returns the ``(y,)`` per-replica losses after ``backward()`` of their sum
                (see :meth:`step_batches`, which does this for you). With a ``scaler`` the
                closure backpropagates ``scaler.scale(loss)`` and returns the unscaled loss.
            scaler: a ``torch.amp.GradScaler`` (see *Mixed precision* in the class
                docstring): the gradients are unscaled before the coupling, and a NaN/inf in
                any replica's gradient skips the step. Call ``scaler.update()`` after every
                step. ``None`` or a disabled scaler: no scaling.

        Returns:
            The mean of the local replicas' losses when a closure is given, else ``None``
            (also when the scaler skipped the step; :attr:`steps` then does not move).
        """
        if closure is not None:  # Lightning's closures take no replica index (or batch)
            problem = lightning_closure_problem(
                closure, "ReplicatedSGD", calls=self.y, per_replica=not self.replicas.batched
            )
            if problem is not None:
                raise MissingClosureError(problem)
        scaler = _amp.amp_scaler(scaler)
        t = self._steps + 1
        losses, streams = [], {}
        # The closures' forward passes update buffers (BatchNorm statistics): keep them to
        # restore if the step is refused.
        saved = [(b, b.clone()) for b in self.replicas.buffers()] if closure is not None else []
        try:
            if closure is not None:
                losses, streams = self._losses(closure)
            # With a scaler, a NaN/inf gradient is the scaler's to handle (a skipped step);
            # a NaN/inf loss is still a failure, which no smaller scale can cure.
            failed = self._failed_replicas(losses, t, check_grads=scaler is None)
            skipped = scaler is not None and self._unscale_(scaler, failed, t)
        except BaseException:
            _restore(saved)
            raise
        loss = None
        if losses:
            loss = losses[0]
            for other in losses[1:]:
                loss = loss + other
            loss = loss / len(losses)
        if skipped:  # as GradScaler skips optimizer.step(): nothing moves
            _restore(saved)
            return loss
        if failed:  # distributed: this rank updates nothing until all ranks know
            _restore(saved)
            streams = {}
            if self._failure is None:
                self._failure = (t, failed)
        self._rng_states.update(streams)
        coupled = [g for g in self.param_groups if t % g["coupling_every"] == 0]
        # (With a scaler the ranks already agreed on failures, in _unscale_.)
        if self.replicas.spans_processes and self.check_finite and scaler is None:
            if coupled:  # every K steps: the ranks agree before the center is computed
                self._synchronize_failures(t)
            elif self._failure is not None:  # failed rank: no update until the others know
                self._steps = t
                return loss
        for group in coupled:
            if group["gamma"] != 0 and self.y > 1:
                k = group["coupling_every"]
                self.replicas.couple_(group["params"], k * group["gamma"])
        check.step_without_hooks(self.base)  # torch's step hooks already ran for us
        self._steps = t
        return loss

    def _unscale_(self, scaler: GradScaler, failed: list[int], t: int) -> bool:
        """With a GradScaler: g ← g/s on every local replica; whether to skip step t.

        Step t is skipped when any replica's scaled gradient holds a NaN/inf: one scale
        serves all replicas, and the coupling needs them all at the same t. The distributed
        ranks agree at every step (failures, then overflows: two small all-reduces), so that
        they skip, and couple, together; each rank's scaler is told the same outcome.
        """
        params = self._local_params()
        grads = [p.grad for p in params if p.grad is not None]
        overflow = _amp.unscale_grads_(grads, scaler.get_scale())
        if self.replicas.spans_processes:
            if self.check_finite:
                if failed and self._failure is None:
                    self._failure = (t, failed)
                self._synchronize_failures(t)  # raises on every rank if any rank failed
            overflow = self.replicas.sum_over_ranks(float(overflow)) > 0
        report = self.__dict__.get("_amp_report")
        if report is None:  # one per optimizer, never pickled: GradScaler keys it by id()
            report = self._amp_report = _amp.ScalerReport("ReplicatedSGD")
        report(scaler, overflow, params[0].device)
        return overflow

    def step_batches(
        self,
        batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = F.cross_entropy,
        *,
        scaler: GradScaler | None = None,
    ):
        """One step on explicit minibatches, the same call for every engine.

        Args:
            batches: one ``(inputs, targets)`` pair per local replica, in the order of
                ``replicas.local_indices`` (all y replicas in one process; this rank's one
                with the distributed engine), each from that replica's own stream.
            loss_fn: ``loss_fn(outputs, targets)`` → scalar (default cross-entropy).
            scaler: a ``torch.amp.GradScaler``: the losses are scaled before ``backward()``
                and the scaler is passed to :meth:`step`; call ``scaler.update()`` after.

        Returns:
            The mean of the local replicas' losses (detached).
        """
        scaler = _amp.amp_scaler(scaler)
        scale = (lambda loss: loss) if scaler is None else scaler.scale
        local = self.replicas.local_indices
        if len(batches) != len(local):
            raise ValueError(
                f"Invalid batches: {len(batches)} given for {len(local)} local replica(s)"
            )
        if self.replicas.batched:

            def closure():
                losses = self.replicas.losses(batches, loss_fn)
                scale(losses.sum()).backward()
                return losses.detach()

        else:
            position = {a: i for i, a in enumerate(local)}

            def closure(a):
                x, t = batches[position[a]]
                loss = loss_fn(self.replicas[a](x), t)
                scale(loss).backward()
                return loss.detach()

        return self.step(closure, scaler=scaler)


def _generators(module: nn.Module) -> dict[str, torch.Generator]:
    """torch's default generators a replica's random ops draw from: CPU and its GPUs."""
    gens = {"cpu": torch.default_generator}
    for index in sorted({p.device.index for p in module.parameters() if p.device.type == "cuda"}):
        gens[f"cuda:{index}"] = torch.cuda.default_generators[index]
    return gens


def _floating(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    return [t.detach() for t in tensors if t.is_floating_point()]


def _restore(saved: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    for tensor, value in saved:
        tensor.copy_(value)
