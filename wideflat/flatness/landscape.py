"""Loss landscapes between and around networks: lines, planes and random directions.

* :func:`interpolate`: loss and error on the line w(t) = (1 − t) w_a + t w_b between two
  networks, and its barrier (linear mode connectivity, Frankle et al. 2020).
* :func:`plane`: loss and error on the plane through three networks (Garipov et al. 2018).
* :func:`random_directions`, :func:`landscape_1d`, :func:`landscape_2d`: loss and error at
  w + α d (and w + α d₁ + β d₂) along filter-normalized random directions (Li et al. 2018).

Every measure follows :func:`~wideflat.flatness.local_energy`'s conventions: it evaluates a deep
copy of the model in ``eval()`` mode under ``torch.no_grad`` (the models passed in are never
written to, so their ``state_dict()`` and train/eval flags stay bitwise the same), forks the
global RNG (iterating a shuffling ``DataLoader`` here does not shift a training run's random
stream), averages ``loss_fn`` and ``error_fn`` over all examples of ``data`` (float64 sums,
batches weighted by their size), and returns a frozen result with its provenance and a strict-JSON
round trip. Plots of the results are in :mod:`wideflat.flatness.landscape_plots`.

References:
    Frankle, Dziugaite, Roy and Carbin, "Linear mode connectivity and the lottery ticket
    hypothesis", ICML 2020. Garipov, Izmailov, Podoprikhin, Vetrov and Wilson, "Loss surfaces,
    mode connectivity, and fast ensembling of DNNs", NeurIPS 2018. Li, Xu, Taylor, Studer and
    Goldstein, "Visualizing the loss landscape of neural nets", NeurIPS 2018.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
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
    model_device,
    perturbed_parameters,
)
from wideflat.flatness._perturbations import evaluate_plain
from wideflat.flatness._profile import BN_POLICIES
from wideflat.flatness._record import JsonRecord, versions_and_time
from wideflat.flatness.energy import classification_error

__all__ = [
    "Interpolation",
    "Landscape1D",
    "Landscape2D",
    "Plane",
    "interpolate",
    "landscape_1d",
    "landscape_2d",
    "plane",
    "random_directions",
]

IGNORE_CHOICES = ("biasbn", None)
_DIRECTION_KEY = 2  # derive_seed(seed, 2, k): direction k (0: local-energy noise, 1: subsets)

Data = DataLoader | tuple[Tensor, Tensor]
Values = Sequence[float] | Tensor | np.ndarray


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


def _check_rows(name: str, rows: Any, n_rows: int, n_cols: int) -> None:
    if len(rows) != n_rows or any(len(r) != n_cols for r in rows):
        raise ValueError(f"Invalid {name}: expected {n_rows} rows of {n_cols} values")


@dataclass(frozen=True)
class Interpolation(JsonRecord):
    """Loss and error on the line w(t) = (1 − t) w_a + t w_b between two networks.

    Losses are means of ``loss_fn``, errors means of ``error_fn`` (fractions of misclassified
    examples by default) over the evaluated examples; lower is better for both.

    Attributes:
        t: the interpolation coordinates, in the order given (t = 0 is w_a, t = 1 is w_b).
        loss: L(t) for each t.
        error: E(t) for each t.
        loss_a, error_a: L and E of model_a itself, under the same BN policy.
        loss_b, error_b: L and E of model_b itself.
        barrier_loss: max over t in [0, 1] of L(t) − ((1 − t) L(0) + t L(1)), over the grid's
            t in [0, 1] and the two endpoints (where it is 0), so ≥ 0; NaN if a value is.
        barrier_loss_t: the t where that maximum is reached (0.0 when it is an endpoint).
        barrier_error, barrier_error_t: the same for the error (Frankle et al.'s
            "error barrier height").
        distance: Euclidean distance ‖w_b − w_a‖ over the interpolated parameters.
        extend: the grid ran over [−extend, 1 + extend] (0.0 for an explicit grid).
        bn: BatchNorm policy, ``"eval"`` or ``"recompute"``.
        seed: seed of a random ``subset``.
        params: which parameters were interpolated, ``"all"`` or ``"trainable"``.
        n_examples: number of examples each evaluation averages over.
        n_parameters: number of interpolated scalar parameters.
        model: class name of model_a.
        device, torch_version, wideflat_version, wall_time_s: provenance.

    Example:
        >>> r = Interpolation(t=(0.0, 1.0), loss=(0.2, 0.3), error=(0.1, 0.1), loss_a=0.2,
        ...     error_a=0.1, loss_b=0.3, error_b=0.1, barrier_loss=0.0, barrier_loss_t=0.0,
        ...     barrier_error=0.0, barrier_error_t=0.0)
        >>> Interpolation.from_dict(r.to_dict()) == r, r.barrier
        (True, {'loss': 0.0, 'error': 0.0})
    """

    FORMAT = "wideflat.interpolation"

    t: tuple[float, ...]
    loss: tuple[float, ...]
    error: tuple[float, ...]
    loss_a: float
    error_a: float
    loss_b: float
    error_b: float
    barrier_loss: float
    barrier_loss_t: float
    barrier_error: float
    barrier_error_t: float
    distance: float = math.nan
    extend: float = 0.0
    bn: str = "eval"
    seed: int = 0
    params: str = "all"
    n_examples: int = 0
    n_parameters: int = 0
    model: str = ""
    device: str = "cpu"
    torch_version: str = ""
    wideflat_version: str = ""
    wall_time_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("loss", "error"):
            if len(getattr(self, name)) != len(self.t):
                raise ValueError(f"Invalid {name}: length != len(t) = {len(self.t)}")
        check.choice("bn policy", self.bn, BN_POLICIES)

    @property
    def barrier(self) -> dict[str, float]:
        """``{"loss": barrier_loss, "error": barrier_error}``."""
        return {"loss": self.barrier_loss, "error": self.barrier_error}


@dataclass(frozen=True)
class Plane(JsonRecord):
    """Loss and error on the plane through three networks a, b, c (Garipov et al. 2018).

    The point with coordinates (x, y) has the parameters

        w(x, y) = w_a + x u + y ‖u‖ v̂,   u = w_b − w_a,   v̂ = v / ‖v‖,
        v = (w_c − w_a) − (⟨w_c − w_a, u⟩ / ‖u‖²) u,

    so both axes are in units of ‖u‖ = ‖w_b − w_a‖ (Euclidean, over the selected parameters):
    a is at (0, 0), b at (1, 0), c at (⟨w_c − w_a, u⟩ / ‖u‖², ‖v‖ / ‖u‖).

    Attributes:
        labels: the names of the three networks (``("a", "b", "c")`` unless given).
        x: grid coordinates along u, increasing.
        y: grid coordinates along v̂, increasing.
        loss: ``loss[j][i]`` is the loss at ``(x[i], y[j])`` (rows follow y, as ``contourf``).
        error: the error on the same grid.
        coordinates: ``((0, 0), (1, 0), (x_c, y_c))``, the three networks' (x, y).
        model_loss: each network's own loss (evaluated at its own weights, same BN policy).
        model_error: each network's own error.
        unit: ‖u‖ = ‖w_b − w_a‖, the length of one coordinate unit in parameter space.
        margin: the default grid's margin, as a fraction of the points' span on each axis.
        bn, seed, params, n_examples, n_parameters, model, device, torch_version,
        wideflat_version, wall_time_s: as in :class:`Interpolation`.

    Example:
        >>> p = Plane(labels=("a", "b", "c"), x=(0.0, 1.0), y=(0.0, 1.0),
        ...     loss=((1.0, 2.0), (3.0, 4.0)), error=((0.0, 0.0), (0.0, 0.0)),
        ...     coordinates=((0.0, 0.0), (1.0, 0.0), (0.5, 1.0)), model_loss=(1.0, 2.0, 3.5),
        ...     model_error=(0.0, 0.0, 0.0), unit=2.0)
        >>> Plane.from_dict(p.to_dict()) == p
        True
    """

    FORMAT = "wideflat.plane"

    labels: tuple[str, str, str]
    x: tuple[float, ...]
    y: tuple[float, ...]
    loss: tuple[tuple[float, ...], ...]
    error: tuple[tuple[float, ...], ...]
    coordinates: tuple[tuple[float, float], ...]
    model_loss: tuple[float, float, float]
    model_error: tuple[float, float, float]
    unit: float
    margin: float = 0.2
    bn: str = "eval"
    seed: int = 0
    params: str = "all"
    n_examples: int = 0
    n_parameters: int = 0
    model: str = ""
    device: str = "cpu"
    torch_version: str = ""
    wideflat_version: str = ""
    wall_time_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("loss", "error"):
            _check_rows(name, getattr(self, name), len(self.y), len(self.x))
        for name in ("labels", "coordinates", "model_loss", "model_error"):
            if len(getattr(self, name)) != 3:
                raise ValueError(f"Invalid {name}: expected 3 entries (one per network)")
        check.choice("bn policy", self.bn, BN_POLICIES)


@dataclass(frozen=True)
class Landscape1D(JsonRecord):
    """Loss and error at w + α d along one direction d (Li et al. 2018).

    Attributes:
        alphas: the step sizes α, in the order given (α = 0 is the model itself).
        loss: L(w + α d) for each α.
        error: E(w + α d) for each α.
        base_loss, base_error: L and E of the model itself (α = 0), same BN policy.
        direction_norm: ‖d‖ (Euclidean, over the direction's parameters).
        weight_norm: ‖w‖ over the same parameters (filter-normalized directions make the two
            comparable: ‖d‖ ≈ ‖w‖ with biases and BatchNorm parameters included in w).
        bn, seed, n_examples, model, device, torch_version, wideflat_version, wall_time_s:
            as in :class:`Interpolation`; n_parameters: scalars in the direction.

    Example:
        >>> r = Landscape1D(alphas=(0.0,), loss=(0.3,), error=(0.1,), base_loss=0.3,
        ...     base_error=0.1, direction_norm=1.0, weight_norm=1.0)
        >>> Landscape1D.from_dict(r.to_dict()) == r
        True
    """

    FORMAT = "wideflat.landscape_1d"

    alphas: tuple[float, ...]
    loss: tuple[float, ...]
    error: tuple[float, ...]
    base_loss: float
    base_error: float
    direction_norm: float
    weight_norm: float
    bn: str = "eval"
    seed: int = 0
    n_examples: int = 0
    n_parameters: int = 0
    model: str = ""
    device: str = "cpu"
    torch_version: str = ""
    wideflat_version: str = ""
    wall_time_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("loss", "error"):
            if len(getattr(self, name)) != len(self.alphas):
                raise ValueError(f"Invalid {name}: length != len(alphas) = {len(self.alphas)}")
        check.choice("bn policy", self.bn, BN_POLICIES)


@dataclass(frozen=True)
class Landscape2D(JsonRecord):
    """Loss and error at w + α d₁ + β d₂ on a grid of (α, β) (Li et al. 2018).

    Attributes:
        alphas: the steps α along d₁ (the plot's x axis), in the order given.
        betas: the steps β along d₂ (the plot's y axis), in the order given.
        loss: ``loss[j][i]`` is L(w + alphas[i] d₁ + betas[j] d₂) (rows follow β).
        error: the error on the same grid.
        base_loss, base_error: L and E of the model itself (α = β = 0), same BN policy.
        direction_norms: (‖d₁‖, ‖d₂‖).
        direction_cosine: ⟨d₁, d₂⟩ / (‖d₁‖ ‖d₂‖) (near 0 for random directions in high
            dimension, so the plot's axes are nearly orthogonal in weight space).
        weight_norm: ‖w‖ over the directions' parameters.
        bn, seed, n_examples, n_parameters, model, device, torch_version, wideflat_version,
        wall_time_s: as in :class:`Landscape1D`.

    Example:
        >>> r = Landscape2D(alphas=(0.0,), betas=(0.0, 1.0), loss=((0.3,), (0.5,)),
        ...     error=((0.1,), (0.2,)), base_loss=0.3, base_error=0.1,
        ...     direction_norms=(1.0, 1.0), direction_cosine=0.0, weight_norm=1.0)
        >>> Landscape2D.from_dict(r.to_dict()) == r
        True
    """

    FORMAT = "wideflat.landscape_2d"

    alphas: tuple[float, ...]
    betas: tuple[float, ...]
    loss: tuple[tuple[float, ...], ...]
    error: tuple[tuple[float, ...], ...]
    base_loss: float
    base_error: float
    direction_norms: tuple[float, float]
    direction_cosine: float
    weight_norm: float
    bn: str = "eval"
    seed: int = 0
    n_examples: int = 0
    n_parameters: int = 0
    model: str = ""
    device: str = "cpu"
    torch_version: str = ""
    wideflat_version: str = ""
    wall_time_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("loss", "error"):
            _check_rows(name, getattr(self, name), len(self.betas), len(self.alphas))
        check.choice("bn policy", self.bn, BN_POLICIES)


# --------------------------------------------------------------------------------------------
# Measures
# --------------------------------------------------------------------------------------------


def interpolate(
    model_a: nn.Module,
    model_b: nn.Module,
    data: Data,
    points: int | Values = 21,
    *,
    extend: float = 0.0,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
    error_fn: Callable[[Tensor, Tensor], Tensor] = classification_error,
    bn: str = "eval",
    subset: int | Sequence[int] | None = None,
    batch_size: int = 1024,
    seed: int = 0,
    params: str = "all",
    device: str | torch.device | None = None,
    progress: bool = True,
) -> Interpolation:
    r"""Loss and error on the line between two networks, and its barrier.

    Evaluates the networks

        w(t) = (1 − t) w_a + t w_b

    for each t of the grid, and the endpoints themselves, and reports the barrier (Frankle et
    al. 2020, linear mode connectivity)

        B_L = max_{t ∈ [0, 1]} [L(t) − ((1 − t) L(0) + t L(1))],

    the largest rise of the loss above the straight chord between the endpoints' losses, and
    likewise B_E for the error. The maximum runs over the grid's t in [0, 1] and the two
    endpoints (where the difference is 0), so B ≥ 0; a finer grid can only find a larger one.
    Two networks are linearly mode connected when B_E is about 0.

    Policies:
        * **Exact endpoints.** w(t) is computed as (1 − t)·w_a + t·w_b, so t = 0 and t = 1
          give w_a and w_b bitwise, and a tensor that is bitwise equal in both networks
          (e.g. a frozen layer) is held as it is rather than recombined with rounding. The
          chord is computed from the nearer endpoint (L(0) + t (L(1) − L(0)) for t < 1/2,
          L(1) − (1 − t) (L(1) − L(0)) after, as ``torch.lerp``): exact at t = 0 and 1, and
          exactly flat for equal endpoint losses.
        * **BatchNorm.** With ``bn="eval"`` (default) every floating-point buffer, the
          BatchNorm running means and variances among them, is interpolated like the weights,
          and BatchNorm normalizes with those interpolated statistics. They are not the
          statistics of the interpolated network (its activations are not an average of the two
          networks'), which can make the middle of the line look worse than it is. With
          ``bn="recompute"`` the statistics are re-estimated on ``data`` at each t (and for
          each endpoint) by one pass in cumulative-average mode, as
          ``torch.optim.swa_utils.update_bn`` does; Frankle et al. and Garipov et al. do this.
          Outside [0, 1] (``extend`` > 0) an extrapolated running variance can turn negative,
          giving a NaN loss under ``bn="eval"``.
        * **Other tensors.** Parameters outside ``params`` and non-floating buffers (BatchNorm's
          ``num_batches_tracked``) are held at model_a's values.
        * **No side effects.** A deep copy of model_a, moved to ``device``, is evaluated in
          ``eval()`` mode; model_a and model_b are only read. The global RNG is forked.

    Args:
        model_a: the network at t = 0.
        model_b: the network at t = 1, with model_a's architecture: the same parameter and
            buffer names, shapes and dtypes.
        data: a ``DataLoader`` yielding ``(x, y, ...)`` batches, or a tuple ``(X, y)``. A loader
            is iterated once (twice with ``bn="recompute"``) per t; keep it deterministic.
        points: an int n ≥ 2 (n evenly spaced t on [−extend, 1 + extend], default 21) or an
            explicit sequence of finite t.
        extend: how far the int grid runs past each endpoint (≥ 0; default 0).
        loss_fn: ``loss_fn(output, target)``, a batch mean or per-example values.
        error_fn: ``error_fn(output, target)``, per-example errors (default
            :func:`~wideflat.flatness.classification_error`) or their batch mean.
        bn: BatchNorm policy, ``"eval"`` (default) or ``"recompute"`` (see above).
        subset: ``None`` (all of ``data``), an int n (n examples drawn from ``seed``) or indices.
        batch_size: examples per forward pass for tensor data and loader subsets.
        seed: seed (int ≥ 0) of a random ``subset``.
        params: ``"all"`` (default) or ``"trainable"`` parameters are interpolated.
        device: where to evaluate; default model_a's device.
        progress: show a tqdm progress bar.

    Returns:
        An :class:`Interpolation`.

    Raises:
        ValueError: for models of different architectures (naming the first mismatch), a
            non-module model, ``points`` < 2 or a bad grid, ``extend`` < 0 or given with an
            explicit grid, an unknown ``bn``/``params``, bad ``subset``/``batch_size``/``seed``,
            empty data, or ``loss_fn``/``error_fn`` outputs of the wrong shape.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> a, b = nn.Linear(4, 3), nn.Linear(4, 3)
        >>> X, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
        >>> r = interpolate(a, b, (X, y), 5, progress=False)
        >>> r.t, r.loss[0] == r.loss_a, r.loss[-1] == r.loss_b, r.barrier_loss >= 0
        ((0.0, 0.25, 0.5, 0.75, 1.0), True, True, True)

    References:
        Frankle et al., "Linear mode connectivity and the lottery ticket hypothesis", ICML 2020
        (§2, instability and error barrier height). Goodfellow, Vinyals and Saxe, "Qualitatively
        characterizing neural network optimization problems", ICLR 2015 (the linear path).
    """
    t_start = time.perf_counter()
    _check_module("model_a", model_a)
    _check_module("model_b", model_b)
    ts = _line_grid(points, extend)
    _check_settings(bn, batch_size, seed, loss_fn, error_fn)
    check.choice("params", params, PARAM_SETS)
    _check_same_architecture({"model_a": model_a, "model_b": model_b})
    dev = _device(device, model_a)
    batches = make_batches(data, subset, batch_size, seed, dev)
    bar = tqdm(total=len(ts) + 2, desc="interpolate", disable=not progress, leave=False)
    try:
        with _measurement(dev):
            probe = _Probe(model_a, dev, batches, loss_fn, error_fn, bn)
            selected = [name for name, _ in perturbed_parameters(probe.work, params)]
            ends = [_read(m, selected + probe.float_buffers, dev) for m in (model_a, model_b)]
            loss_a, err_a = probe(ends[0], bar)
            loss_b, err_b = probe(ends[1], bar)
            rows = [probe(_combine(ends, (1.0 - t, t)), bar) for t in ts]
    finally:
        bar.close()
    flat_a, flat_b = (_flatten(e, selected) for e in ends)
    losses = tuple(r[0] for r in rows)
    errors = tuple(r[1] for r in rows)
    b_loss, b_loss_t = _barrier(ts, losses, loss_a, loss_b)
    b_err, b_err_t = _barrier(ts, errors, err_a, err_b)
    return Interpolation(
        t=ts,
        loss=losses,
        error=errors,
        loss_a=loss_a,
        error_a=err_a,
        loss_b=loss_b,
        error_b=err_b,
        barrier_loss=b_loss,
        barrier_loss_t=b_loss_t,
        barrier_error=b_err,
        barrier_error_t=b_err_t,
        distance=float(torch.linalg.vector_norm(flat_b - flat_a)),
        extend=float(extend) if check.is_integer(points) else 0.0,
        params=params,
        n_parameters=flat_a.numel(),
        **_provenance(model_a, bn, seed, probe.n_examples, dev, t_start),
    )


def plane(
    models: Sequence[nn.Module] | Mapping[str, nn.Module],
    data: Data,
    grid: int | tuple[Values, Values] = 21,
    *,
    margin: float = 0.2,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
    error_fn: Callable[[Tensor, Tensor], Tensor] = classification_error,
    bn: str = "eval",
    subset: int | Sequence[int] | None = None,
    batch_size: int = 1024,
    seed: int = 0,
    params: str = "all",
    device: str | torch.device | None = None,
    progress: bool = True,
) -> Plane:
    r"""Loss and error on the plane through three networks (Garipov et al. 2018).

    With u = w_b − w_a and v = (w_c − w_a) − (⟨w_c − w_a, u⟩ / ‖u‖²) u (the Gram-Schmidt
    step, over the selected parameters flattened into one vector), the point (x, y) is

        w(x, y) = w_a + x u + y ‖u‖ v / ‖v‖,

    so x and y are both in units of ‖u‖ = ‖w_b − w_a‖: a is at (0, 0), b at (1, 0) and c at
    (x_c, y_c) = (⟨w_c − w_a, u⟩ / ‖u‖², ‖v‖ / ‖u‖), with y_c > 0. Distances on the plot are
    distances in weight space (one unit is ‖u‖, stored as ``unit``).

    Each point is computed as the affine combination (1 − α − β) w_a + α w_b + β w_c with
    β = y / y_c and α = x − x_c β (the same point), so the three networks' own coordinates give
    their weights bitwise. The default grid (``grid`` an int n) has n × n points and covers the
    three points with ``margin`` times their span added on each side of each axis:
    x ∈ [x_lo − m s_x, x_hi + m s_x] with x_lo = min(0, x_c), x_hi = max(1, x_c), s_x = x_hi − x_lo,
    and y ∈ [−m y_c, (1 + m) y_c].

    BatchNorm, the other tensors and side effects are handled as in :func:`interpolate`; with
    ``bn="eval"`` the floating-point buffers are combined with the same coefficients (a
    negative extrapolated running variance gives a NaN loss; ``bn="recompute"``, as Garipov et
    al. do at every grid point, avoids it).

    Args:
        models: three networks with the same architecture, as a sequence (labelled
            ``"a"``, ``"b"``, ``"c"``) or a mapping ``{label: model}`` of three.
        data: a ``DataLoader`` or a tuple ``(X, y)``, as in :func:`interpolate`.
        grid: an int n ≥ 2 (n × n points, default 21) or a pair ``(xs, ys)`` of coordinate
            sequences (each sorted increasingly here).
        margin: the int grid's margin, a fraction (≥ 0, default 0.2) of the points' span.
        loss_fn, error_fn, bn, subset, batch_size, seed, params, device, progress: as in
            :func:`interpolate`.

    Returns:
        A :class:`Plane`.

    Raises:
        ValueError: for other than three models, different architectures (naming the first
            mismatch), w_a = w_b, w_c on the line through w_a and w_b (to the rounding of
            the weights' dtype), a bad ``grid`` or
            ``margin``, and the errors of :func:`interpolate`.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> nets = [nn.Linear(4, 3) for _ in range(3)]
        >>> X, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
        >>> p = plane(nets, (X, y), grid=4, progress=False)
        >>> len(p.x), len(p.loss), p.coordinates[:2], p.coordinates[2][1] > 0
        (4, 4, ((0.0, 0.0), (1.0, 0.0)), True)

    References:
        Garipov et al., "Loss surfaces, mode connectivity, and fast ensembling of DNNs",
        NeurIPS 2018 (§4 and their ``plane.py``: the orthonormalized basis).
    """
    t_start = time.perf_counter()
    labels, nets = _three_models(models)
    margin = check.number("margin", margin, minimum=0.0, finite=True)
    explicit = None if check.is_integer(grid) else _pair_grid("grid", grid)
    n_grid = check.integer("grid", grid, minimum=2) if explicit is None else 0
    _check_settings(bn, batch_size, seed, loss_fn, error_fn)
    check.choice("params", params, PARAM_SETS)
    _check_same_architecture(dict(zip(labels, nets, strict=True)))
    dev = _device(device, nets[0])
    batches = make_batches(data, subset, batch_size, seed, dev)
    probe = _Probe(nets[0], dev, batches, loss_fn, error_fn, bn)
    selected = [name for name, _ in perturbed_parameters(probe.work, params)]
    ends = [_read(m, selected + probe.float_buffers, dev) for m in nets]
    eps = max(torch.finfo(ends[0][name].dtype).eps for name in selected)
    x_c, y_c, unit = _plane_coordinates([_flatten(e, selected) for e in ends], labels, eps)
    if explicit is None:
        x_lo, x_hi = min(0.0, x_c), max(1.0, x_c)
        span = x_hi - x_lo
        xs = _linspace(x_lo - margin * span, x_hi + margin * span, n_grid)
        ys = _linspace(-margin * y_c, (1.0 + margin) * y_c, n_grid)
    else:
        xs, ys = explicit
    bar = tqdm(total=3 + len(xs) * len(ys), desc="plane", disable=not progress, leave=False)
    try:
        with _measurement(dev):
            own = [probe(e, bar) for e in ends]
            rows = []
            for y in ys:
                beta = y / y_c
                row = []
                for x in xs:
                    alpha = x - x_c * beta
                    row.append(probe(_combine(ends, (1.0 - alpha - beta, alpha, beta)), bar))
                rows.append(row)
    finally:
        bar.close()
    return Plane(
        labels=labels,
        x=xs,
        y=ys,
        loss=tuple(tuple(v[0] for v in row) for row in rows),
        error=tuple(tuple(v[1] for v in row) for row in rows),
        coordinates=((0.0, 0.0), (1.0, 0.0), (x_c, y_c)),
        model_loss=tuple(v[0] for v in own),
        model_error=tuple(v[1] for v in own),
        unit=unit,
        margin=margin,
        params=params,
        n_parameters=sum(ends[0][name].numel() for name in selected),
        **_provenance(nets[0], bn, seed, probe.n_examples, dev, t_start),
    )


def random_directions(
    model: nn.Module,
    n: int = 1,
    *,
    seed: int = 0,
    filter_normalize: bool = True,
    ignore: str | None = "biasbn",
    params: str = "all",
) -> list[dict[str, Tensor]]:
    r"""Random Gaussian directions in weight space, filter-normalized (Li et al. 2018).

    Each direction d has one tensor per parameter, drawn from N(0, I). With
    ``filter_normalize=True`` (default) each filter of d is rescaled to the norm of the same
    filter of w,

        d_{i,·} ← d_{i,·} ‖w_{i,·}‖ / ‖d_{i,·}‖,

    where a filter is one index i of the first dimension of a weight tensor: an output unit of
    a linear layer, an output channel of a convolution. This removes the scale of each filter
    from the picture, so that landscapes of networks (or layers) with different weight scales
    are comparable; a zero filter of w gets a zero direction.

    Parameters with at most one dimension (biases, BatchNorm and LayerNorm weights) are set to
    zero with ``ignore="biasbn"`` (default, as in the paper), or treated like weights with
    ``ignore=None`` (each entry is its own filter: d_i = ±|w_i|; the paper's code copies w
    instead, i.e. d_i = w_i). Buffers (BatchNorm running statistics) are not part of a direction.

    Randomness: direction k is drawn on the CPU, parameter by parameter in
    ``named_parameters()`` order, from a dedicated ``torch.Generator`` seeded with
    ``derive_seed(seed, 2, k)``, then moved to the parameter's device and dtype. So the same seed
    gives the same directions on every device, the first direction of ``n=2`` is the direction
    of ``n=1``, and ``ignore`` does not change the weights' directions. The global RNG is not
    used.

    Args:
        model: the network at whose weights w the directions are normalized.
        n: the number of directions, 1 or 2.
        seed: seed (int ≥ 0) of the directions.
        filter_normalize: rescale each filter to the norm of w's filter (default ``True``);
            ``False`` keeps the raw N(0, 1) entries.
        ignore: ``"biasbn"`` (default) or ``None``.
        params: ``"all"`` (default) or ``"trainable"`` floating-point parameters get a direction.

    Returns:
        A list of n dicts ``{parameter name: tensor}``, shaped like the parameters, detached.

    Raises:
        ValueError: for a non-module model, n not 1 or 2, a bad ``seed``/``ignore``/``params``,
            a non-bool ``filter_normalize``, or a model without floating-point parameters.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Linear(3, 2)
        >>> (d,) = random_directions(net)
        >>> torch.allclose(d["weight"].norm(dim=1), net.weight.norm(dim=1)), d["bias"].tolist()
        (True, [0.0, 0.0])

    References:
        Li et al., "Visualizing the loss landscape of neural nets", NeurIPS 2018 (§4,
        filter-wise normalization; ``net_plotter.py``, ``ignore='biasbn'``).
    """
    _check_module("model", model)
    n = check.choice("n", n, (1, 2))
    seed = check.integer("seed", seed, minimum=0)
    if not isinstance(filter_normalize, bool):
        raise ValueError(f"Invalid filter_normalize: {filter_normalize!r} (expected a bool)")
    check.choice("ignore", ignore, IGNORE_CHOICES)
    check.choice("params", params, PARAM_SETS)
    named = perturbed_parameters(model, params)
    directions = []
    for k in range(int(n)):
        gen = _rng.generator(seed, _DIRECTION_KEY, k, bits=63)
        direction = {}
        for name, p in named:
            z = torch.randn(p.shape, generator=gen, dtype=p.dtype)  # drawn even when zeroed
            w = p.detach().to("cpu")
            if w.dim() <= 1 and ignore == "biasbn":
                z = torch.zeros_like(z)
            elif filter_normalize:
                z = _filter_normalized(z, w)
            direction[name] = z.to(p.device)
        directions.append(direction)
    return directions


def landscape_1d(
    model: nn.Module,
    data: Data,
    direction: Mapping[str, Tensor],
    alphas: int | Values,
    *,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
    error_fn: Callable[[Tensor, Tensor], Tensor] = classification_error,
    bn: str = "eval",
    subset: int | Sequence[int] | None = None,
    batch_size: int = 1024,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> Landscape1D:
    r"""Loss and error along one direction: L(w + α d) for each α (Li et al. 2018).

    Each parameter named in ``direction`` is set to w + α d (computed as ``w + d·α``, so
    α = 0 is w bitwise); parameters the direction does not name stay at w. With ``bn="eval"``
    (default) BatchNorm keeps the model's running statistics at every α; with
    ``bn="recompute"`` they are re-estimated on ``data`` at every α (and for the base model).
    A deep copy of the model is evaluated in ``eval()`` mode, so the model is bitwise unchanged;
    the global RNG is forked.

    Args:
        model: the network at w.
        data: a ``DataLoader`` or a tuple ``(X, y)``, as in :func:`interpolate`.
        direction: ``{parameter name: tensor}`` of the parameters' shapes, finite, e.g. one
            entry of :func:`random_directions`.
        alphas: an int n ≥ 2 (n evenly spaced α on [−1, 1], the paper's range) or a sequence
            of finite α.
        loss_fn, error_fn, bn, subset, batch_size, seed, device, progress: as in
            :func:`interpolate`.

    Returns:
        A :class:`Landscape1D`.

    Raises:
        ValueError: for a direction that names an unknown parameter, has the wrong shape or a
            non-finite entry, a bad ``alphas``, and the errors of :func:`interpolate`.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Linear(4, 3)
        >>> X, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
        >>> (d,) = random_directions(net, seed=1)
        >>> r = landscape_1d(net, (X, y), d, [-1.0, 0.0, 1.0], progress=False)
        >>> r.loss[1] == r.base_loss, len(r.error)
        (True, 3)

    References:
        Li et al., "Visualizing the loss landscape of neural nets", NeurIPS 2018 (§3-4).
    """
    t_start = time.perf_counter()
    _check_module("model", model)
    grid = _axis("alphas", alphas)
    _check_settings(bn, batch_size, seed, loss_fn, error_fn)
    dev = _device(device, model)
    (d,) = _check_directions(model, [direction], dev, ["direction"])
    batches = make_batches(data, subset, batch_size, seed, dev)
    bar = tqdm(total=len(grid) + 1, desc="landscape 1d", disable=not progress, leave=False)
    try:
        with _measurement(dev):
            probe = _Probe(model, dev, batches, loss_fn, error_fn, bn)
            w = _read(model, list(d), dev)
            base = probe(w, bar)
            rows = [probe(_step(w, [(d, a)]), bar) for a in grid]
    finally:
        bar.close()
    names = list(d)
    return Landscape1D(
        alphas=grid,
        loss=tuple(r[0] for r in rows),
        error=tuple(r[1] for r in rows),
        base_loss=base[0],
        base_error=base[1],
        direction_norm=_norm(d, names),
        weight_norm=_norm(w, names),
        n_parameters=sum(t.numel() for t in d.values()),
        **_provenance(model, bn, seed, probe.n_examples, dev, t_start),
    )


def landscape_2d(
    model: nn.Module,
    data: Data,
    directions: Sequence[Mapping[str, Tensor]],
    grid: int | Values | tuple[Values, Values],
    *,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
    error_fn: Callable[[Tensor, Tensor], Tensor] = classification_error,
    bn: str = "eval",
    subset: int | Sequence[int] | None = None,
    batch_size: int = 1024,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> Landscape2D:
    r"""Loss and error on a plane of two directions: L(w + α d₁ + β d₂) (Li et al. 2018).

    Each point is computed as ``(w + d₁·α) + d₂·β`` (so α = β = 0 is w bitwise); parameters
    neither direction names stay at w. BatchNorm and side effects as in :func:`landscape_1d`.

    Args:
        model: the network at w.
        data: a ``DataLoader`` or a tuple ``(X, y)``, as in :func:`interpolate`.
        directions: two directions ``[d₁, d₂]`` (e.g. ``random_directions(model, 2)``).
        grid: an int n ≥ 2 (n × n points on [−1, 1]²), one sequence of values used for both
            α and β, or a pair ``(alphas, betas)`` of sequences.
        loss_fn, error_fn, bn, subset, batch_size, seed, device, progress: as in
            :func:`interpolate`.

    Returns:
        A :class:`Landscape2D`, ``loss[j][i]`` at (alphas[i], betas[j]).

    Raises:
        ValueError: for other than two directions, a bad direction or ``grid``, and the errors
            of :func:`interpolate`.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Linear(4, 3)
        >>> X, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
        >>> r = landscape_2d(net, (X, y), random_directions(net, 2), 3, progress=False)
        >>> r.alphas, r.loss[1][1] == r.base_loss
        ((-1.0, 0.0, 1.0), True)

    References:
        Li et al., "Visualizing the loss landscape of neural nets", NeurIPS 2018 (§4-5,
        contour plots of L(w + α δ + β η)).
    """
    t_start = time.perf_counter()
    _check_module("model", model)
    if (
        not isinstance(directions, Sequence)
        or isinstance(directions, (str, Mapping))
        or len(directions) != 2
    ):
        raise ValueError(
            f"Invalid directions: {type(directions).__name__} (expected a list of two dicts)"
        )
    alphas, betas = _grid_2d(grid)
    _check_settings(bn, batch_size, seed, loss_fn, error_fn)
    dev = _device(device, model)
    d1, d2 = _check_directions(model, directions, dev, ["directions[0]", "directions[1]"])
    batches = make_batches(data, subset, batch_size, seed, dev)
    total = 1 + len(alphas) * len(betas)
    bar = tqdm(total=total, desc="landscape 2d", disable=not progress, leave=False)
    names = list(dict.fromkeys([*d1, *d2]))
    try:
        with _measurement(dev):
            probe = _Probe(model, dev, batches, loss_fn, error_fn, bn)
            w = _read(model, names, dev)
            base = probe(w, bar)
            rows = [[probe(_step(w, [(d1, a), (d2, b)]), bar) for a in alphas] for b in betas]
    finally:
        bar.close()
    n1, n2 = _norm(d1, names), _norm(d2, names)
    dot = sum(float((d1[k].double() * d2[k].double()).sum()) for k in names if k in d1 and k in d2)
    return Landscape2D(
        alphas=alphas,
        betas=betas,
        loss=tuple(tuple(v[0] for v in row) for row in rows),
        error=tuple(tuple(v[1] for v in row) for row in rows),
        base_loss=base[0],
        base_error=base[1],
        direction_norms=(n1, n2),
        direction_cosine=dot / (n1 * n2) if n1 > 0 and n2 > 0 else math.nan,
        weight_norm=_norm(w, names),
        n_parameters=sum(w[k].numel() for k in names),
        **_provenance(model, bn, seed, probe.n_examples, dev, t_start),
    )


# --------------------------------------------------------------------------------------------
# Internals: evaluation
# --------------------------------------------------------------------------------------------


class _Probe:
    """A deep copy of a model, evaluated in eval mode at the tensors written into it by name
    (with BatchNorm statistics re-estimated first under ``bn="recompute"``)."""

    def __init__(self, model, device, batches: Batches, loss_fn, error_fn, bn: str):
        self.work = copy.deepcopy(model).to(device)
        self.work.eval()
        self.slots = {**dict(self.work.named_buffers()), **dict(self.work.named_parameters())}
        self.float_buffers = [n for n, b in self.work.named_buffers() if b.is_floating_point()]
        self.batches, self.loss_fn, self.error_fn = batches, loss_fn, error_fn
        tracked = any(
            isinstance(m, _BatchNorm) and m.track_running_stats for m in self.work.modules()
        )
        self.recompute = bn == "recompute" and tracked
        self.n_examples = 0

    def __call__(self, values: Mapping[str, Tensor], bar) -> tuple[float, float]:
        """(mean loss, mean error) with ``values`` written into the copy."""
        with torch.no_grad():
            for name, value in values.items():
                self.slots[name].copy_(value)
            if self.recompute:
                recompute_bn(BatchNormOnlyTrains(self.work), self.batches)
            loss_sum, err_sum, n = evaluate_plain(
                self.work, self.batches, self.loss_fn, self.error_fn
            )
        if n == 0:
            raise ValueError("Invalid data: it yielded no examples")
        self.n_examples = n
        bar.update(1)
        return loss_sum / n, err_sum / n


@contextlib.contextmanager
def _measurement(device: torch.device) -> Iterator[None]:
    """No autograd; the global RNG (CPU, and CUDA on ``device``) restored on exit."""
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices), torch.no_grad():
        yield


def _read(model: nn.Module, names: list[str], device: torch.device) -> dict[str, Tensor]:
    """Detached copies of the named parameters and buffers of ``model`` on ``device``."""
    tensors = {**dict(model.named_buffers()), **dict(model.named_parameters())}
    return {name: tensors[name].detach().to(device, copy=True) for name in names}


def _combine(ends: list[dict[str, Tensor]], coefs: tuple[float, ...]) -> dict[str, Tensor]:
    """Σ_k coefs[k] · ends[k], tensor by tensor, left to right (a coefficient 1 with the others
    0 gives that end bitwise); a tensor bitwise equal in every end is returned as it is."""
    out = {}
    for name, first in ends[0].items():
        if all(torch.equal(first, e[name]) for e in ends[1:]):
            out[name] = first
            continue
        acc = torch.mul(first, coefs[0])
        for e, c in zip(ends[1:], coefs[1:], strict=True):
            acc = torch.add(acc, torch.mul(e[name], c))
        out[name] = acc
    return out


def _step(w: dict[str, Tensor], moves: list[tuple[dict[str, Tensor], float]]) -> dict[str, Tensor]:
    """w + d₁·α (+ d₂·β), parameter by parameter, for the parameters a direction names."""
    out = {}
    for name, value in w.items():
        for d, a in moves:
            if name in d:
                value = torch.add(value, torch.mul(d[name], a))
        out[name] = value
    return out


def _flatten(tensors: dict[str, Tensor], names: list[str]) -> Tensor:
    return torch.cat([tensors[n].reshape(-1).double() for n in names])


def _norm(tensors: dict[str, Tensor], names: list[str]) -> float:
    present = [n for n in names if n in tensors]
    return float(torch.linalg.vector_norm(_flatten(tensors, present))) if present else 0.0


def _barrier(
    ts: tuple[float, ...], values: tuple[float, ...], v0: float, v1: float
) -> tuple[float, float]:
    """(max, argmax) over t ∈ [0, 1] of value − chord(t), endpoints (0) included.

    The chord (1 − t) v0 + t v1 is computed from the nearer endpoint, as ``torch.lerp`` does,
    so it is v0 at t = 0 and v1 at t = 1 exactly, and exactly flat when v0 = v1."""
    if math.isnan(v0) or math.isnan(v1):
        return math.nan, math.nan
    best, best_t = 0.0, 0.0
    for t, v in zip(ts, values, strict=True):
        if not 0.0 <= t <= 1.0:
            continue
        chord = v0 + t * (v1 - v0) if t < 0.5 else v1 - (1.0 - t) * (v1 - v0)
        gap = v - chord
        if math.isnan(gap):
            return math.nan, math.nan
        if gap > best:
            best, best_t = gap, t
    return best, best_t


def _plane_coordinates(
    flat: list[Tensor], labels: tuple[str, ...], eps: float
) -> tuple[float, float, float]:
    """(x_c, y_c, ‖u‖) of the plane through the flattened networks a, b, c (in float64).

    c counts as on the line through a and b when ‖v‖ is within the rounding of the stored
    weights (machine epsilon ``eps`` of their dtype) of zero: v = (c − a) − x_c (b − a) then
    carries rounding noise of order eps (‖c‖ + ‖a‖ + |x_c| (‖a‖ + ‖b‖)), no direction."""
    a, b, c = flat
    u = b - a
    uu = float(torch.dot(u, u))
    if uu == 0.0:
        raise ValueError(
            f"Invalid models: {labels[0]!r} and {labels[1]!r} have the same parameters "
            "(the plane needs three points not on one line)"
        )
    ca = c - a
    x_c = float(torch.dot(ca, u)) / uu
    v_norm = float(torch.linalg.vector_norm(ca - x_c * u))
    na, nb, nc = (float(torch.linalg.vector_norm(w)) for w in flat)
    if v_norm <= 8.0 * eps * (na + nc + abs(x_c) * (na + nb)):
        raise ValueError(
            f"Invalid models: {labels[2]!r} lies on the line through {labels[0]!r} and "
            f"{labels[1]!r} (the plane needs three points not on one line)"
        )
    return x_c, v_norm / math.sqrt(uu), math.sqrt(uu)


def _filter_normalized(z: Tensor, w: Tensor) -> Tensor:
    """z with each filter (index of dim 0; a 0-dim tensor is one filter) rescaled to the norm
    of w's filter, computed in float64."""
    rows = 1 if w.dim() == 0 else w.shape[0]
    zd = z.double().reshape(rows, -1)
    w_norm = torch.linalg.vector_norm(w.double().reshape(rows, -1), dim=1)
    z_norm = torch.linalg.vector_norm(zd, dim=1)
    scale = torch.where(z_norm > 0, w_norm / z_norm, torch.zeros_like(w_norm))
    return (zd * scale[:, None]).reshape(z.shape).to(z.dtype)


def _provenance(model, bn, seed, n_examples, device, t_start) -> dict[str, Any]:
    return {
        "bn": bn,
        "seed": int(seed),
        "n_examples": n_examples,
        "model": type(model).__name__,
        "device": str(device),
        **versions_and_time(t_start),
    }


# --------------------------------------------------------------------------------------------
# Internals: validation
# --------------------------------------------------------------------------------------------


def _check_module(name: str, model: Any) -> None:
    if not isinstance(model, nn.Module):
        raise ValueError(f"Invalid {name}: expected an nn.Module, got {type(model).__name__}")


def _check_settings(bn, batch_size, seed, loss_fn, error_fn) -> None:
    check.choice("bn policy", bn, BN_POLICIES)
    check.integer("batch_size", batch_size, minimum=1)
    check.integer("seed", seed, minimum=0)
    if not callable(loss_fn):
        raise ValueError(f"Invalid loss_fn: {loss_fn!r} is not callable")
    if not callable(error_fn):
        raise ValueError(f"Invalid error_fn: {error_fn!r} is not callable")


def _device(device: Any, model: nn.Module) -> torch.device:
    if device is None:
        return model_device(model)
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"Invalid device: {device!r} ({exc})") from None


def _check_same_architecture(models: dict[str, nn.Module]) -> None:
    """Raise a ``ValueError`` naming the first parameter or buffer whose name, shape or dtype
    differs from the first model's."""
    (ref_label, ref), *others = models.items()
    for label, other in others:
        for kind, listing in (("parameter", "named_parameters"), ("buffer", "named_buffers")):
            mine = dict(getattr(ref, listing)())
            theirs = dict(getattr(other, listing)())
            for name, t in mine.items():
                if name not in theirs:
                    raise ValueError(
                        f"Invalid {label}: it has no {kind} {name!r}, which {ref_label} has "
                        "(the models must have the same architecture)"
                    )
                s = theirs[name]
                if s.shape != t.shape or s.dtype != t.dtype:
                    raise ValueError(
                        f"Invalid {label}: {kind} {name!r} is {tuple(s.shape)} {s.dtype}, "
                        f"{ref_label}'s is {tuple(t.shape)} {t.dtype} "
                        "(the models must have the same architecture)"
                    )
            for name in theirs:
                if name not in mine:
                    raise ValueError(
                        f"Invalid {label}: it has a {kind} {name!r}, which {ref_label} has not "
                        "(the models must have the same architecture)"
                    )


def _three_models(models: Any) -> tuple[tuple[str, str, str], list[nn.Module]]:
    if isinstance(models, Mapping):
        labels, nets = [str(k) for k in models], list(models.values())
    elif isinstance(models, Sequence) and not isinstance(models, str):
        labels, nets = ["a", "b", "c"][: len(models)], list(models)
    else:
        raise ValueError(
            f"Invalid models: {type(models).__name__} (expected three models in a list or dict)"
        )
    if len(nets) != 3:
        raise ValueError(f"Invalid models: {len(nets)} given (expected exactly three)")
    for label, net in zip(labels, nets, strict=True):
        _check_module(f"model {label!r}", net)
    return (labels[0], labels[1], labels[2]), nets


def _values(name: str, value: Any) -> tuple[float, ...]:
    """A non-empty tuple of finite floats from a sequence, array or tensor."""
    if isinstance(value, Tensor):
        items = value.detach().cpu().reshape(-1).tolist()
    elif isinstance(value, np.ndarray):
        items = value.reshape(-1).tolist()
    elif isinstance(value, Sequence) and not isinstance(value, str):
        items = list(value)
    else:
        raise ValueError(f"Invalid {name}: {value!r} (expected an int or a sequence of numbers)")
    if not items:
        raise ValueError(f"Invalid {name}: empty sequence")
    return tuple(check.number(name, v, finite=True) for v in items)


def _linspace(start: float, stop: float, n: int) -> tuple[float, ...]:
    return tuple(float(v) for v in np.linspace(start, stop, n))


def _line_grid(points: Any, extend: Any) -> tuple[float, ...]:
    extend = check.number("extend", extend, minimum=0.0, finite=True)
    if check.is_integer(points):
        n = check.integer("points", points, minimum=2)
        return _linspace(-extend, 1.0 + extend, n)
    if extend != 0.0:
        raise ValueError(
            f"Invalid extend: {extend} (it sets the range of an int number of points; "
            "an explicit sequence of t already gives its range)"
        )
    return _values("points", points)


def _axis(name: str, value: Any) -> tuple[float, ...]:
    if check.is_integer(value):
        return _linspace(-1.0, 1.0, check.integer(name, value, minimum=2))
    return _values(name, value)


def _is_sequence(value: Any) -> bool:
    return isinstance(value, (Tensor, np.ndarray)) or (
        isinstance(value, Sequence) and not isinstance(value, str)
    )


def _pair_grid(name: str, grid: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(xs, ys) from a pair of coordinate sequences, each sorted increasingly."""
    if not (
        _is_sequence(grid)
        and not isinstance(grid, (Tensor, np.ndarray))
        and len(grid) == 2
        and all(_is_sequence(g) for g in grid)
    ):
        raise ValueError(
            f"Invalid {name}: {grid!r} (expected an int >= 2 or a pair of sequences (xs, ys))"
        )
    xs, ys = (tuple(sorted(_values(name, g))) for g in grid)
    return xs, ys


def _grid_2d(grid: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    if check.is_integer(grid):
        axis = _axis("grid", grid)
        return axis, axis
    if (
        _is_sequence(grid)
        and not isinstance(grid, (Tensor, np.ndarray))
        and len(grid) == 2
        and all(_is_sequence(g) for g in grid)
    ):
        return _values("grid", grid[0]), _values("grid", grid[1])
    axis = _values("grid", grid)
    return axis, axis


def _check_directions(
    model: nn.Module, directions: Sequence[Any], device: torch.device, labels: list[str]
) -> list[dict[str, Tensor]]:
    """Each direction as ``{name: tensor}`` on ``device`` in its parameter's dtype, after
    checking it names floating-point parameters of ``model`` with their shapes, finite."""
    params = {n: p for n, p in model.named_parameters() if p.is_floating_point()}
    out = []
    for label, d in zip(labels, directions, strict=True):
        if not isinstance(d, Mapping) or not d:
            raise ValueError(
                f"Invalid {label}: {type(d).__name__} (expected a non-empty dict "
                "{parameter name: tensor})"
            )
        clean = {}
        for name, t in d.items():
            if name not in params:
                raise ValueError(
                    f"Invalid {label}: {name!r} is not a floating-point parameter of the model"
                )
            if not isinstance(t, Tensor) or t.shape != params[name].shape:
                shape = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
                raise ValueError(
                    f"Invalid {label}: entry {name!r} is {shape} "
                    f"(expected a tensor of shape {tuple(params[name].shape)})"
                )
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"Invalid {label}: entry {name!r} is not finite")
            clean[name] = t.detach().to(device=device, dtype=params[name].dtype, copy=True)
        out.append(clean)
    return out
