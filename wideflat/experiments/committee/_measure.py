"""Flatness and summary statistics of the committee study's solutions (one restart at a time).

Units: ``d`` and ``Φ_LE`` per weight (see :mod:`wideflat.experiments.committee.study`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from wideflat import _rng
from wideflat.flatness import committee_local_energy, committee_local_entropy
from wideflat.flatness.monte_carlo import committee_gaussian_mc
from wideflat.models.committee import committee_errors, committee_output

# A BP point is flagged when it differs from the Monte Carlo estimate by more than this many
# Monte Carlo standard errors (two: outside the Monte Carlo 95 % interval).
MC_FLAG_Z = 2.0

__all__ = [
    "MC_FLAG_Z",
    "balanced_error",
    "bp_mc_gap",
    "flatness_generator",
    "measure_restart",
    "stats",
    "summarize",
]


def flatness_generator(seed: int, algorithm_index: int, restart: int) -> torch.Generator:
    """The generator of the local-energy draws of one solution."""
    return _rng.generator(seed, 7919, algorithm_index, restart, bits=32)


def stats(values: Sequence[float]) -> dict[str, float | int]:
    """Mean and sample std (ddof=1; 0 for one value) of the finite values, and their count.

    Example:
        >>> stats([1.0, 3.0, None, float("nan")])
        {'mean': 2.0, 'std': 1.4142135623730951, 'n': 2}
    """
    a = np.asarray([v for v in values if v is not None], dtype=float)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return {"mean": math.nan, "std": math.nan, "n": 0}
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    return {"mean": float(a.mean()), "std": std, "n": int(a.size)}


def _columns(rows: list[list[float]]) -> list[dict[str, float | int]]:
    return [stats(col) for col in zip(*rows, strict=True)] if rows else []


def balanced_error(w: Tensor, X: Tensor, y: Tensor) -> Tensor:
    """Mean of the per-class error rates, for each network of ``w`` ``(R, K, N)``."""
    wrong = (committee_output(w, X) != y).double()  # (R, M)
    rates = [wrong[:, y == c].mean(dim=1) for c in (1.0, -1.0) if bool((y == c).any())]
    return torch.stack(rates).mean(dim=0)


def measure_restart(w: Tensor, data, cfg, gen: torch.Generator) -> tuple[dict, dict]:
    """Φ_LE curve and δE profile of one solution; a failure becomes NaN plus a reason.

    Args:
        w: The solution ``(K, N)``.
        data: The study's data set (``X_train``, ``y_train``).
        cfg: The :class:`~wideflat.experiments.committee.study.CommitteeStudyConfig`.
        gen: Source of the local-energy draws.

    Returns:
        ``(local_entropy, local_energy)``, the two dicts of a restart in ``results.json``.
    """
    nan_d = [math.nan] * len(cfg.distances)
    nan_s = [math.nan] * len(cfg.sigmas)
    finite = bool(torch.isfinite(w).all())
    m = len(data.y_train)
    n_err = round(float(committee_errors(w, data.X_train, data.y_train)) * m) if finite else None
    le: dict[str, Any] = {
        "distance": list(cfg.distances),
        "distance_reached": nan_d,
        "phi_le": nan_d,
        "gamma": nan_d,
        "phi": nan_d,
        "converged": [False] * len(cfg.distances),
        "failures": [],
        "n_patterns": None if n_err is None else m - n_err,
        "n_training_errors": n_err,
        "lower_bound": bool(n_err),
        "elapsed_s": 0.0,
    }
    en = {"sigma": list(cfg.sigmas), "mean": nan_s, "sem": nan_s, "base": math.nan}
    if not finite:
        le["failures"] = ["weights are not finite: no flatness measured"]
        return le, en
    try:
        bp = committee_local_entropy(
            w.double(),
            data.X_train.double(),
            data.y_train.double(),
            distances=list(cfg.distances),
            training_errors="drop",
            max_iter=cfg.bp_max_iter,
        )
    except (ValueError, RuntimeError) as exc:  # e.g. no correctly classified pattern left
        le["failures"] = [f"BP not run: {exc}"]
    else:
        le.update(
            distance_reached=list(bp.distance),
            phi_le=list(bp.local_entropy),
            gamma=list(bp.gamma),
            phi=list(bp.phi),
            converged=list(bp.converged),
            failures=list(bp.failures),
            n_patterns=bp.n_patterns,
            n_training_errors=bp.n_training_errors,
            lower_bound=bp.n_training_errors > 0,
            elapsed_s=bp.elapsed_s,
        )
    mean, sem, base = committee_local_energy(
        w.float(), data.X_train, data.y_train, cfg.sigmas, draws=cfg.draws, generator=gen
    )
    en.update(mean=mean.tolist(), sem=sem.tolist(), base=base)
    return le, en


def bp_mc_gap(w: Tensor, data, le: dict[str, Any], samples: int, seed: int) -> dict[str, Any]:
    """BP's ``φ(γ)`` against direct Monte Carlo sampling of the same measure, at BP's ``γ``.

    ``φ(γ) = (1/n) log P_{w' ~ N(w, I/γ)}[every constrained pattern correct]`` is what BP
    computes before the Legendre step (``le["phi"]``, ``le["gamma"]`` from
    :func:`measure_restart`); :func:`~wideflat.flatness.monte_carlo.committee_gaussian_mc`
    estimates it without approximation, with a standard error, on the same constraints (the
    patterns ``w`` classifies correctly). ``z = (φ_BP − φ_MC) / se_MC``; a point is
    ``flagged`` when ``|z| > MC_FLAG_Z``, or, where no sample was accepted, when BP's ``φ`` is
    above the Monte Carlo 95 % upper bound. Points where Monte Carlo accepted nothing and BP
    is below the bound are ``resolved = False`` (the sample is too small to check them).
    """
    grid = [(j, g) for j, g in enumerate(le["gamma"]) if g is not None and math.isfinite(g)]
    gammas = [g for _, g in grid]
    out: dict[str, Any] = {"samples": samples, "seed": seed, "z_threshold": MC_FLAG_Z, "points": []}
    if not gammas:
        out["note"] = "no converged BP point to check"
        return out
    w64, X, y = w.double(), data.X_train.double(), data.y_train.double()
    ok = committee_output(w64, X) == y
    mc = committee_gaussian_mc(w64, X[ok], y[ok], gammas, samples=samples, seed=seed)
    for i, (j, g) in enumerate(grid):
        bp, m, se, ub = le["phi"][j], mc.phi[i], mc.phi_se[i], mc.phi_upper_95[i]
        if math.isfinite(m):
            z = (bp - m) / se if se > 0 else math.inf * np.sign(bp - m)
            flagged, resolved = bool(abs(z) > MC_FLAG_Z), True
        else:
            z, flagged = math.nan, bool(bp > ub)
            resolved = flagged
        out["points"].append(
            {
                "index": j,
                "distance": le["distance"][j],
                "gamma": g,
                "phi_bp": bp,
                "phi_mc": m,
                "phi_mc_se": se,
                "phi_mc_upper_95": ub,
                "accepted": mc.accepted[i],
                "gap": bp - m,
                "z": z,
                "flagged": flagged,
                "resolved": resolved,
                "distance_mc": mc.delta[i],
                "phi_le_mc": mc.local_entropy[i],
            }
        )
    return out


def summarize(restarts: list[dict], cfg) -> dict[str, Any]:
    """Mean ± std over restarts of every per-restart number, and the counts of flags."""

    def col(key):
        return [r[key] for r in restarts]

    le_rows = [r["local_entropy"]["phi_le"] for r in restarts]
    en_rows = [r["local_energy"]["mean"] for r in restarts]
    return {
        "n": len(restarts),
        "train_error": stats(col("train_error")),
        "test_error": stats(col("test_error")),
        "test_error_balanced": stats(col("test_error_balanced")),
        "epochs": stats(col("epochs")),
        "stop_reasons": dict(Counter(col("stop_reason"))),
        "phi_le": {"distance": list(cfg.distances), "per_point": _columns(le_rows)},
        "delta_e": {"sigma": list(cfg.sigmas), "per_point": _columns(en_rows)},
        "bp_nonconverged_points": sum(
            len(r["local_entropy"]["converged"]) - sum(r["local_entropy"]["converged"])
            for r in restarts
        ),
        "bp_lower_bound_restarts": sum(r["local_entropy"]["lower_bound"] for r in restarts),
        "bp_mc": _mc_summary(restarts),
    }


def _mc_summary(restarts: list[dict]) -> dict[str, Any]:
    """Per BP point (by its index on the grid): how many checked, resolved and flagged."""
    checked = [r["bp_mc"] for r in restarts if r.get("bp_mc")]
    rows: dict[int, dict[str, Any]] = {}
    for mc in checked:
        for p in mc["points"]:
            row = rows.setdefault(
                p["index"], {"checked": 0, "resolved": 0, "flagged": 0, "gaps": []}
            )
            row["checked"] += 1
            row["resolved"] += int(p["resolved"])
            row["flagged"] += int(p["flagged"])
            if p["gap"] is not None and math.isfinite(p["gap"]):
                row["gaps"].append(p["gap"])
    per_point = []
    for i in sorted(rows):
        row = rows.pop(i)
        per_point.append({"index": i, **row, "gap": stats(row.pop("gaps"))})
    return {"restarts_checked": len(checked), "per_point": per_point}
