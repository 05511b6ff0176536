"""Figures of loss landscapes (:mod:`wideflat.flatness.landscape`).

They read result objects only and never evaluate a model. matplotlib is imported on the first
call (so importing this module does not load it), and figures are drawn on the Agg canvas
directly: no pyplot, no display. Each function returns the ``Figure`` and, given ``path``,
also saves it there (the format follows the suffix: ``.png``, ``.pdf``, ``.svg``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from wideflat.flatness.landscape import Interpolation, Landscape1D, Landscape2D, Plane

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_interpolation", "plot_landscape_1d", "plot_landscape_2d", "plot_plane"]

_METRICS = ("loss", "error")


def plot_interpolation(
    result: Interpolation, *, path: str | Path | None = None, title: str | None = None
) -> Figure:
    """Loss and error along the line w(t) = (1 − t) w_a + t w_b, with the barrier.

    Two panels (loss, error) against t. Each shows the measured curve, the two networks
    (t = 0, t = 1) as marked points, the straight chord between their values (dashed), and the
    barrier as an arrow from the chord up to the curve at the t where it is largest.

    Args:
        result: an :class:`~wideflat.flatness.landscape.Interpolation`.
        path: optional file to save the figure to; its folder must exist.
        title: optional figure title above both panels.

    Returns:
        The matplotlib ``Figure`` (axes: loss, error).

    Raises:
        ValueError: for another result type or a missing folder of ``path``.

    Example:
        >>> r = Interpolation(t=(0.0, 0.5, 1.0), loss=(0.2, 0.9, 0.3), error=(0.1, 0.4, 0.1),
        ...     loss_a=0.2, error_a=0.1, loss_b=0.3, error_b=0.1, barrier_loss=0.65,
        ...     barrier_loss_t=0.5, barrier_error=0.3, barrier_error_t=0.5)
        >>> fig = plot_interpolation(r)
        >>> [ax.get_xlabel()[:1] for ax in fig.axes]
        ['t', 't']
    """
    _check_result(result, Interpolation)
    path = _check_path(path)
    fig = _figure((10.0, 4.0))
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, _METRICS, strict=True):
        values = getattr(result, metric)
        v0, v1 = getattr(result, f"{metric}_a"), getattr(result, f"{metric}_b")
        barrier = getattr(result, f"barrier_{metric}")
        barrier_t = getattr(result, f"barrier_{metric}_t")
        ts, vs = _sorted_finite(result.t, values)
        ax.plot(ts, vs, marker="o", markersize=3, label=f"{metric} at w(t)")
        ax.plot([0.0, 1.0], [v0, v1], linestyle="--", color="0.5", label="chord")
        ax.scatter([0.0, 1.0], [v0, v1], s=60, color="C3", zorder=3, label="the two networks")
        for t, v, name in ((0.0, v0, "a"), (1.0, v1, "b")):
            if math.isfinite(v):
                ax.annotate(name, (t, v), textcoords="offset points", xytext=(4, -12))
        if math.isfinite(barrier) and math.isfinite(barrier_t):
            chord = v0 + barrier_t * (v1 - v0)
            ax.annotate(
                "",
                xy=(barrier_t, chord + barrier),
                xytext=(barrier_t, chord),
                arrowprops={"arrowstyle": "<->", "color": "C2"},
            )
            text = f"barrier = {barrier:.3g} at t = {barrier_t:.3g}"
        else:
            text = "barrier undefined (non-finite values)"
        ax.text(0.02, 0.97, text, transform=ax.transAxes, va="top", fontsize="small")
        ax.axvspan(0.0, 1.0, color="0.95", zorder=0)
        ax.set_xlabel("t   (w = (1 − t) w_a + t w_b)")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric.capitalize()} along the line from a to b (lower is better)")
        ax.legend(fontsize="small", loc="best")
    return _finish(fig, path, title)


def plot_plane(
    result: Plane,
    *,
    metric: str = "loss",
    path: str | Path | None = None,
    title: str | None = None,
    levels: int = 30,
) -> Figure:
    """Filled contours of the loss (or error) on the plane through three networks.

    The three networks are marked and labelled at their coordinates; both axes are in units
    of ‖w_b − w_a‖ (the plane's ``unit``), drawn with equal aspect, so that distances on the
    figure are distances in weight space. Non-finite values are left blank.

    Args:
        result: a :class:`~wideflat.flatness.landscape.Plane`.
        metric: ``"loss"`` (default) or ``"error"``.
        path: optional file to save the figure to; its folder must exist.
        title: optional title replacing the default.
        levels: number of contour levels (≥ 2).

    Returns:
        The matplotlib ``Figure`` (axes: the plane, its colorbar).

    Raises:
        ValueError: for another result type, an unknown ``metric``, bad ``levels`` or a missing
            folder of ``path``.

    Example:
        >>> p = Plane(labels=("a", "b", "c"), x=(-0.5, 0.5, 1.5), y=(-0.5, 1.5),
        ...     loss=((1.0, 2.0, 3.0), (3.0, 4.0, 5.0)), error=((0.0,) * 3, (0.1,) * 3),
        ...     coordinates=((0.0, 0.0), (1.0, 0.0), (0.5, 1.0)), model_loss=(1.0, 2.0, 3.5),
        ...     model_error=(0.0, 0.0, 0.1), unit=2.0)
        >>> len(plot_plane(p).axes)
        2
    """
    _check_result(result, Plane)
    _check_metric(metric)
    _check_levels(levels)
    path = _check_path(path)
    fig = _figure((6.5, 5.5))
    ax = fig.add_subplot(1, 1, 1)
    _contour(fig, ax, result.x, result.y, getattr(result, metric), metric, levels)
    for (px, py), label in zip(result.coordinates, result.labels, strict=True):
        ax.scatter([px], [py], s=50, color="white", edgecolors="black", zorder=3)
        ax.annotate(label, (px, py), textcoords="offset points", xytext=(6, 6), zorder=4)
    ax.set_aspect("equal", adjustable="box")
    unit = f"‖w_{result.labels[1]} − w_{result.labels[0]}‖ = {result.unit:.3g}"
    ax.set_xlabel(f"x (units of {unit})")
    ax.set_ylabel("y (same units)")
    names = ", ".join(result.labels)
    ax.set_title(title or f"{metric.capitalize()} on the plane through {names} (lower is better)")
    return _finish(fig, path, None)


def plot_landscape_1d(
    result: Landscape1D, *, path: str | Path | None = None, title: str | None = None
) -> Figure:
    """Loss and error along one direction, L(w + α d) against α, the model at α = 0 marked.

    Args:
        result: a :class:`~wideflat.flatness.landscape.Landscape1D`.
        path: optional file to save the figure to; its folder must exist.
        title: optional figure title above both panels.

    Returns:
        The matplotlib ``Figure`` (axes: loss, error).

    Raises:
        ValueError: for another result type or a missing folder of ``path``.

    Example:
        >>> r = Landscape1D(alphas=(-1.0, 0.0, 1.0), loss=(0.9, 0.3, 0.8), error=(0.3, 0.1, 0.2),
        ...     base_loss=0.3, base_error=0.1, direction_norm=1.0, weight_norm=1.0)
        >>> [ax.get_ylabel() for ax in plot_landscape_1d(r).axes]
        ['loss', 'error']
    """
    _check_result(result, Landscape1D)
    path = _check_path(path)
    fig = _figure((10.0, 4.0))
    for ax, metric in zip(fig.subplots(1, 2), _METRICS, strict=True):
        alphas, values = _sorted_finite(result.alphas, getattr(result, metric))
        base = getattr(result, f"base_{metric}")
        ax.plot(alphas, values, marker="o", markersize=3, label=f"{metric} at w + α d")
        ax.scatter([0.0], [base], s=80, marker="*", color="C3", zorder=3, label="the model (α = 0)")
        ax.set_xlabel("α (step along the direction d)")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric.capitalize()} along w + α d (lower is better)")
        ax.legend(fontsize="small")
    return _finish(fig, path, title)


def plot_landscape_2d(
    result: Landscape2D,
    *,
    metric: str = "loss",
    path: str | Path | None = None,
    title: str | None = None,
    levels: int = 30,
) -> Figure:
    """Contours of the loss (or error) at w + α d₁ + β d₂, the model at (0, 0) marked.

    Filled contours with contour lines over them, as Li et al.'s 2D plots; non-finite values
    are left blank.

    Args:
        result: a :class:`~wideflat.flatness.landscape.Landscape2D`.
        metric: ``"loss"`` (default) or ``"error"``.
        path: optional file to save the figure to; its folder must exist.
        title: optional title replacing the default.
        levels: number of contour levels (≥ 2).

    Returns:
        The matplotlib ``Figure`` (axes: the landscape, its colorbar).

    Raises:
        ValueError: for another result type, an unknown ``metric``, bad ``levels`` or a missing
            folder of ``path``.

    Example:
        >>> r = Landscape2D(alphas=(-1.0, 0.0, 1.0), betas=(-1.0, 1.0),
        ...     loss=((2.0, 1.0, 2.0), (2.5, 1.5, 2.5)), error=((0.2,) * 3, (0.3,) * 3),
        ...     base_loss=0.5, base_error=0.1, direction_norms=(1.0, 1.0),
        ...     direction_cosine=0.0, weight_norm=1.0)
        >>> plot_landscape_2d(r).axes[0].get_xlabel()
        'α (along d₁)'
    """
    _check_result(result, Landscape2D)
    _check_metric(metric)
    _check_levels(levels)
    path = _check_path(path)
    fig = _figure((6.5, 5.5))
    ax = fig.add_subplot(1, 1, 1)
    _contour(fig, ax, result.alphas, result.betas, getattr(result, metric), metric, levels)
    ax.scatter([0.0], [0.0], s=80, marker="*", color="white", edgecolors="black", zorder=3)
    ax.annotate("w", (0.0, 0.0), textcoords="offset points", xytext=(6, 6), zorder=4)
    ax.set_xlabel("α (along d₁)")
    ax.set_ylabel("β (along d₂)")
    ax.set_title(title or f"{metric.capitalize()} at w + α d₁ + β d₂ (lower is better)")
    return _finish(fig, path, None)


# --------------------------------------------------------------------------------------------
# Internals
# --------------------------------------------------------------------------------------------


def _figure(size: tuple[float, float]) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig


def _finish(fig: Figure, path: Path | None, title: str | None) -> Figure:
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def _check_result(result: Any, kind: type) -> None:
    if not isinstance(result, kind):
        raise ValueError(f"Invalid result: {type(result).__name__} (expected a {kind.__name__})")


def _check_metric(metric: Any) -> None:
    if not isinstance(metric, str) or metric not in _METRICS:
        raise ValueError(f"Invalid metric: {metric!r} (expected 'loss' or 'error')")


def _check_levels(levels: Any) -> None:
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise ValueError(f"Invalid levels: {levels!r} (expected an integer >= 2)")


def _check_path(path: Any) -> Path | None:
    if path is None:
        return None
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"Invalid path: parent folder {str(path.parent)!r} does not exist")
    return path


def _sorted_finite(xs: tuple[float, ...], ys: tuple[float, ...]) -> tuple[list, list]:
    """The finite (x, y) points, sorted by x."""
    pts = sorted((x, y) for x, y in zip(xs, ys, strict=True) if math.isfinite(y))
    return [p[0] for p in pts], [p[1] for p in pts]


def _contour(fig, ax: Axes, xs, ys, values, metric: str, levels: int) -> None:
    """Filled contours (+ thin lines) of ``values[j][i]`` at ``(xs[i], ys[j])``, a colorbar."""
    z = np.ma.masked_invalid(np.asarray(values, dtype=np.float64))
    finite = z.compressed()
    if finite.size == 0:
        ax.set_xlim(min(xs), max(xs))
        ax.set_ylim(min(ys), max(ys))
        ax.text(0.5, 0.5, "no finite values", ha="center", va="center", transform=ax.transAxes)
        return
    lo, hi = float(finite.min()), float(finite.max())
    if len(xs) < 2 or len(ys) < 2:  # no area to contour: coloured points instead
        gx, gy = np.meshgrid(xs, ys)
        dots = ax.scatter(gx.ravel(), gy.ravel(), c=z.filled(np.nan).ravel(), cmap="viridis")
        fig.colorbar(dots, ax=ax, label=f"{metric} (lower is better)")
        return
    if hi <= lo:  # a constant surface: one band around the value
        pad = max(abs(lo) * 1e-6, 1e-12)
        bounds = np.array([lo - pad, hi + pad])
    else:
        bounds = np.linspace(lo, hi, levels)
    filled = ax.contourf(xs, ys, z, levels=bounds, cmap="viridis")
    if hi > lo:
        ax.contour(xs, ys, z, levels=bounds, colors="black", linewidths=0.3, alpha=0.5)
    from matplotlib.ticker import MaxNLocator

    fig.colorbar(filled, ax=ax, label=f"{metric} (lower is better)", ticks=MaxNLocator(7))
