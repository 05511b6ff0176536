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
from wideflat.models.committee import committee_errors, committee_output

__all__ = [
    "balanced_error",
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
    }
