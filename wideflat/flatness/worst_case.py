"""Worst-case sharpness S(w) = max_{‖ε‖ ≤ ρ} L(w + ε) − L(w) of any ``nn.Module``.

The sharpness of SAM (Foret et al. 2021) and of the "fantastic generalization measures" study
(Jiang et al. 2020), found by projected gradient ascent on ε, with the scale-invariant ball of
ASAM (Kwon et al. 2021) and m-sharpness (the maximum per chunk of m examples, averaged) as
options. The result type is :class:`Sharpness`.

References:
    Foret et al., "Sharpness-Aware Minimization for Efficiently Improving Generalization",
    ICLR 2021. Kwon et al., "ASAM: Adaptive Sharpness-Aware Minimization for Scale-Invariant
    Learning of Deep Neural Networks", ICML 2021. Jiang et al., "Fantastic generalization
    measures and where to find them", ICLR 2020. Madry et al., "Towards Deep Learning Models
    Resistant to Adversarial Attacks", ICLR 2018 (projected gradient ascent from a random start).
    Martínez, "Local minimizers of quadratic functions on Euclidean balls and spheres", SIAM J.
    Optim. 1994.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
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

__all__ = ["Sharpness", "sharpness"]


# --------------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sharpness(JsonRecord):
    """The worst-case loss increase in a ball, its ascent trajectories and provenance.

    Losses are means of ``loss_fn`` over the examples of a chunk (the whole data when
    ``m`` is None). Values are lower bounds on the true maximum: the best point the ascent
    evaluated (ε = 0 included, so ``value`` ≥ 0).

    Attributes:
        value: S(w): the maximum loss increase found, averaged over chunks weighted by their
            size (one chunk, all the data, when ``m`` is None).
        value_se: standard error of that average from the spread of the chunk values
            (``sqrt(k/(k−1) Σ p_c² (v_c − value)²)``, p_c = n_c/n; the usual std/√k for equal
            chunks); NaN for a single chunk. It measures data variation, not ascent error.
        base_loss: L(w), the size-weighted mean of the chunks' losses at w (the loss over all
            the data; with ``bn="recompute"`` and ``m`` each chunk uses its own statistics).
        chunk_values: per chunk, its maximum loss increase.
        chunk_base_losses: per chunk, its loss at w.
        chunk_sizes: per chunk, its number of examples.
        trajectories: ``[chunk][restart][k]``: the chunk's loss at the k-th ascent iterate
            w + ε_k (k = 0 the random start; ``steps + 1`` values unless the ascent stopped at
            a zero or non-finite gradient).
        best_restart: per chunk, the restart that reached its maximum.
        rho: radius ρ of the ball. adaptive: whether the ball is ASAM's ‖ε / T_w‖ ≤ ρ.
        eta: η in T_w = |w| + η (adaptive only). steps: gradient-ascent steps per restart.
        step_size: length of each normalized step (in the ball's coordinates).
        m: examples per chunk (m-sharpness), or None. restarts: random starts per chunk.
        bn: BatchNorm policy. seed: seed of the measurement generator. params: which
            parameters were perturbed. n_parameters: number of perturbed scalar weights.
        n_examples: examples evaluated. loss: name of ``loss_fn``. model: class name of the
            model. device: where it ran. torch_version, wideflat_version: versions used.
        wall_time_s: wall-clock time of the measurement, seconds.

    Example:
        >>> s = Sharpness(value=0.5, value_se=float("nan"), base_loss=1.0, chunk_values=(0.5,),
        ...     chunk_base_losses=(1.0,), chunk_sizes=(4,), trajectories=(((1.2, 1.5),),),
        ...     best_restart=(0,), rho=0.1)
        >>> s.trajectory, Sharpness.from_dict(s.to_dict()).to_dict() == s.to_dict()
        ((1.2, 1.5), True)
    """

    value: float
    value_se: float
    base_loss: float
    chunk_values: tuple[float, ...]
    chunk_base_losses: tuple[float, ...]
    chunk_sizes: tuple[int, ...]
    trajectories: tuple[tuple[tuple[float, ...], ...], ...]
    best_restart: tuple[int, ...]
    rho: float
    adaptive: bool = False
    eta: float = 0.01
    steps: int = 10
    step_size: float = 0.0
    m: int | None = None
    restarts: int = 1
    bn: str = "eval"
    seed: int = 0
    params: str = "trainable"
    n_parameters: int = 0
    n_examples: int = 0
    loss: str = ""
    model: str = ""
    device: str = "cpu"
    torch_version: str = ""
    wideflat_version: str = ""
    wall_time_s: float = 0.0

    FORMAT = "wideflat.sharpness"

    def __post_init__(self) -> None:
        k = len(self.chunk_values)
        for name in ("chunk_base_losses", "chunk_sizes", "trajectories", "best_restart"):
            if len(getattr(self, name)) != k:
                raise ValueError(f"Invalid {name}: length {len(getattr(self, name))} != {k} chunks")
        if self.bn not in BN_POLICIES:
            raise ValueError(f"Invalid bn policy: {self.bn!r}")

    @property
    def trajectory(self) -> tuple[float, ...]:
        """The losses along the best restart's ascent of the first (with m=None, only) chunk."""
        return self.trajectories[0][self.best_restart[0]]


# --------------------------------------------------------------------------------------------
# Measure
# --------------------------------------------------------------------------------------------


def sharpness(
    model: nn.Module,
    data: DataLoader | tuple[Tensor, Tensor],
    rho: float,
    *,
    adaptive: bool = False,
    eta: float = 0.01,
    steps: int = 10,
    step_size: float | None = None,
    m: int | None = None,
    restarts: int = 1,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
    bn: str = "eval",
    subset: int | Sequence[int] | None = None,
    batch_size: int = 1024,
    seed: int = 0,
    params: str = "trainable",
    device: str | torch.device | None = None,
    progress: bool = True,
) -> Sharpness:
    r"""Measure the worst-case loss increase of a model in a ball of radius ρ around w.

    Plain (``adaptive=False``, SAM's sharpness):

        S(w) = max_{‖ε‖₂ ≤ ρ} L(w + ε) − L(w).

    Adaptive (``adaptive=True``, ASAM's scale-invariant sharpness), with T_w = |w| + η
    elementwise:

        S_a(w) = max_{‖ε / T_w‖₂ ≤ ρ} L(w + ε) − L(w) = max_{‖ε'‖₂ ≤ ρ} L(w + T_w ⊙ ε') − L(w).

    L is the mean of ``loss_fn`` over all of ``data`` (batches weighted by their size). The
    maximum is sought by projected, normalized gradient ascent in the ball's coordinates
    (ε' = ε / T_w, or ε itself when plain), from a start drawn uniformly in the ball (at a
    minimum the gradient vanishes, so ε = 0 would never move):

        g_k = ∇_ε' L(w + T_w ⊙ ε'_k) = T_w ⊙ ∇L(w + ε_k),
        ε'_{k+1} = Π_ρ(ε'_k + α g_k / ‖g_k‖₂),      Π_ρ(v) = v · min(1, ρ / ‖v‖₂),

    ``steps`` times, for each of ``restarts`` independent starts; the result is the best loss
    evaluated (the iterates k = 0..steps and ε = 0), so it is a lower bound on S.

    Step size: α = ``step_size``, by default ρ, the length of SAM's single ascent step. Normalized
    steps make α a length, independent of the scale of the loss. Near a boundary maximum ε*
    (where ∇ = μ ε*, μ ≥ 0) of a quadratic loss with Hessian H, the error tangent to the sphere
    shrinks per step by the factors (1 + (α/ρ) λ/μ) / (1 + α/ρ) over the other eigenvalues λ
    of H, all below 1 at the global maximum (there μ ≥ λ_max(H)). These factors depend on α/ρ
    only, so a fixed α ∝ ρ converges further with more ``steps``, whereas the PGD rule
    α = 2.5 ρ / steps (Madry et al. 2018) fixes the path length, and with it the accuracy,
    whatever ``steps`` (measured: 10.6% short of ½ ρ² λ_max with 100 steps on a quadratic
    where α = ρ is exact to 1e-14). At a minimum, where L(w + ε) − L(w) = ½ εᵀHε, the ascent
    is the power method on I + α H / ‖Hε‖ and finds the top eigendirection from almost every
    start. Away from a minimum even a convex quadratic can have one local, non-global maximum
    on the sphere (Martínez 1994) at which some starts end; ``restarts`` guard against it.

    m-sharpness (``m`` given; Foret et al. 2021, §4): the examples are split, in the order
    ``data`` yields them, into consecutive chunks of m (the last may be smaller), each chunk's
    own maximum S_c is found with its own loss L_c, and S = Σ_c (n_c/n) S_c, the plain average
    for equal chunks.

    Scale invariance: with η = 0 the adaptive ball is invariant to the rescalings ASAM
    describes. If an operator A with w ↦ A w leaves the function unchanged and acts
    elementwise by positive factors (e.g. a ReLU layer's weights and bias times c > 0 and the
    next layer's weights times 1/c), then T_{Aw} = A T_w, so w + T_w ⊙ ε' maps to
    A(w + T_w ⊙ ε'): the same loss at the same ε', the same gradients in ε' and the same
    ascent path, hence the same S_a. η > 0 (ASAM's default 0.01, which lets zero weights move)
    breaks this by O(η / |w|). The plain S changes under such rescalings.

    Policies and guarantees (as :func:`~wideflat.flatness.local_energy`):
        * **Evaluation mode.** Every module is in ``eval()`` mode (Dropout off). With
          ``bn="eval"`` (default) BatchNorm uses its stored running statistics. With
          ``bn="recompute"`` the statistics are re-estimated at every evaluated point (and at
          w) by a pass over the data the loss is taken on (the chunk, with ``m``), in
          cumulative-average mode; the gradient treats them as constants.
        * **No side effects.** Gradients come from ``torch.func.functional_call`` on
          w + T_w ⊙ ε' (``torch.autograd.grad``, so no ``.grad`` is written and
          ``requires_grad`` flags are untouched); ``bn="recompute"`` also writes the point
          into the parameters for the statistics pass. Parameters, buffers, train/eval flags
          and BatchNorm momenta are restored bitwise afterwards, and the global RNG state
          (CPU, and CUDA on ``device``) is saved and restored.
        * **Randomness.** Starts come from a dedicated ``torch.Generator`` on ``device``;
          restart r of chunk c uses a seed derived from ``(seed, 2, c, r)``. A random
          ``subset`` is drawn from ``seed`` too. Results depend on the device type.

    Args:
        model: any ``nn.Module`` mapping a batch of inputs to outputs.
        data: a ``DataLoader`` yielding ``(x, y, ...)`` batches, or a tuple ``(X, y)`` of tensors
            with equal first dimension. A loader is iterated once per evaluated point (once in
            all with ``m``) and should be deterministic.
        rho: radius ρ > 0 of the ball.
        adaptive: use ASAM's ball ‖ε / T_w‖₂ ≤ ρ, T_w = |w| + η.
        eta: η ≥ 0 of T_w (ignored unless ``adaptive``). Default 0.01 as ASAM. Unlike ASAM's
            code, which scales weights only and leaves biases unscaled (T = 1), every perturbed
            parameter here gets T_w = |w| + η, so the invariance above covers biases.
        steps: gradient-ascent steps per restart, ≥ 1.
        step_size: α > 0, the length of each normalized step in the ball's coordinates;
            default ρ.
        m: examples per chunk for m-sharpness, ≥ 1; None (default): all data as one chunk.
        restarts: independent random starts per chunk, ≥ 1; the best is kept.
        loss_fn: ``loss_fn(output, target)``, differentiable, returning the batch mean (0-dim,
            as ``F.cross_entropy``) or a per-example vector of shape ``(B,)``.
        bn: BatchNorm policy, ``"eval"`` (default) or ``"recompute"`` (see above).
        subset: ``None`` (all of ``data``), an int n (n examples drawn without replacement
            from ``seed``) or a sequence of example indices.
        batch_size: examples per forward pass for tensor data and loader subsets.
        seed: seed (int ≥ 0) of the measurement generator.
        params: ``"trainable"`` (default: parameters with ``requires_grad``) or ``"all"``.
        device: where to evaluate; default the model's device. If it differs, a deep copy of
            the model is moved there (the original is not touched).
        progress: show a tqdm progress bar over ascent steps.

    Returns:
        A :class:`Sharpness`.

    Raises:
        ValueError: for ρ ≤ 0 or non-finite, η < 0, ``steps``/``restarts``/``m`` < 1, a bad
            ``step_size``/``bn``/``params``/``subset``/``batch_size``/``seed``, empty or
            malformed data, a model without parameters to perturb, a non-callable
            ``loss_fn`` or one whose output has the wrong shape or no gradient.

    Note:
        With ``bn="recompute"`` the parameters are written in place (and restored): do not
        call it between a forward pass and its ``backward()``.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
        >>> X, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
        >>> res = sharpness(model, (X, y), 0.05, steps=5, progress=False)
        >>> res.value > 0, len(res.trajectory), res.step_size
        (True, 6, 0.05)
        >>> import tempfile, os
        >>> path = res.to_json(os.path.join(tempfile.mkdtemp(), "sharpness.json"))
        >>> Sharpness.from_json(path).to_dict() == res.to_dict()
        True
    """
    t_start = time.perf_counter()
    _check_arguments(
        model, rho, adaptive, eta, steps, step_size, m, restarts, loss_fn, bn, batch_size, seed,
        params,
    )  # fmt: skip
    rho, eta = float(rho), float(eta)
    steps, restarts, batch_size, seed = map(int, (steps, restarts, batch_size, seed))
    m = None if m is None else int(m)
    alpha = rho if step_size is None else float(step_size)
    work, device = on_device(model, device)
    named = perturbed_parameters(work, params)
    batches = make_batches(data, subset, batch_size, seed, device)
    n_known = _known_size(batches)
    n_chunks = 1 if m is None else (None if n_known is None else -(-n_known // m))
    total = None if n_chunks is None else n_chunks * restarts * steps
    bar = tqdm(total=total, desc="sharpness", disable=not progress, leave=False)
    chunks_out = []
    try:
        with measuring(work, named, device) as saved:
            ascent = _Ascent(
                work, named, saved, loss_fn, rho, alpha, steps, restarts,
                eta if adaptive else None, bn == "recompute", seed, device, bar,
            )  # fmt: skip
            chunks = [batches] if m is None else _chunks(batches, m)
            for c, chunk in enumerate(chunks):
                chunks_out.append(ascent.chunk(c, chunk))
    finally:
        bar.close()
    if not chunks_out or sum(r[2] for r in chunks_out) == 0:
        raise ValueError("Invalid data: it yielded no examples")
    return _result(
        model, chunks_out, rho, adaptive, eta, steps, alpha, m, restarts, bn, seed, params,
        sum(p.numel() for _, p in named), loss_fn, device, t_start,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Internals
# --------------------------------------------------------------------------------------------


def _check_arguments(
    model, rho, adaptive, eta, steps, step_size, m, restarts, loss_fn, bn, batch_size, seed,
    params,
) -> None:  # fmt: skip
    """Refuse a bad argument of :func:`sharpness` with a ``ValueError``."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"Invalid model: expected an nn.Module, got {type(model).__name__}")
    _positive("rho", rho)
    if not isinstance(adaptive, bool):
        raise ValueError(f"Invalid adaptive: {adaptive!r} (expected True or False)")
    check.number("eta", eta, minimum=0.0, finite=True)
    check.integer("steps", steps, minimum=1)
    if step_size is not None:
        _positive("step_size", step_size)
    if m is not None:
        check.integer("m", m, minimum=1)
    check.integer("restarts", restarts, minimum=1)
    if not callable(loss_fn):
        raise ValueError(f"Invalid loss_fn: {loss_fn!r} is not callable")
    check.choice("bn policy", bn, BN_POLICIES)
    check.integer("batch_size", batch_size, minimum=1)
    check.integer("seed", seed, minimum=0)
    check.choice("params", params, PARAM_SETS)


def _positive(name: str, value: Any) -> float:
    """``float(value)`` if it is a finite number > 0, else ``ValueError`` naming it."""
    try:
        number = check.number(name, value, finite=True)
    except ValueError:
        number = math.nan
    if not number > 0:
        raise ValueError(f"Invalid {name}: {value!r} (expected a finite number > 0)")
    return number


def _known_size(batches: Batches) -> int | None:
    """Number of examples ``batches`` will yield, when known without iterating."""
    if batches.tensors is not None:
        return int(batches.tensors[0].shape[0])
    dataset = getattr(batches.loader, "dataset", None)
    try:
        return len(dataset)
    except TypeError:
        return None


def _chunks(batches: Iterable[tuple[Tensor, Tensor]], m: int) -> Iterator[list]:
    """Consecutive chunks of m examples (the last may be smaller), each a list of ``(x, y)``
    pieces, cut from the batches in the order they come."""
    pieces: list[tuple[Tensor, Tensor]] = []
    have = 0
    for x, y in batches:
        start = 0
        b = int(y.shape[0])
        while start < b:
            take = min(m - have, b - start)
            pieces.append((x[start : start + take], y[start : start + take]))
            have += take
            start += take
            if have == m:
                yield pieces
                pieces, have = [], 0
    if have:
        yield pieces


def _batch_sum(value: Any, n: int) -> Tensor:
    """Σ over the batch of a batch-mean (0-dim) or per-example (n,) loss, differentiable."""
    if not isinstance(value, Tensor):
        raise ValueError(f"Invalid loss_fn output: {type(value).__name__} (expected a tensor)")
    if value.dim() == 0:
        return value * n
    if value.shape == (n,):
        return value.sum()
    raise ValueError(f"Invalid loss_fn output shape: {tuple(value.shape)} (expected () or ({n},))")


def _norm(tensors: list[Tensor]) -> float:
    """‖(t_1, ..., t_k)‖₂ over all elements, accumulated in float64."""
    return math.sqrt(sum(float(t.detach().double().square().sum()) for t in tensors))


class _Ascent:
    """Projected normalized gradient ascent on one chunk: its loss at w and its best L(w + ε).

    Coordinates: the ascent variable is ε' (one tensor per perturbed parameter), the point is
    w + T ⊙ ε' (T = |w| + η, adaptive) or w + ε' (plain, T = 1), and the ball is ‖ε'‖₂ ≤ ρ.
    Autograd through w + T ⊙ ε' gives the gradient in ε' directly (the chain rule's T ⊙ ∇L).
    """

    def __init__(
        self, model, named, saved, loss_fn, rho, alpha, steps, restarts, eta, recompute, seed,
        device, bar,
    ):  # fmt: skip
        self.model, self.named, self.saved, self.loss_fn = model, named, saved, loss_fn
        self.rho, self.alpha, self.steps, self.restarts = rho, alpha, steps, restarts
        self.seed, self.bar = seed, bar
        self.names = [name for name, _ in named]
        self.base = [saved[name] for name in self.names]
        self.scale = None if eta is None else [w.abs() + eta for w in self.base]
        tracked = any(
            isinstance(mod, _BatchNorm) and mod.track_running_stats for mod in model.modules()
        )
        self.recompute = recompute and tracked
        self.gen = torch.Generator(device=device)

    def point(self, eps: list[Tensor]) -> list[Tensor]:
        """w + T ⊙ ε' (or w + ε'), per parameter."""
        if self.scale is None:
            return [w + e for w, e in zip(self.base, eps, strict=True)]
        return [w + t * e for w, t, e in zip(self.base, self.scale, eps, strict=True)]

    def _prepare(self, weights: list[Tensor], chunk) -> None:
        """With BatchNorm recomputed: write the point in and re-estimate the statistics."""
        if not self.recompute:
            return
        with torch.no_grad():
            for (_, p), w in zip(self.named, weights, strict=True):
                p.copy_(w)
        recompute_bn(BatchNormOnlyTrains(self.model), chunk)

    def loss(self, eps: list[Tensor] | None, chunk) -> tuple[float, int]:
        """(Σ loss, n) over the chunk at w + T ⊙ ε' (at w when ``eps`` is None)."""
        weights = self.base if eps is None else self.point(eps)
        self._prepare(weights, chunk)
        total, n = 0.0, 0
        params = dict(zip(self.names, weights, strict=True))
        with torch.no_grad():
            for x, y in chunk:
                out = torch.func.functional_call(self.model, params, (x,))
                total += float(_batch_sum(self.loss_fn(out, y), int(y.shape[0])).double())
                n += int(y.shape[0])
        return total, n

    def loss_and_grad(self, eps: list[Tensor], chunk) -> tuple[float, int, list[Tensor]]:
        """(Σ loss, n, ∇_ε' Σ loss) over the chunk at w + T ⊙ ε'."""
        with torch.no_grad():
            self._prepare(self.point(eps), chunk)
        leaves = [e.detach().requires_grad_(True) for e in eps]
        grads = [torch.zeros_like(e) for e in eps]
        total, n = 0.0, 0
        with torch.enable_grad():
            for x, y in chunk:
                b = int(y.shape[0])
                params = dict(zip(self.names, self.point(leaves), strict=True))
                out = torch.func.functional_call(self.model, params, (x,))
                s = _batch_sum(self.loss_fn(out, y), b)
                if not s.requires_grad:
                    raise ValueError(
                        "Invalid loss_fn: its output has no gradient with respect to the weights"
                    )
                for g, gb in zip(grads, torch.autograd.grad(s, leaves), strict=True):
                    g.add_(gb)
                total += float(s.detach().double())
                n += b
        return total, n, grads

    def start(self, c: int, r: int) -> list[Tensor]:
        """ε'_0 uniform in the ball: direction ξ/‖ξ‖ (ξ ~ N(0, I)), radius ρ U^(1/n)."""
        self.gen.manual_seed(_rng.derive_seed(self.seed, 2, c, r, bits=63))
        xi = [
            torch.randn(w.shape, generator=self.gen, device=w.device, dtype=w.dtype)
            for w in self.base
        ]
        u = float(torch.rand((), generator=self.gen, device=self.gen.device, dtype=torch.float64))
        n = sum(w.numel() for w in self.base)
        norm = _norm(xi)
        factor = self.rho * u ** (1.0 / n) / norm if norm > 0 else 0.0
        return [t * factor for t in xi]

    def chunk(self, c: int, chunk) -> tuple[float, float, int, list[tuple[float, ...]], int]:
        """(max increase, base loss, n, trajectories, best restart) of chunk ``c``."""
        base_sum, n = self.loss(None, chunk)
        if n == 0:
            return 0.0, 0.0, 0, [() for _ in range(self.restarts)], 0
        base_loss = base_sum / n
        trajectories: list[tuple[float, ...]] = []
        for r in range(self.restarts):
            trajectories.append(self._restart(c, r, chunk, n))
        best = max(range(self.restarts), key=lambda r: max(trajectories[r]))
        value = max(0.0, max(trajectories[best]) - base_loss)  # ε = 0 is in the ball
        return value, base_loss, n, trajectories, best

    def _restart(self, c: int, r: int, chunk, n: int) -> tuple[float, ...]:
        eps = self.start(c, r)
        path: list[float] = []
        for k in range(self.steps):
            total, _, grad = self.loss_and_grad(eps, chunk)
            path.append(total / n)
            gnorm = _norm(grad)
            if not (gnorm > 0 and math.isfinite(gnorm)):  # stationary or broken: stop here
                self.bar.update(self.steps - k)
                return tuple(path)
            with torch.no_grad():
                eps = [e + g * (self.alpha / gnorm) for e, g in zip(eps, grad, strict=True)]
                norm = _norm(eps)
                if norm > self.rho:
                    eps = [e * (self.rho / norm) for e in eps]
            self.bar.update(1)
        path.append(self.loss(eps, chunk)[0] / n)
        return tuple(path)


def _result(
    model, chunks_out, rho, adaptive, eta, steps, alpha, m, restarts, bn, seed, params,
    n_parameters, loss_fn, device, t_start,
) -> Sharpness:  # fmt: skip
    """The :class:`Sharpness` of the per-chunk results, with the provenance."""
    chunks_out = [r for r in chunks_out if r[2] > 0]
    sizes = [r[2] for r in chunks_out]
    n = sum(sizes)
    values = [r[0] for r in chunks_out]
    weights = [s / n for s in sizes]
    value = sum(p * v for p, v in zip(weights, values, strict=True))
    k = len(values)
    spread = sum(p * p * (v - value) ** 2 for p, v in zip(weights, values, strict=True))
    value_se = math.sqrt(k / (k - 1) * spread) if k > 1 else math.nan
    return Sharpness(
        value=value,
        value_se=value_se,
        base_loss=sum(p * r[1] for p, r in zip(weights, chunks_out, strict=True)),
        chunk_values=tuple(values),
        chunk_base_losses=tuple(r[1] for r in chunks_out),
        chunk_sizes=tuple(sizes),
        trajectories=tuple(tuple(r[3]) for r in chunks_out),
        best_restart=tuple(r[4] for r in chunks_out),
        rho=rho,
        adaptive=adaptive,
        eta=eta,
        steps=steps,
        step_size=alpha,
        m=m,
        restarts=restarts,
        bn=bn,
        seed=seed,
        params=params,
        n_parameters=n_parameters,
        n_examples=n,
        loss=getattr(loss_fn, "__name__", type(loss_fn).__name__),
        model=type(model).__name__,
        device=str(device),
        **versions_and_time(t_start),
    )
