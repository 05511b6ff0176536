"""Input validation and small utilities shared by the committee-machine BP and Monte Carlo code.

Private helper of :mod:`wideflat.flatness.committee_bp` and :mod:`wideflat.flatness.monte_carlo`.
The committee machine is ``sigma(w, x) = sign(sum_k sign(w_k . x / sqrt(N)))`` with ``K`` odd
hidden units, second-layer weights fixed to +1 and ``sign(0) = +1`` for the hidden units (the
one definition in :mod:`wideflat.models.committee`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from wideflat.models.committee import committee_output


def as_float64(name: str, value: object, ndim: int) -> torch.Tensor:
    """Convert ``value`` (tensor, array or sequence) to a CPU float64 tensor of rank ``ndim``.

    Raises:
        ValueError: if it cannot be converted, has the wrong rank, or holds NaN or Inf.
    """
    try:
        if isinstance(value, torch.Tensor):
            t = value.detach().to(device="cpu", dtype=torch.float64)
        else:
            t = torch.as_tensor(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"Invalid {name}: cannot convert to a float64 array ({exc})") from exc
    if t.dim() != ndim:
        raise ValueError(f"Invalid {name}: expected a {ndim}-D array, got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"Invalid {name}: contains {bad} non-finite value(s) (NaN or Inf)")
    return t


def validate_committee(w: object, X: object, y: object) -> tuple[torch.Tensor, ...]:
    """Check and convert a committee-machine instance.

    Args:
        w: Reference weights, shape ``(K, N)``, ``K`` odd, every row non-zero.
        X: Inputs, shape ``(M, N)`` (``M`` may be 0); ±1 or real-valued.
        y: Labels, shape ``(M,)``, values in ``{-1, +1}``.

    Returns:
        ``(w, X, y)`` as CPU float64 tensors.

    Raises:
        ValueError: naming the offending argument and value.
    """
    w = as_float64("w", w, 2)
    X = as_float64("X", X, 2)
    y = as_float64("y", y, 1)
    K, N = w.shape
    if K < 1 or N < 1:
        raise ValueError(
            f"Invalid w: shape {tuple(w.shape)} must have K >= 1 rows and N >= 1 columns"
        )
    if K % 2 == 0:
        raise ValueError(
            f"Invalid w: K = {K} hidden units is even; the committee output sign(sum_k sign(h_k)) "
            "is only defined without ties for odd K"
        )
    if X.shape[1] != N:
        raise ValueError(
            f"Invalid X: shape {tuple(X.shape)} has {X.shape[1]} columns, w has N = {N}"
        )
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"Invalid y: length {y.shape[0]} does not match X's {X.shape[0]} rows")
    bad = (y != 1.0) & (y != -1.0)
    if bool(bad.any()):
        first = float(y[bad][0])
        raise ValueError(f"Invalid y: labels must be -1 or +1, got {first} ({int(bad.sum())} bad)")
    norms = w.norm(dim=1)
    if bool((norms == 0).any()):
        k = int(torch.nonzero(norms == 0)[0])
        raise ValueError(f"Invalid w: row {k} has zero norm")
    return w, X, y


def normalize_rows(w: torch.Tensor) -> torch.Tensor:
    """Rescale each row of ``w`` (shape ``(K, N)``) to squared norm ``N``."""
    N = w.shape[1]
    return w * (math.sqrt(N) / w.norm(dim=1, keepdim=True))


def committee_correct(w: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the patterns the committee ``w`` classifies correctly.

    A pattern is correct when the network output equals its label, ``sigma(w, x) = y``, with
    the committee machine's own output (:func:`wideflat.models.committee.committee_output`:
    a hidden field of exactly 0 votes +1, so the output is always ±1).
    """
    return committee_output(w, X) == y


def check_positive(name: str, values: Sequence[float] | np.ndarray | torch.Tensor) -> np.ndarray:
    """A 1-D float array of finite, strictly positive values (non-empty)."""
    try:
        arr = np.atleast_1d(np.asarray(values, dtype=np.float64))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"Invalid {name}: cannot convert to floats ({exc})") from exc
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(
            f"Invalid {name}: expected a non-empty 1-D sequence, got shape {arr.shape}"
        )
    bad = ~np.isfinite(arr) | (arr <= 0)
    if bad.any():
        raise ValueError(f"Invalid {name}: values must be finite and > 0, got {arr[bad][0]}")
    return arr
