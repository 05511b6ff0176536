"""Hessian flatness: the top eigenvalues and the trace of the training-loss Hessian.

For the mean training loss L(w) = (1/n) Σ_μ ℓ(f_w(x_μ), y_μ) over all of the data, and the
perturbed weights w flattened into one vector of length P, the Hessian H = ∇²L(w) is never
formed: every quantity comes from exact Hessian-vector products (HVPs) v ↦ Hv, one pass over
all batches each,

    Hv = Σ_b (n_b / n) ∇²L_b(w) v,        L_b the mean loss of batch b (n_b examples),

* the ``top_k`` largest (algebraic) eigenvalues λ₁ ≥ λ₂ ≥ … by Lanczos (ARPACK's implicitly
  restarted Lanczos through ``scipy.sparse.linalg.eigsh``), and
* the trace by Hutchinson's estimator tr H = E_v[vᵀHv] over Rademacher vectors v ∈ {±1}^P.

A large λ₁ or tr H means a sharp minimum. For the additive local energy of a loss that is
quadratic near w, E_z[L(w + σz)] − L(w) = (σ²/2) tr H (plus σ⁴ terms otherwise), which links
this measure to :func:`~wideflat.flatness.local_energy`.

References:
    Pearlmutter, "Fast exact multiplication by the Hessian", Neural Computation 1994.
    Hutchinson, "A stochastic estimator of the trace of the influence matrix for Laplacian
    smoothing splines", Communications in Statistics 1990.
    Lehoucq, Sorensen, Yang, "ARPACK Users' Guide", SIAM 1998.
    Keskar et al., "On large-batch training for deep learning: generalization gap and sharp
    minima", ICLR 2017. Yao et al., "PyHessian: neural networks through the lens of the
    Hessian", IEEE BigData 2020.
"""

from __future__ import annotations

import inspect
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from wideflat import _rng
from wideflat import _validate as check
from wideflat._bn import recompute_bn
from wideflat.flatness._energy_data import Batches, make_batches
from wideflat.flatness._model import (
    PARAM_SETS,
    BatchNormOnlyTrains,
    measuring,
    on_device,
    perturbed_parameters,
)
from wideflat.flatness._profile import BN_POLICIES
from wideflat.flatness._record import JsonRecord, versions_and_time

__all__ = ["HessianSpectrum", "hessian"]

# Keys of the measurement's random streams under ``seed`` (key 1 is the random ``subset``).
_KEY_LANCZOS = 2  # the Lanczos starting vector
_KEY_HUTCHINSON = 3  # the Rademacher vectors of the trace


