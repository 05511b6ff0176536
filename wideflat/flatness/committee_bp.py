"""Local entropy of a committee machine by Belief Propagation (paper appendix B.1).

The normalized local entropy of a reference ``w`` with zero training error is the log of the
fraction of a ball around ``w`` whose points still classify every training pattern correctly.
For the committee machine it is computed, as in the paper, by relaxed BP with a Gaussian prior
``N(w, 1/gamma)`` on the weights, the Bethe free entropy at the fixed point, and a Legendre
transform from the coupling ``gamma`` to the distance. The equations are in
``bp-local-entropy.md`` (wideflat's shared specification), sections 1-5.

Units (stated once, used everywhere in this module):

* ``n = N * K`` weights; every intensive quantity is **per weight** and uses natural logs;
* the distance is ``delta = d(w', w) / n = |w' - w|^2 / (2 n)``, with the paper's
  ``d(w', w) = 1/2 sum (w'_i - w_i)^2`` over all ``n`` weights;
* by default each row of ``w`` is first rescaled to ``|w_k|^2 = N`` (the constraint set is
  invariant under this rescaling, the ball is not), so distances refer to that scale;
* to normalise by the input dimension ``N`` instead, as in ``(1/N) log(...)``, multiply the local
  entropy by ``K``; the total squared distance is ``2 n delta``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import torch

from wideflat import _validate as check
from wideflat._io import json_ready
from wideflat.flatness._bp_inputs import (
    check_positive,
    committee_correct,
    normalize_rows,
    validate_committee,
)
from wideflat.flatness._bp_solvers import EdgeBP, Gamp, Problem, StepResult
from wideflat.flatness._legendre import legendre_to_ball

__all__ = ["BPConvergenceError", "CommitteeLocalEntropy", "committee_local_entropy"]

DEFAULT_GAMMAS = tuple(float(g) for g in np.geomspace(1e4, 0.3, 30))
_MAX_DAMPING = 0.995
_PHI_TOL = 1e-8  # |phi(t) - phi(t - 10)| required at convergence (per weight)


class BPConvergenceError(RuntimeError):
    """Raised by :func:`committee_local_entropy` with ``on_failure="raise"`` when BP fails."""


@dataclass(frozen=True)
class CommitteeLocalEntropy:
    """A local-entropy curve ``Phi_LE(delta)`` of one committee-machine reference.

    All sequences have one entry per point, sorted by increasing distance (decreasing gamma).
    Per-weight units, ``n = N * K``; see the module docstring.

    Attributes:
        distance: ``delta(gamma) = <|w' - w|^2> / (2 n)`` under the BP marginals (NaN where BP
            did not converge).
        local_entropy: ``Phi_LE(delta) = phi + (u - 1 - log u) / 2`` with ``u = 2 gamma delta``;
            NaN where BP did not converge (see ``converged`` and ``failures``).
        gamma: Coupling ``gamma = 1 / Delta`` (precision of the Gaussian prior).
        phi: ``(1/n) log P_{w' ~ N(w, I/gamma)}[every pattern correct]`` (Bethe estimate).
        converged: Whether BP met the convergence test at this point.
        iterations: BP iterations spent on this point (all damping restarts and, with
            ``distances``, all root-finding solves included).
        residual: Final message residual (dimensionless, see ``tol``).
        damping: Damping factor in force at the end of this point.
        target_distance: The requested distances (``distances=`` mode), else ``None``.
        failures: One human-readable line per point that did not converge.
        n_inputs: ``N``. n_hidden: ``K``.
        n_patterns: Patterns used as constraints. n_training_errors: Patterns that ``w``
            misclassifies (dropped from the constraints under ``training_errors="drop"``).
        training_errors: The policy used, ``"raise"`` or ``"drop"``.
        method: ``"gamp"`` or ``"edge"``. normalized: Whether rows were rescaled to norm^2 N.
        elapsed_s: Wall time of the computation, in seconds.
    """

    distance: tuple[float, ...]
    local_entropy: tuple[float, ...]
    gamma: tuple[float, ...]
    phi: tuple[float, ...]
    converged: tuple[bool, ...]
    iterations: tuple[int, ...]
    residual: tuple[float, ...]
    damping: tuple[float, ...]
    target_distance: tuple[float, ...] | None
    failures: tuple[str, ...]
    n_inputs: int
    n_hidden: int
    n_patterns: int
    n_training_errors: int
    training_errors: str
    method: str
    normalized: bool
    elapsed_s: float

    @property
    def all_converged(self) -> bool:
        """True when every point converged."""
        return all(self.converged)

    @property
    def n_weights(self) -> int:
        """``n = N * K``, the normalisation of every per-weight quantity."""
        return self.n_inputs * self.n_hidden

    def to_dict(self) -> dict:
        """JSON-serialisable dict (``json.dumps(..., allow_nan=False)`` works): NaN and Inf
        become ``None``; the per-weight units are recorded under ``"units"``."""
        out = {k: json_ready(v) for k, v in asdict(self).items()}
        out["units"] = (
            "per weight, n = N*K, natural log; distance = |w'-w|^2/(2n) with rows of w "
            + ("rescaled to |w_k|^2 = N" if self.normalized else "as given")
        )
        return out


@contextlib.contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run the body with ``torch.set_num_threads(n)`` and restore the previous count after."""
    before = torch.get_num_threads()
    if n is not None and n != before:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


@dataclass
class _Solved:
    """Outcome of one fixed-point solve at one gamma."""

    state: tuple[torch.Tensor, ...]
    result: StepResult
    iterations: int
    damping: float
    converged: bool
    reason: str


def _fixed_point(
    solver, state, gamma: float, damping: float, *, tol: float, max_iter: int
) -> _Solved:
    """Iterate BP at fixed ``gamma`` from ``state`` with adaptive damping.

    Damping ``lam`` mixes old and new messages, ``m <- lam m + (1 - lam) m_new``. On a NaN or a
    violated positivity guard, on divergence (residual 1e3 times above the best seen) or on a
    stall (no new best residual in ``patience`` iterations) it returns to the best messages seen
    so far (initially the warm start) and sets ``lam <- 1 - (1 - lam) / 2``. Converged means
    residual < ``tol`` and ``|phi(t) - phi(t - 10)| < 1e-8``.
    """
    best_err, best_state = math.inf, state
    phis: list[float] = []
    stall = 0
    last: StepResult | None = None
    for it in range(1, max_iter + 1):
        r = solver.step(state, gamma, damping)
        patience = max(100, int(20 / (1.0 - damping)))
        diverged = r.valid and math.isfinite(best_err) and r.err > 1e3 * best_err
        if not r.valid or diverged or stall > patience:
            if damping >= _MAX_DAMPING:
                why = "non-finite messages" if not r.valid else "no progress"
                res = last if last is not None else r
                return _Solved(best_state, res, it, damping, False, f"{why} at damping {damping}")
            damping = 1.0 - (1.0 - damping) / 2.0
            state, phis, stall = best_state, [], 0
            continue
        if r.err < best_err:
            best_err, best_state, stall = r.err, r.state, 0
        else:
            stall += 1
        state, last = r.state, r
        phis.append(r.phi)
        ref = phis[-11] if len(phis) > 10 else (phis[-2] if len(phis) > 1 else math.inf)
        if r.err < tol and abs(r.phi - ref) < _PHI_TOL:
            return _Solved(state, r, it, damping, True, "")
    res = last if last is not None else r
    return _Solved(
        state, res, max_iter, damping, False, f"max_iter={max_iter} reached, residual {res.err:.3g}"
    )


def _solve_point(solver, state, gamma: float, damping: float, *, tol: float, max_iter: int):
    """:func:`_fixed_point` from the warm start; if that fails, once more from the prior."""
    solved = _fixed_point(solver, state, gamma, damping, tol=tol, max_iter=max_iter)
    if solved.converged:
        return solved
    cold = _fixed_point(
        solver, solver.init_state(gamma), gamma, damping, tol=tol, max_iter=max_iter
    )
    cold.iterations += solved.iterations
    if not cold.converged:
        cold.reason = f"warm start: {solved.reason}; cold start: {cold.reason}"
    return cold


def committee_local_entropy(
    w: torch.Tensor | np.ndarray,
    X: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    *,
    distances: Sequence[float] | np.ndarray | None = None,
    gammas: Sequence[float] | np.ndarray | None = None,
    method: Literal["gamp", "edge"] = "gamp",
    normalize: bool = True,
    training_errors: Literal["raise", "drop"] = "raise",
    damping: float = 0.5,
    tol: float = 1e-7,
    max_iter: int = 2000,
    distance_rtol: float = 1e-4,
    on_failure: Literal["report", "raise"] = "report",
    progress: bool = False,
) -> CommitteeLocalEntropy:
    """Normalized local entropy ``Phi_LE(w, d)`` of a committee machine by relaxed BP.

    The committee machine is ``sigma(w, x) = sign(sum_k sign(w_k . x / sqrt(N)))`` with ``K``
    odd hidden units and second-layer weights +1. For each coupling ``gamma`` BP runs on

    ``P_gamma(w') ∝ prod_ki exp(-gamma (w'_ki - w_ki)^2 / 2) prod_mu Theta(y_mu sigma(w', x_mu))``,

    with Gaussian (CLT) messages and the exact majority over the K hidden signs in each pattern
    factor. At the fixed point, the Bethe free entropy ``F`` gives

    ``phi(gamma) = [F - (n/2) log(2 pi / gamma)] / n ≈ (1/n) log P_{N(w, I/gamma)}[all correct]``,
    ``delta(gamma) = sum_ki [(a_ki - w_ki)^2 + v_ki] / (2n)`` from the marginals, and, since
    ``d phi / d gamma = 1/(2 gamma) - delta``, the Legendre transform to a ball of radius
    ``sqrt(2 n delta)`` relative to the empty problem ``S0 = log(4 pi e delta) / 2``:

    ``Phi_LE(delta) = phi + (u - 1 - log u) / 2``, ``u = 2 gamma delta`` (<= 0; -> 0 as delta -> 0).

    Units are per weight (``n = N K``, natural log; ``delta = d(w', w) / n``); see the module
    docstring for conversions.

    Two solvers give the same fixed point to O(1/N): ``method="gamp"`` (default; generalized
    AMP, two matrix products per iteration, a 30-point curve at N=784, K=9, M=500 in seconds;
    it runs on one torch thread, the caller's thread count is restored afterwards)
    and ``method="edge"`` (per-edge messages of shape (M, K, N), the reference implementation,
    exact when the factor graph is a tree, about 0.2-0.4 s per iteration at full size). The sweep
    runs from the largest gamma down, each point warm-started from the previous fixed point
    (messages start at the prior), with adaptive damping carried from point to point.

    A reference with training errors has no local factor form for ``E(w') <= E(w)``. With
    ``training_errors="drop"`` only the patterns that ``w`` classifies correctly are
    constrained: the result is a *lower bound* on ``Phi_LE`` (exact when ``E(w) = 0``). The
    default ``"raise"`` refuses such a reference.

    Args:
        w: Reference weights, shape ``(K, N)``, ``K`` odd, finite.
        X: Training inputs, shape ``(M, N)``, ±1 or real (``x^2`` enters the variances).
        y: Labels in ``{-1, +1}``, shape ``(M,)``.
        distances: Per-weight distances ``delta > 0`` at which to evaluate ``Phi_LE``; gamma is
            found for each by a secant search on ``log delta(log gamma)`` to relative accuracy
            ``distance_rtol``. Mutually exclusive with ``gammas``.
        gammas: Couplings ``gamma > 0`` to evaluate (default: 30 log-spaced values from 1e4 down
            to 0.3 when neither argument is given).
        method: ``"gamp"`` or ``"edge"``.
        normalize: Rescale each row of ``w`` to ``|w_k|^2 = N`` first (recommended).
        training_errors: ``"raise"`` or ``"drop"`` (see above).
        damping: Initial damping in ``[0, 1)``; raised automatically on trouble.
        tol: Convergence threshold on the dimensionless residual
            ``max(|Δg| sqrt(V), |Δg'| V, |Δa| / sqrt(v), |Δv| / v)`` (GAMP) or
            ``max(sqrt(N) |ΔB| sqrt(V), N |ΔA| V)`` over edges (edge BP).
        max_iter: Iteration cap per BP solve (a solve that fails from the warm start is retried
            once from the prior).
        distance_rtol: Relative tolerance on ``delta`` in ``distances`` mode.
        on_failure: ``"report"`` (default): non-converged points get NaN ``local_entropy``,
            ``converged=False`` and a line in ``failures``; ``"raise"``: raise
            :class:`BPConvergenceError` at the first failure.
        progress: Show a tqdm progress bar.

    Returns:
        A frozen :class:`CommitteeLocalEntropy`.

    Raises:
        ValueError: bad shapes, non-finite values, labels not ±1, even ``K``, non-positive
            distances or gammas, both or an invalid option, or training errors under ``"raise"``.
        BPConvergenceError: with ``on_failure="raise"`` when a point does not converge.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> w = torch.randn(3, 50, generator=g, dtype=torch.float64)
        >>> X = torch.randint(0, 2, (20, 50), generator=g).double() * 2 - 1
        >>> y = torch.sign(torch.sign(X @ w.T).sum(1))
        >>> res = committee_local_entropy(w, X, y, gammas=[100.0, 10.0, 1.0])
        >>> res.all_converged, len(res.distance)
        (True, 3)
        >>> all(p <= 0 for p in res.local_entropy)
        True

    References:
        Pittorino et al., "Entropic gradient descent algorithms and wide flat minima", ICLR 2021,
        appendix B.1; Baldassi, Pittorino, Zecchina, PNAS 117(1):161 (2020), SI appendix IV.
    """
    t0 = time.perf_counter()
    w, X, y = validate_committee(w, X, y)
    _check_options(method, training_errors, on_failure, damping, tol, max_iter, distance_rtol)
    targets, grid = _sweep_points(distances, gammas)
    if normalize:
        w = normalize_rows(w)
    X, y, n_err = _constraints(w, X, y, training_errors)
    solver = (Gamp if method == "gamp" else EdgeBP)(Problem.build(w, X, y))
    points = _Points(len(grid) if grid is not None else len(targets), method, on_failure, progress)
    # GAMP's arrays are small ((M, K), (K, N)): one thread is fastest, and with several threads
    # on a busy machine intra-op synchronisation made a curve 20-50x slower (measured).
    threads = 1 if method == "gamp" else None
    try:
        with _torch_threads(threads):
            _sweep(solver, grid, targets, float(damping), tol, max_iter, distance_rtol, points)
    finally:
        points.close()
    return CommitteeLocalEntropy(
        **points.columns(),
        target_distance=None if targets is None else tuple(float(t) for t in targets),
        n_inputs=int(w.shape[1]),
        n_hidden=int(w.shape[0]),
        n_patterns=int(X.shape[0]),
        n_training_errors=n_err,
        training_errors=training_errors,
        method=method,
        normalized=bool(normalize),
        elapsed_s=time.perf_counter() - t0,
    )


def _check_options(method, training_errors, on_failure, damping, tol, max_iter, rtol) -> None:
    """Refuse a bad option of :func:`committee_local_entropy` with a ``ValueError``."""
    check.choice("method", method, ("gamp", "edge"))
    check.choice("training_errors", training_errors, ("raise", "drop"))
    check.choice("on_failure", on_failure, ("report", "raise"))
    if not (isinstance(damping, int | float) and 0.0 <= damping < 1.0):
        raise ValueError(f"Invalid damping: {damping} (expected 0 <= damping < 1)")
    if not (isinstance(tol, int | float) and tol > 0 and math.isfinite(tol)):
        raise ValueError(f"Invalid tol: {tol} (expected a finite value > 0)")
    check.integer("max_iter", max_iter, minimum=1, numpy=False)
    if not (isinstance(rtol, int | float) and 0 < rtol < 1):
        raise ValueError(f"Invalid distance_rtol: {rtol} (expected 0 < rtol < 1)")


def _sweep_points(distances, gammas) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(targets, grid)``: the sorted target distances, or the couplings largest first."""
    if distances is not None and gammas is not None:
        raise ValueError("Invalid arguments: give distances or gammas, not both")
    if distances is not None:
        return np.sort(check_positive("distances", distances)), None
    grid = np.sort(check_positive("gammas", DEFAULT_GAMMAS if gammas is None else gammas))
    return None, grid[::-1]


def _constraints(w, X, y, training_errors: str):
    """The patterns ``w`` classifies correctly and the number it misclassifies (refused under
    ``training_errors="raise"``)."""
    correct = committee_correct(w, X, y)
    n_err = int((~correct).sum())
    if n_err and training_errors == "raise":
        raise ValueError(
            f"Invalid w: the reference misclassifies {n_err} of {len(y)} training patterns; "
            "Phi_LE needs E_train(w) = 0, or pass training_errors='drop' for a lower bound"
        )
    return X[correct], y[correct], n_err


class _Points:
    """The curve's points in the order they are solved, a progress bar and the failure policy."""

    def __init__(self, n_points: int, method: str, on_failure: str, progress: bool):
        self.rows: list[dict] = []
        self.on_failure = on_failure
        self.bar = None
        if progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=n_points, desc=f"BP local entropy ({method})", unit="pt")

    def record(
        self, solved: _Solved, gamma: float, iters: int, target: float | None, extra: str = ""
    ) -> None:
        """Add the point solved at ``gamma`` (``extra``: a reason to count it as failed)."""
        r = solved.result
        ok = solved.converged and not extra
        phi_le = legendre_to_ball(r.phi, gamma, r.delta) if ok else math.nan
        where = f"gamma={gamma:.6g}" + (f" (target distance {target:.6g})" if target else "")
        reason = extra or solved.reason
        self.rows.append(
            dict(
                distance=r.delta if ok else math.nan,
                local_entropy=phi_le,
                gamma=gamma,
                phi=r.phi if ok else math.nan,
                converged=ok,
                iterations=iters,
                residual=r.err,
                damping=solved.damping,
                failure=None if ok else f"{where}: BP did not converge: {reason}",
            )
        )
        if not ok and self.on_failure == "raise":
            raise BPConvergenceError(self.rows[-1]["failure"])
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def columns(self) -> dict:
        """The per-point fields of :class:`CommitteeLocalEntropy`."""

        def col(key, kind):
            return tuple(kind(p[key]) for p in self.rows)

        floats = ("distance", "local_entropy", "gamma", "phi", "residual", "damping")
        return {
            **{key: col(key, float) for key in floats},
            "converged": col("converged", bool),
            "iterations": col("iterations", int),
            "failures": tuple(p["failure"] for p in self.rows if p["failure"]),
        }


