"""The per-step maths of Entropy-SGD (Algorithm 1) and Replicated-SGD (Algorithm 2), once.

Pure functions that update lists of tensors in place with torch's ``_foreach`` ops (one call
per list; a single tensor is taken as a list of one). A tensor may hold many networks stacked
along leading dimensions: :class:`~wideflat.optim.EntropySGD` passes a model's parameters, the
replica engines pass each parameter (``(y, ...)`` when stacked), and the committee study
(:mod:`wideflat.experiments.committee`) passes one ``(restart, replica, K, N)`` tensor for all
its networks. Same inputs, same bits: ``_foreach`` on CPU runs the per-tensor op
(``add_(other, alpha=a)`` computes ``self + a · other``).

Symbols (the paper's): ``w`` the weights (eSGD: the anchor of the inner loop), ``w'`` the
inner-loop weights, ``μ`` their running mean with factor ``α`` (``alpha``), ``γ`` the
coupling, ``w̄`` the replicas' center, ``K`` the coupling period (``coupling_every``).

The base optimizer's own update (``w ← w − η g`` for SGD) is not here: the library delegates
it to any ``torch.optim`` class. The kernels live at the package root, not in
:mod:`wideflat.optim`, because the replica engines (:mod:`wideflat.replicas`, a layer below
the optimizers) apply the rSGD coupling.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "esgd_coupling_",
    "langevin_",
    "local_entropy_grad_",
    "replica_coupling_",
    "running_mean_",
]

Tensors = Tensor | Sequence[Tensor]


def _list(x: Tensors) -> list[Tensor]:
    return [x] if isinstance(x, Tensor) else list(x)


def esgd_coupling_(grads: Tensors, inner: Tensors, anchors: Tensors, gamma: float) -> None:
    """``g' ← g' + γ (w' − w)``: the coupling of the inner loop (Algorithm 1), in place.

    Computed as two in-place passes, ``g' += γ w'`` then ``g' −= γ w``, so that no temporary
    the size of the model is made.

    Example:
        >>> g, wp, w = torch.zeros(2), torch.tensor([1.0, 2.0]), torch.tensor([0.5, 0.5])
        >>> esgd_coupling_(g, wp, w, 2.0); g
        tensor([1., 3.])
    """
    grads = _list(grads)
    torch._foreach_add_(grads, _list(inner), alpha=gamma)
    torch._foreach_add_(grads, _list(anchors), alpha=-gamma)


def langevin_(inner: Tensors, noise: Tensors, scale: float) -> None:
    """``w' ← w' + scale · ξ``: the Langevin noise of the inner loop, added after the inner
    optimizer's step (Algorithm 1, ``scale = √η' ε``), in place.

    Example:
        >>> wp = torch.ones(2); langevin_(wp, torch.tensor([1.0, -1.0]), 0.5); wp
        tensor([1.5000, 0.5000])
    """
    torch._foreach_add_(_list(inner), _list(noise), alpha=scale)


def running_mean_(means: Tensors, inner: Tensors, alpha: float) -> None:
    """``μ ← α μ + (1 − α) w'``, in place (as ``lerp(μ, w', 1 − α)``).

    Example:
        >>> mu = torch.zeros(2); running_mean_(mu, torch.tensor([4.0, 8.0]), 0.75); mu
        tensor([1., 2.])
    """
    torch._foreach_lerp_(_list(means), _list(inner), 1.0 - alpha)


def local_entropy_grad_(anchors: Tensors, means: Tensors) -> None:
    """``w ← w − μ``, in place: the gradient the outer step of Algorithm 1 follows
    (``∇L_LE(w) = γ (w − ⟨w'⟩)`` up to the factor γ, with ``⟨w'⟩`` estimated by μ).

    Example:
        >>> w = torch.tensor([1.0, 2.0]); local_entropy_grad_(w, torch.ones(2)); w
        tensor([0., 1.])
    """
    torch._foreach_sub_(_list(anchors), _list(means))


def replica_coupling_(grads: Tensors, params: Tensors, centers: Tensors, strength: float) -> None:
    """``g_a ← g_a + s (w_a − w̄)``: the elastic coupling of Algorithm 2 with ``s = K γ``, in
    place (the gradient of ``γ Σ_a d(w_a, w̄)`` scaled by the coupling period K).

    ``centers`` broadcast against ``params`` (e.g. ``(1, ...)`` against ``(y, ...)``).

    Example:
        >>> g, w = torch.zeros(2, 1), torch.tensor([[1.0], [3.0]])
        >>> replica_coupling_(g, w, w.mean(0, keepdim=True), 0.5); g.flatten()
        tensor([-0.5000,  0.5000])
    """
    grads = _list(grads)
    diffs = torch._foreach_sub(_list(params), _list(centers))
    torch._foreach_add_(grads, diffs, alpha=strength)