@dataclass(frozen=True)
class HessianSpectrum(JsonRecord):
    """Top eigenvalues and trace of a training-loss Hessian, with provenance.

    Attributes:
        eigenvalues: the largest eigenvalues λ₁ ≥ λ₂ ≥ … (``top_k`` of them, descending;
            fewer when Lanczos did not converge: then only those that converged).
        converged: whether Lanczos converged for all ``top_k`` eigenvalues (``True`` when
            ``top_k = 0``).
        trace: Hutchinson estimate of tr H (mean of ``trace_draws``); ``None`` if not measured.
        trace_se: its standard error std(ddof=1)/√trace_samples; ``None`` if not measured.
        trace_draws: the per-draw values vᵀHv (``trace_samples`` of them).
        trace_samples: Rademacher vectors drawn (0 when the trace was not measured).
        n_hvp: Hessian-vector products computed in all (each one pass over all the data).
        n_hvp_lanczos: the part of ``n_hvp`` spent by Lanczos.
        top_k: eigenvalues asked for.
        tol: ARPACK's relative tolerance (0: machine precision).
        max_iter: ARPACK's limit on restart iterations.
        bn: BatchNorm policy, ``"eval"`` or ``"recompute"``.
        seed: seed of the Lanczos start and of the Rademacher vectors.
        params: which parameters the Hessian is over, ``"trainable"`` or ``"all"``.
        loss_fn: name of the loss function (``"cross_entropy"``, ``"<lambda>"``, ...).
        n_examples: examples the loss averages over.
        n_parameters: P, the size of the Hessian.
        model: class name of the measured model.
        dtype: dtype of the perturbed parameters (the HVPs run in it; sums are float64).
        device: device the HVPs ran on.
        torch_version: ``torch.__version__`` used.
        wideflat_version: ``wideflat.__version__`` used.
        wall_time_s: wall-clock time of the measurement, seconds.

    Example:
        >>> s = HessianSpectrum(eigenvalues=(2.0, 1.0), trace=3.5, trace_se=0.2,
        ...     trace_draws=(3.3, 3.7), trace_samples=2, n_hvp=12, top_k=2)
        >>> HessianSpectrum.from_dict(s.to_dict()) == s
        True
    """

    eigenvalues: tuple[float, ...]
    converged: bool = True
    trace: float | None = None
    trace_se: float | None = None
    trace_draws: tuple[float, ...] = ()
    trace_samples: int = 0
    n_hvp: int = 0
    n_hvp_lanczos: int = 0
    top_k: int = 1
    tol: float = 1e-3
    max_iter: int = 100
    bn: str = "eval"
    seed: int = 0
    params: str = "trainable"
    loss_fn: str = ""
    n_examples: int = 0
    n_parameters: int = 0
    model: str = ""
    dtype: str = ""
    device: str = "cpu"
    torch_version: str = ""
    wideflat_version: str = ""
    wall_time_s: float = 0.0

    FORMAT = "wideflat.hessian_spectrum"
    KIND = "spectrum"

    def __post_init__(self) -> None:
        if len(self.eigenvalues) > self.top_k:
            raise ValueError(
                f"Invalid eigenvalues: {len(self.eigenvalues)} values for top_k={self.top_k}"
            )
        if len(self.trace_draws) != self.trace_samples:
            raise ValueError(
                f"Invalid trace_draws: {len(self.trace_draws)} values for "
                f"trace_samples={self.trace_samples}"
            )
        if self.bn not in BN_POLICIES:
            raise ValueError(f"Invalid bn policy: {self.bn!r}")