def _sweep(solver, grid, targets, damping, tol, max_iter, rtol, points: _Points) -> None:
    """Solve every point, largest gamma first, each warm-started from the last fixed point."""
    first_gamma = float(grid[0]) if grid is not None else 0.5 / float(targets[0])
    state, lam = solver.init_state(first_gamma), damping
    if grid is not None:
        for gamma in grid:
            solved = _solve_point(solver, state, float(gamma), lam, tol=tol, max_iter=max_iter)
            if solved.converged:
                state, lam = solved.state, solved.damping
            points.record(solved, float(gamma), solved.iterations, None)
        return
    u = 1.0  # 2 gamma delta of the last solved point; 1 for the empty problem
    for target in targets:
        state, lam, u = _solve_distance(
            solver, state, lam, float(target), u, tol, max_iter, rtol, points.record
        )


def _solve_distance(solver, state, lam, target, u, tol, max_iter, rtol, record, max_steps=30):
    """Find gamma with ``delta(gamma) = target`` and record that point.

    ``delta = u / (2 gamma)`` with ``u`` slowly varying, so the first guess is ``u_prev / (2
    target)``; then secant steps on ``log delta`` against ``log gamma`` (slope clamped to
    [-2, -0.2]: delta decreases with gamma, roughly like 1/gamma). Every solve is warm-started
    from the previous one.
    """
    log_t = math.log(target)
    log_g = math.log(u / (2.0 * target))
    hist: list[tuple[float, float]] = []
    iters = 0
    solved = None
    for _ in range(max_steps):
        gamma = math.exp(log_g)
        solved = _solve_point(solver, state, gamma, lam, tol=tol, max_iter=max_iter)
        iters += solved.iterations
        if not solved.converged:
            record(solved, gamma, iters, target)
            return state, lam, u
        state, lam = solved.state, solved.damping
        delta = solved.result.delta
        hist.append((log_g, math.log(delta)))
        if abs(delta / target - 1.0) < rtol:
            record(solved, gamma, iters, target)
            return state, lam, 2.0 * gamma * delta
        slope = -1.0
        if len(hist) > 1 and hist[-1][0] != hist[-2][0]:
            slope = (hist[-1][1] - hist[-2][1]) / (hist[-1][0] - hist[-2][0])
            slope = min(-0.2, max(-2.0, slope))
        log_g = log_g + (log_t - hist[-1][1]) / slope
    record(solved, math.exp(hist[-1][0]), iters, target, f"distance search: {max_steps} steps")
    return state, lam, u
