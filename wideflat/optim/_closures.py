"""Recognize the closures PyTorch Lightning passes to ``optimizer.step``, without importing it.

Lightning never hands an optimizer the user's closure itself. Every ``optimizer.step`` it
drives goes through its precision plugin, which wraps the closure as
``functools.partial(Precision._wrap_closure, model, optimizer, closure)``: a callable that
takes *no* argument (``lightning/pytorch/plugins/precision/precision.py``, ``_wrap_closure``
and ``optimizer_step``, lines 96-123 in Lightning 2.6). Inside that partial sits

* under automatic optimization, a ``lightning.pytorch.loops.optimization.automatic.Closure``
  (built once per batch by ``_AutomaticOptimization._make_closure``; each call re-runs
  ``training_step`` on *that* batch: ``automatic.py`` lines 92-147 and 199-209), also when
  a ``LightningModule.optimizer_step`` override forwards its ``optimizer_closure``;
* under manual optimization, the user's closure, or ``lightning.pytorch.core.optimizer.
  do_nothing_closure`` for ``opt.step()`` without one (``core/optimizer.py`` lines 35-36 and
  146-154).

The classes are looked up in ``sys.modules``: a closure cannot come from Lightning unless
Lightning is loaded, so this never imports it and costs a dictionary lookup when it is not.
Both the ``lightning`` and the older ``pytorch_lightning`` package names are recognized.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["lightning_closure_kind", "lightning_closure_problem"]

_PACKAGES = ("lightning.pytorch", "pytorch_lightning")
_MODULE_INTEGRATION = "wideflat.integrations.lightning"


def lightning_closure_kind(closure: Any) -> str | None:
    """What Lightning put behind ``closure``, or ``None`` if it is not Lightning's.

    Returns:
        ``"automatic"``: automatic optimization's closure, which re-runs ``training_step`` on
        the current batch at every call; ``"empty"``: manual optimization's ``opt.step()``
        without a closure (each call computes nothing); ``"wrapped"``: any other closure
        passed through Lightning's precision plugin (it is called without arguments);
        ``None``: not from Lightning.

    Example:
        >>> lightning_closure_kind(lambda: 0.0) is None
        True
    """
    packages = [p for p in _PACKAGES if p in sys.modules]
    if not packages:
        return None
    automatic = tuple(
        cls
        for p in packages
        if (cls := getattr(sys.modules.get(f"{p}.loops.optimization.automatic"), "Closure", None))
        is not None
    )
    empty = [
        fn
        for p in packages
        if (fn := getattr(sys.modules.get(f"{p}.core.optimizer"), "do_nothing_closure", None))
        is not None
    ]
    kind = None
    for fn in _unwrapped(closure):
        if automatic and isinstance(fn, automatic):
            return "automatic"
        if any(fn is e for e in empty):
            return "empty"
        if _from_lightning(fn):
            kind = "wrapped"
    return kind


def lightning_closure_problem(
    closure: Any, algorithm: str, *, calls: int, per_replica: bool = False
) -> str | None:
    """Why ``algorithm`` cannot use this Lightning closure (a message for the user), or ``None``.

    Args:
        closure: what ``step`` received.
        algorithm: ``"EntropySGD"`` or ``"ReplicatedSGD"``.
        calls: how many times one step calls the closure (L inner steps, y replicas).
        per_replica: ReplicatedSGD only: the engine calls ``closure(a)`` (loop and
            distributed engines) rather than ``closure()`` (vectorized engine).

    EntropySGD refuses automatic optimization's closure (one batch for all L inner steps)
    and the empty one (no gradient at all); a user's closure under manual optimization is
    accepted, since it may draw a fresh batch per call. ReplicatedSGD also refuses any
    wrapped closure when its engine passes a replica index, which Lightning's wrapper does not
    take (``TypeError: Precision._wrap_closure() takes 4 positional arguments but 5 were
    given``).

    Example:
        >>> lightning_closure_problem(lambda: 0.0, "EntropySGD", calls=5) is None
        True
    """
    kind = lightning_closure_kind(closure)
    if kind is None:
        return None
    if algorithm == "EntropySGD":
        if kind == "automatic":
            return (
                "EntropySGD cannot run under Lightning's automatic optimization: Lightning's "
                f"closure re-runs training_step on the same batch, so all {calls} inner steps "
                "would see one minibatch (Entropy-SGD needs a fresh minibatch for every inner "
                f"step). Subclass {_MODULE_INTEGRATION}.EntropySGDModule instead: it uses "
                "manual optimization and feeds each inner step its own batch"
            )
        if kind == "empty":
            return (
                "EntropySGD.step got Lightning's empty closure (opt.step() without a closure "
                f"under manual optimization), so its {calls} inner steps would compute no "
                "gradient. Pass a closure that draws a fresh minibatch, computes the loss, "
                "calls manual_backward(loss) and returns it, or subclass "
                f"{_MODULE_INTEGRATION}.EntropySGDModule"
            )
        return None
    if algorithm == "ReplicatedSGD":
        if kind == "automatic":
            return (
                "ReplicatedSGD cannot run under Lightning's automatic optimization: "
                "Lightning's closure re-runs training_step on one batch and takes no replica "
                f"index, while each of the {calls} replicas needs its own minibatch. Subclass "
                f"{_MODULE_INTEGRATION}.ReplicatedSGDModule instead: it uses manual "
                "optimization and gives every replica its own batch"
            )
        if kind == "empty" or per_replica:
            return (
                "ReplicatedSGD.step got a closure through Lightning's optimizer wrapper "
                "(self.optimizers().step(...)), which calls it without arguments"
                + (
                    f", while this engine calls closure(a) for each of the {calls} replicas"
                    if per_replica
                    else " and, for opt.step() without a closure, computes no loss"
                )
                + f". Subclass {_MODULE_INTEGRATION}.ReplicatedSGDModule, which steps the "
                "optimizer with a per-replica closure"
            )
        return None
    raise ValueError(f"Invalid algorithm: {algorithm!r} (expected 'EntropySGD' or 'ReplicatedSGD')")


def _unwrapped(closure: Any, depth: int = 0) -> Iterator[Any]:
    """``closure`` and, through nested ``functools.partial``, the callables it binds."""
    yield closure
    if isinstance(closure, functools.partial) and depth < 8:
        yield from _unwrapped(closure.func, depth + 1)
        for arg in (*closure.args, *closure.keywords.values()):
            if callable(arg):
                yield from _unwrapped(arg, depth + 1)


def _from_lightning(fn: Callable) -> bool:
    """A method of a Lightning object (the precision plugin's ``_wrap_closure``, ...)."""
    if not inspect.ismethod(fn):
        return False
    module = type(fn.__self__).__module__ or ""
    return any(module == p or module.startswith(p + ".") for p in _PACKAGES)
