"""Figures of a correlation study: Fig. 7 (δE_train against the gap) and every measure.

Drawn on the Agg canvas (no pyplot, no global backend), as :mod:`wideflat.experiments.plots`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .plots import _figure

__all__ = ["plot_fig7", "plot_measures"]


def _scatter(ax, result: Mapping[str, Any], name: str, *, color_by: str = "batch_size") -> None:
    rows = result["members"]
    x = [r["measures"][name]["value"] for r in rows]
    y = [r["gap_error"] for r in rows]
    values = sorted({r["hparams"][color_by] for r in rows})
    cmap = {v: f"C{i}" for i, v in enumerate(values)}
    for v in values:
        pts = [(a, b) for a, b, r in zip(x, y, rows, strict=True) if r["hparams"][color_by] == v]
        ax.scatter(*zip(*pts, strict=True), s=18, color=cmap[v], label=f"{color_by} {v:g}")
    se = [r["measures"][name].get("se") for r in rows]
    if all(s is not None and math.isfinite(s) for s in se):
        ax.errorbar(x, y, xerr=se, fmt="none", ecolor="0.6", lw=0.8, zorder=0)
    g = result["stats"][name]["gap"]
    ax.set_title(
        f"{name}: r = {g['pearson_r']:.2f} (p = {g['pearson_p']:.0e}), τ = {g['kendall_tau']:.2f}",
        fontsize=9,
    )
    ax.set_xlabel(f"{name} (larger = sharper)", fontsize=8)
    ax.set_ylabel("generalization gap (test − train error)", fontsize=8)


def plot_fig7(result: Mapping[str, Any], path: str | Path | None = None):
    """δE_train(σ) against the generalization gap, one point per network (paper Fig. 7)."""
    fig = _figure((5.2, 4.2))
    ax = fig.subplots()
    _scatter(ax, result, "delta_energy")
    cfg = result["config"]
    ax.set_xlabel(f"δE_train(σ = {cfg['sigma']:g}), {cfg['samples']} draws (larger = sharper)")
    ax.legend(fontsize=8)
    fig.suptitle(f"Flatness against generalization, {result['n_members']} networks", fontsize=10)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        return Path(path)
    return fig


def plot_measures(result: Mapping[str, Any], path: str | Path | None = None):
    """Every measure against the generalization gap, in the ranking's order."""
    names = list(result["ranking"])
    cols = 3
    rows = max(1, math.ceil(len(names) / cols))
    fig = _figure((4.2 * cols, 3.4 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        _scatter(ax, result, name)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(
        "Which measure predicts the generalization gap? (ranked by Kendall τ)", fontsize=11
    )
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
        return Path(path)
    return fig
