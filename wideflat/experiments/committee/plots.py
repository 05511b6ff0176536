"""Fig. 1 of the paper from a committee study's ``results.json`` (reads the file only).

Three panels, one colour per algorithm: the normalized local entropy ``Φ_LE`` against the
distance ``d`` (BP), the local energy ``δE_train`` against ``σ``, and histograms of the test
errors over restarts (the paper's layout). Curves are the mean over restarts with a band of ±
one standard error of that mean; missing values (``null`` in the file: BP points that did not
converge, empty algorithms) are skipped, never plotted as zeros. Drawn on the Agg canvas
directly (``Figure`` + ``FigureCanvasAgg``: no pyplot, no global backend).
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from wideflat._io import write_bytes_atomic

__all__ = ["curve_stats", "plot_fig1"]

_LABELS = {
    "sgd-fast": "SGD fast",
    "sgd-slow": "SGD slow",
    "rsgd-fast": "rSGD fast",
    "rsgd-slow": "rSGD slow",
    "esgd": "eSGD",
}


def _num(v: Any) -> float:
    try:
        x = float(v)
    except (TypeError, ValueError):
        return math.nan
    return x if math.isfinite(x) else math.nan


def curve_stats(rows: Sequence[Sequence[Any]], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Column-wise mean and standard error of the mean over rows, ignoring missing values.

    ``None``/NaN entries and rows of the wrong length are skipped; a column with no finite
    value gives NaN; a column with one value has standard error 0.

    Args:
        rows: One sequence per restart.
        width: Number of columns (grid points).

    Returns:
        ``(mean, sem)``, each of shape ``(width,)``.

    Example:
        >>> m, s = curve_stats([[1.0, None], [3.0, float("nan")]], 2)
        >>> m.tolist()[0], bool(np.isnan(m[1])), s.tolist()[0]
        (2.0, True, 1.0)
    """
    a = np.full((len(rows), width), np.nan)
    for i, r in enumerate(rows):
        if isinstance(r, Sequence) and len(r) == width:
            a[i] = [_num(v) for v in r]
    mean, sem = np.full(width, np.nan), np.full(width, np.nan)
    for j in range(width):
        col = a[:, j][np.isfinite(a[:, j])]
        if col.size:
            mean[j] = col.mean()
            sem[j] = col.std(ddof=1) / math.sqrt(col.size) if col.size > 1 else 0.0
    return mean, sem


def _restarts(block: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    rs = block.get("restarts") if isinstance(block, Mapping) else None
    return [r for r in rs if isinstance(r, Mapping)] if isinstance(rs, list) else []


def _no_data(ax) -> None:
    ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)


def _panel_curve(ax, results, section, xkey, ykey, colors) -> bool:
    drew = False
    for i, (alg, block) in enumerate(results.get("algorithms", {}).items()):
        rows, grid = [], None
        for r in _restarts(block):
            sec = r.get(section)
            if isinstance(sec, Mapping) and isinstance(sec.get(xkey), list):
                grid = grid or [_num(x) for x in sec[xkey]]
                rows.append(sec.get(ykey) or [])
        if not grid:
            continue
        mean, sem = curve_stats(rows, len(grid))
        x = np.asarray(grid)
        ok = np.isfinite(mean) & np.isfinite(x)
        if section == "local_entropy":  # Φ_LE(0) = 0 by definition
            x, mean, sem = np.r_[0.0, x[ok]], np.r_[0.0, mean[ok]], np.r_[0.0, sem[ok]]
        else:
            x, mean, sem = x[ok], mean[ok], sem[ok]
        if x.size == 0:
            continue
        c = colors[i % len(colors)]
        ax.plot(x, mean, "o-", ms=3, color=c, label=f"{_LABELS.get(alg, alg)} (n={len(rows)})")
        ax.fill_between(x, mean - sem, mean + sem, color=c, alpha=0.2, lw=0)
        drew = True
    if not drew:
        _no_data(ax)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)
    return drew


def _panel_test_errors(ax, results, colors) -> None:
    """Histograms of the test errors over restarts (one outline per algorithm, shared bins),
    each algorithm's mean marked on the axis, as in the paper's right panels."""
    data = []
    for alg, block in results.get("algorithms", {}).items():
        vals = [_num(r.get("test_error")) for r in _restarts(block)]
        data.append((alg, [v for v in vals if math.isfinite(v)]))
    every = [v for _, vals in data for v in vals]
    if not every:
        _no_data(ax)
    else:
        lo, hi = min(every), max(every)
        bins = np.linspace(lo, hi if hi > lo else lo + 1e-3, 21)
        for i, (alg, vals) in enumerate(data):
            if not vals:
                continue
            c = colors[i % len(colors)]
            ax.hist(vals, bins=bins, histtype="step", lw=1.5, color=c,
                    label=f"{_LABELS.get(alg, alg)} (mean {np.mean(vals):.3f})")  # fmt: skip
            ax.axvline(float(np.mean(vals)), color=c, ls=":", lw=1)
        ax.legend(fontsize=7)
    ax.set_xlabel("test error")
    ax.set_ylabel("restarts")
    ax.set_title("test error over restarts (lower is better)")


def plot_fig1(
    results: str | os.PathLike | Mapping[str, Any],
    out: str | os.PathLike,
    *,
    title: str | None = None,
) -> Path:
    """Draw the three panels of the paper's Fig. 1 and save them to ``out`` (atomically).

    Args:
        results: Path of a ``results.json`` written by
            :func:`~wideflat.experiments.committee.study.run_committee_study`, or its
            parsed content. Each entry of ``algorithms`` is one curve (any name).
        out: Output image path (the format follows the suffix, e.g. ``.png``).
        title: Figure title (default: data, restarts, and "QUICK RUN" for a quick study).

    Returns:
        ``Path(out)``.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "fig1.png"
        >>> plot_fig1({"algorithms": {"esgd": {"restarts": []}}}, p).exists()
        True
    """
    if not isinstance(results, Mapping):
        with open(results) as f:
            results = json.load(f)
    out = Path(out)
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    fig = Figure(figsize=(15, 4.3))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)

    _panel_curve(axes[0], results, "local_entropy", "distance", "phi_le", colors)
    axes[0].set_xlabel("d (per weight)")
    axes[0].set_ylabel(r"$\Phi_{LE}$ (per weight)")
    axes[0].set_title("local entropy (BP): higher is flatter")

    _panel_curve(axes[1], results, "local_energy", "sigma", "mean", colors)
    axes[1].set_xlabel(r"$\sigma$")
    axes[1].set_ylabel(r"$\delta E_{train}$")
    axes[1].set_title("local energy: lower is flatter")

    _panel_test_errors(axes[2], results, colors)

    if title is None:
        data_name = (results.get("data") or {}).get("name", "?")
        cfg = results.get("config") or {}
        title = (f"Committee machine, {data_name}, {cfg.get('restarts', '?')} restarts "
                 "(mean ± s.e. over restarts)")  # fmt: skip
        if cfg.get("quick"):
            title = "QUICK RUN (a demonstration, not the paper's study): " + title
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format=out.suffix.lstrip(".") or "png", dpi=110)
    write_bytes_atomic(out, buf.getvalue())
    return out