def hessian(
    model: nn.Module,
    data: DataLoader | tuple[Tensor, Tensor],
    *,
    top_k: int = 1,
    trace: bool = True,
    trace_samples: int = 64,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
    bn: str = "eval",
    subset: int | Sequence[int] | None = None,
    batch_size: int = 1024,
    seed: int = 0,
    tol: float = 1e-3,
    max_iter: int = 100,
    params: str = "trainable",
    device: str | torch.device | None = None,
    progress: bool = True,
) -> HessianSpectrum:
    r"""Measure the top eigenvalues and the trace of the Hessian of the training loss.

    The Hessian is that of the mean loss over all of ``data`` (or the fixed ``subset``),
    batches weighted by their size, with respect to the perturbed parameters flattened into
    one vector w ∈ R^P (in ``model.named_parameters()`` order):

        H = ∇²_w L(w),    L(w) = (1/n) Σ_b n_b L_b(w),    Hv = (1/n) Σ_b n_b ∇²L_b(w) v.

    * **Eigenvalues.** The ``top_k`` largest algebraic eigenvalues (``which="LA"``: the most
      positive, not the largest in modulus) by ``scipy.sparse.linalg.eigsh`` on a
      ``LinearOperator`` whose matvec is one HVP (float64 vectors in and out; the HVP itself
      runs in the model's dtype, summed over batches in float64). ARPACK stops when
      ‖Hx − λx‖ ≤ ``tol``·|λ| for each Ritz pair, or after ``max_iter`` restarts. If it does
      not converge, the result has ``converged=False`` and only the eigenvalues that did
      converge (possibly none), and a ``RuntimeWarning`` is issued; nothing is raised, so the
      trace of a long measurement is not lost.
    * **Trace.** Hutchinson's estimator with Rademacher vectors v (entries ±1, so
      E[vvᵀ] = I and E[vᵀHv] = tr H): ``trace`` = (1/S) Σ_s v_sᵀHv_s over S =
      ``trace_samples`` draws, ``trace_se`` = std_s(ddof=1)/√S. Its variance per draw is
      2 Σ_{i≠j} H_ij² (zero for a diagonal H).

    Policies and guarantees:
        * **HVP engine.** Reverse-over-forward: ``torch.func.grad`` of the directional
          derivative ∇L_b·v computed by ``torch.func.jvp``, on
          ``torch.func.functional_call(model, w, (x,))``; exact (Pearlmutter's R-operator, H
          being symmetric). The model itself is never touched: the weights are passed as
          separate tensors, so frozen parameters need no ``requires_grad`` switch
          (``params="all"``), no graph is kept on the module and ``.grad`` is never written.
          The three exact engines (this one, forward-over-reverse ``jvp(grad(L_b))`` and
          double backward ``autograd.grad(grad(create_graph=True)·v)``) agree to float
          rounding on every registered model (MLP, SmallConvNet, ResNet-18/20, PyramidNet, in
          eval mode: BatchNorm on running statistics). This one was the fastest on conv nets,
          measured in CPU time, 1 thread, in gradient evaluations per HVP (reverse-over-forward
          / forward-over-reverse / double backward): SmallConvNet 2.39 / 2.68 / 2.70, ResNet-20
          3.26 / 3.71 / 3.84; on a 3-layer MLP double backward was faster
          (2.80 / 3.27 / 2.19). Forward-over-reverse loses on conv nets because PyTorch's
          forward-mode rule for ``convolution_backward`` runs extra convolutions (8 per HVP on
          SmallConvNet, against 5 here). ``benchmarks/hessian.py`` times it. A model needs
          forward-mode AD support (a custom ``autograd.Function`` needs a ``jvp``).
        * **Evaluation mode.** Every module is in ``eval()`` mode (Dropout off). With
          ``bn="eval"`` (default) BatchNorm uses its stored running statistics, held fixed.
          With ``bn="recompute"`` they are first re-estimated at w by a pass over the same
          data (cumulative average, as ``torch.optim.swa_utils.update_bn``), then held fixed:
          either way H is the Hessian of the eval-mode loss.
        * **No side effects.** ``model.state_dict()`` is bitwise unchanged (BatchNorm
          statistics recomputed for ``bn="recompute"`` are restored from saved copies), as are
          each module's train/eval flag and every ``.grad``. The global RNG state (CPU, and
          CUDA on ``device``) is saved and restored.
        * **Randomness.** The Lanczos starting vector (and any restart vector ARPACK asks
          for) comes from a NumPy generator on ``(seed, 2)``, the Rademacher vectors from a
          CPU ``torch.Generator`` seeded from ``(seed, 3)``, so results do not depend on the
          device's generator; a random ``subset`` is drawn from ``(seed, 1)``. The same seed
          gives the same numbers.
          A shuffling ``DataLoader`` is fine (the full-data loss does not depend on the
          order, up to float rounding), random augmentation is not.

    Args:
        model: any ``nn.Module`` mapping a batch of inputs to outputs.
        data: a ``DataLoader`` yielding ``(x, y, ...)`` batches, or a tuple ``(X, y)`` of tensors
            with equal first dimension. It is iterated once per HVP.
        top_k: number of top eigenvalues, 0 ≤ top_k < P (0: trace only).
        trace: estimate the trace (``False`` skips it).
        trace_samples: Rademacher vectors for the trace, ≥ 2 (one HVP each).
        loss_fn: ``loss_fn(output, target)`` returning the batch mean (a 0-dim tensor, as
            ``F.cross_entropy``) or a per-example vector of shape ``(B,)``; twice
            differentiable. Default cross-entropy.
        bn: BatchNorm policy, ``"eval"`` (default) or ``"recompute"`` (see above).
        subset: ``None`` (all of ``data``), an int n (n examples drawn without replacement
            from ``seed``) or a sequence of example indices (a loader needs a map-style
            dataset).
        batch_size: examples per pass for tensor data and for loader subsets (a loader without
            ``subset`` keeps its own batches). Memory grows linearly with it.
        seed: seed (int ≥ 0) of the measurement's generators.
        tol: ARPACK relative tolerance ≥ 0 (0: machine precision).
        max_iter: ARPACK restart iterations, ≥ 1.
        params: ``"trainable"`` (default: parameters with ``requires_grad``) or ``"all"``.
        device: where to compute; default the device of the model's first parameter. If it
            differs, a deep copy of the model is moved there (the original is not touched).
        progress: show a tqdm progress bar over HVPs.

    Returns:
        A :class:`HessianSpectrum`.

    Raises:
        ValueError: for a bad ``top_k`` (also ``top_k`` ≥ P, or 0 with ``trace=False``),
            ``trace``, ``trace_samples``, ``bn``, ``params``, ``tol``, ``max_iter``,
            ``batch_size``, ``seed``, ``subset`` or ``progress``; a non-callable ``loss_fn``
            or one whose output has the wrong shape; empty data, ``X``/``y`` of different
            lengths, or a model without parameters to differentiate.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> X, y = torch.randn(32, 3, dtype=torch.float64), torch.randn(32, dtype=torch.float64)
        >>> model = nn.Linear(3, 1, bias=False).double()
        >>> mse = lambda out, t: ((out.squeeze(-1) - t) ** 2).mean()
        >>> spec = hessian(model, (X, y), top_k=2, loss_fn=mse, tol=0, progress=False)
        >>> exact = torch.linalg.eigvalsh(2 * X.T @ X / 32).flip(0)
        >>> torch.allclose(torch.tensor(spec.eigenvalues, dtype=torch.float64), exact[:2])
        True
        >>> abs(spec.trace - exact.sum().item()) < 4 * spec.trace_se
        True
    """
    t_start = time.perf_counter()
    _check_arguments(
        model, top_k, trace, trace_samples, loss_fn, bn, batch_size, seed, tol, max_iter,
        params, progress,
    )  # fmt: skip
    top_k, trace_samples, batch_size, seed, max_iter = map(
        int, (top_k, trace_samples, batch_size, seed, max_iter)
    )
    tol = float(tol)
    work, device = on_device(model, device)
    named = perturbed_parameters(work, params)
    n_parameters = sum(p.numel() for _, p in named)
    if top_k >= n_parameters:
        raise ValueError(
            f"Invalid top_k: {top_k} (expected an integer < the number of parameters, "
            f"{n_parameters}; Lanczos needs top_k < P)"
        )
    batches = make_batches(data, subset, batch_size, seed, device)
    bar = tqdm(desc="hessian HVPs", unit="hvp", disable=not progress, leave=False)
    try:
        with measuring(work, named, device) as saved:
            if bn == "recompute" and any(
                isinstance(m, _BatchNorm) and m.track_running_stats for m in work.modules()
            ):
                with torch.no_grad():
                    recompute_bn(BatchNormOnlyTrains(work), batches)
            op = _HessianOperator(work, named, saved, batches, loss_fn, bar)
            eigenvalues, converged = _top_eigenvalues(op, top_k, tol, max_iter, seed)
            n_hvp_lanczos = op.count
            draws = _hutchinson(op, trace_samples, seed) if trace else []
    finally:
        bar.close()
    return _spectrum(
        model, eigenvalues, converged, draws, op, n_hvp_lanczos, top_k, tol, max_iter, bn,
        seed, params, loss_fn, n_parameters, named[0][1].dtype, device, t_start,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Internals
# --------------------------------------------------------------------------------------------


def _check_arguments(
    model, top_k, trace, trace_samples, loss_fn, bn, batch_size, seed, tol, max_iter, params,
    progress,
) -> None:  # fmt: skip
    """Refuse a bad argument of :func:`hessian` with a ``ValueError`` naming it."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"Invalid model: expected an nn.Module, got {type(model).__name__}")
    check.integer("top_k", top_k, minimum=0)
    if not isinstance(trace, bool):
        raise ValueError(f"Invalid trace: {trace!r} (expected True or False)")
    if top_k == 0 and not trace:
        raise ValueError("Invalid top_k: 0 with trace=False (nothing to compute)")
    check.integer("trace_samples", trace_samples, minimum=2)
    if not callable(loss_fn):
        raise ValueError(f"Invalid loss_fn: {loss_fn!r} is not callable")
    check.choice("bn policy", bn, BN_POLICIES)
    check.integer("batch_size", batch_size, minimum=1)
    check.integer("seed", seed, minimum=0)
    check.number("tol", tol, minimum=0.0, finite=True)
    check.integer("max_iter", max_iter, minimum=1)
    check.choice("params", params, PARAM_SETS)
    if not isinstance(progress, bool):
        raise ValueError(f"Invalid progress: {progress!r} (expected True or False)")


def _batch_mean(value: Any, n: int) -> Tensor:
    """The batch-mean loss of a 0-dim (already a mean) or per-example ``(n,)`` output."""
    if not isinstance(value, Tensor):
        raise ValueError(f"Invalid loss_fn output: {type(value).__name__} (expected a tensor)")
    if value.dim() == 0:
        return value
    if value.shape == (n,):
        return value.mean()
    raise ValueError(f"Invalid loss_fn output shape: {tuple(value.shape)} (expected () or ({n},))")


def _batch_hvp(
    model: nn.Module,
    names: Sequence[str],
    primals: tuple[Tensor, ...],
    tangents: tuple[Tensor, ...],
    x: Tensor,
    y: Tensor,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
) -> tuple[Tensor, ...]:
    """∇²L_b(w) v for the batch-mean loss L_b of one batch ``(x, y)``, per parameter.

    Reverse-over-forward: ``jvp`` gives the directional derivative D(w) = ∇L_b(w)·v (a scalar,
    forward mode), and ``grad`` of it gives ∇D(w) = ∇²L_b(w) v exactly, H being symmetric
    (Pearlmutter 1994). The weights ``primals`` (named ``names``) enter by a functional call;
    the model is not modified.
    """

    def batch_loss(weights: tuple[Tensor, ...]) -> Tensor:
        out = functional_call(model, dict(zip(names, weights, strict=True)), (x,))
        return _batch_mean(loss_fn(out, y), y.shape[0])

    def directional(weights: tuple[Tensor, ...]) -> Tensor:
        return jvp(batch_loss, (weights,), (tangents,))[1]

    with warnings.catch_warnings():
        # torch's first forward-mode call registers decompositions with torch.jit.script,
        # which warns of its own deprecation: torch's internals, nothing a user can act on.
        warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", DeprecationWarning)
        return grad(directional)(primals)


class _HessianOperator:
    """v ↦ Hv over all batches: float64 CPU vectors in and out, counting the products.

    Each batch's HVP of its mean loss is weighted by its size n_b and the float64 sum divided
    by n at the end, so Hv is that of the mean over all examples whatever the batch sizes.
    """

    def __init__(self, model, named, saved, batches: Batches, loss_fn, bar):
        self.model, self.batches, self.loss_fn, self.bar = model, batches, loss_fn, bar
        self.names = [name for name, _ in named]
        self.primals = tuple(saved[name] for name in self.names)
        self.size = sum(w.numel() for w in self.primals)
        self.count = 0
        self.n_examples = 0

    def __call__(self, v: np.ndarray) -> np.ndarray:
        flat = torch.as_tensor(np.array(v, dtype=np.float64).reshape(-1))
        pieces, start = [], 0
        for w in self.primals:
            piece = flat[start : start + w.numel()].reshape(w.shape)
            pieces.append(piece.to(device=w.device, dtype=w.dtype))
            start += w.numel()
        tangents = tuple(pieces)
        total: Tensor | None = None
        n = 0
        for x, y in self.batches:
            hv = _batch_hvp(self.model, self.names, self.primals, tangents, x, y, self.loss_fn)
            b = y.shape[0]
            part = torch.cat([h.reshape(-1).double() for h in hv]) * b
            total = part if total is None else total + part
            n += b
        if total is None or n == 0:
            raise ValueError("Invalid data: it yielded no examples")
        self.n_examples = n
        self.count += 1
        self.bar.update(1)
        return (total / n).cpu().numpy()


def _top_eigenvalues(
    op: _HessianOperator, top_k: int, tol: float, max_iter: int, seed: int
) -> tuple[list[float], bool]:
    """The ``top_k`` largest eigenvalues (descending) by Lanczos, and whether all converged."""
    if top_k == 0:
        return [], True
    # imported here: scipy.sparse.linalg adds ~0.3 s to ``import wideflat.flatness``
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

    # One NumPy stream for the starting vector (uniform on [-1, 1], ARPACK's own choice) and
    # for the fresh vectors ARPACK asks for when its Krylov space becomes invariant (scipy >=
    # 1.15 takes ``rng``; older versions draw those from Fortran state of their own).
    rng = _rng.numpy_generator(seed, _KEY_LANCZOS)
    v0 = rng.uniform(-1.0, 1.0, size=op.size)
    extra = {"rng": rng} if "rng" in inspect.signature(eigsh).parameters else {}
    linear = LinearOperator((op.size, op.size), matvec=op, dtype=np.float64)
    op.bar.set_description("hessian HVPs (Lanczos)")
    try:
        values = eigsh(
            linear, k=top_k, which="LA", tol=tol, maxiter=max_iter, v0=v0,
            return_eigenvectors=False, **extra,
        )  # fmt: skip
        converged = True
    except ArpackNoConvergence as exc:
        values, converged = exc.eigenvalues, False
        warnings.warn(
            f"hessian: Lanczos did not converge within max_iter={max_iter} (tol={tol}); "
            f"{len(values)} of top_k={top_k} eigenvalues converged and are reported "
            "(converged=False)",
            RuntimeWarning,
            stacklevel=3,  # _top_eigenvalues ← hessian ← its caller
        )
    return sorted((float(v) for v in values), reverse=True), converged


def _hutchinson(op: _HessianOperator, samples: int, seed: int) -> list[float]:
    """vᵀHv for ``samples`` Rademacher vectors v from the generator of ``(seed, 3)``."""
    gen = _rng.generator(seed, _KEY_HUTCHINSON, bits=63)
    op.bar.set_description("hessian HVPs (trace)")
    op.bar.total = op.count + samples
    op.bar.refresh()
    draws = []
    for _ in range(samples):
        v = torch.randint(0, 2, (op.size,), generator=gen, dtype=torch.float64).mul_(2).sub_(1)
        v = v.numpy()
        draws.append(float(v @ op(v)))
    return draws


def _spectrum(
    model, eigenvalues, converged, draws, op, n_hvp_lanczos, top_k, tol, max_iter, bn, seed,
    params, loss_fn, n_parameters, dtype, device, t_start,
) -> HessianSpectrum:  # fmt: skip
    """The :class:`HessianSpectrum` of the measured values, with the provenance."""
    trace_mean = trace_se = None
    if draws:
        arr = np.asarray(draws, dtype=np.float64)
        trace_mean = float(arr.mean())
        trace_se = float(arr.std(ddof=1) / math.sqrt(arr.size))
    return HessianSpectrum(
        eigenvalues=tuple(eigenvalues),
        converged=converged,
        trace=trace_mean,
        trace_se=trace_se,
        trace_draws=tuple(draws),
        trace_samples=len(draws),
        n_hvp=op.count,
        n_hvp_lanczos=n_hvp_lanczos,
        top_k=top_k,
        tol=tol,
        max_iter=max_iter,
        bn=bn,
        seed=seed,
        params=params,
        loss_fn=getattr(loss_fn, "__name__", type(loss_fn).__name__),
        n_examples=op.n_examples,
        n_parameters=n_parameters,
        model=type(model).__name__,
        dtype=str(dtype).removeprefix("torch."),
        device=str(device),
        **versions_and_time(t_start),
    )
