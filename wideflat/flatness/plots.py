"""Plots of flatness measures. They read result objects only and never train anything."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from wideflat.flatness._profile import LocalEnergyProfile

__all__ = ["plot_local_energy"]

_METRICS = {
    "error": ("delta_error", "delta_error_se", "δE_train (error)"),
    "loss": ("delta_loss", "delta_loss_se", "δL_train (loss)"),
}


def plot_local_energy(
    profiles: Mapping[str, LocalEnergyProfile] | Sequence[LocalEnergyProfile],
    path: str | Path,
    *,
    metric: str = "error",
    title: str | None = None,
) -> Path:
    """Plot local-energy profiles δE_train(σ) with ±1 standard-error bars, one curve per model.

    The figure is drawn with the Agg canvas directly (no pyplot, no display needed). Points whose
    mean is NaN or infinite are left out, a non-finite standard error is drawn without a bar; a
    profile with nothing left to draw is skipped with one printed line, and if no profile can
    be drawn the PNG still gets written, with a note on empty axes.

    Args:
        profiles: ``{label: profile}``, or a sequence of profiles (labelled by their ``model``
            field and index).
        path: output PNG path; its parent folder must exist.
        metric: ``"error"`` (δE of the error, default) or ``"loss"`` (δ of the loss).
        title: optional figure title.

    Returns:
        The path written.

    Raises:
        ValueError: for an unknown ``metric``, a non-profile entry, or a missing parent folder.

    Example:
        >>> import os, tempfile
        >>> p = LocalEnergyProfile(sigmas=(0.0, 0.5), delta_error=(0.0, 0.1),
        ...     delta_error_se=(0.0, 0.01), delta_loss=(0.0, 0.3), delta_loss_se=(0.0, 0.02),
        ...     error_draws=((0.0,), (0.1,)), loss_draws=((0.0,), (0.3,)),
        ...     base_error=0.0, base_loss=0.1, samples=1, n_examples=100)
        >>> out = plot_local_energy({"sgd": p}, os.path.join(tempfile.mkdtemp(), "le.png"))
        >>> out.suffix
        '.png'
    """
    if not isinstance(metric, str) or metric not in _METRICS:
        raise ValueError(f"Invalid metric: {metric!r} (expected one of {list(_METRICS)})")
    if isinstance(profiles, Mapping):
        items = [(str(k), v) for k, v in profiles.items()]
    elif isinstance(profiles, Sequence) and not isinstance(profiles, str):
        items = [(f"{getattr(p, 'model', '') or 'model'} #{i}", p) for i, p in enumerate(profiles)]
    else:
        raise ValueError(f"Invalid profiles: {type(profiles).__name__} (expected dict or list)")
    for label, p in items:
        if not isinstance(p, LocalEnergyProfile):
            raise ValueError(
                f"Invalid profile {label!r}: {type(p).__name__} is not a LocalEnergyProfile"
            )
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"Invalid path: parent folder {str(path.parent)!r} does not exist")

    mean_field, se_field, ylabel = _METRICS[metric]
    fig = Figure(figsize=(6.0, 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    drawn = 0
    for label, prof in items:
        pts = [
            (s, m, e if math.isfinite(e) else 0.0)
            for s, m, e in zip(
                prof.sigmas, getattr(prof, mean_field), getattr(prof, se_field), strict=True
            )
            if math.isfinite(s) and math.isfinite(m)
        ]
        if not pts:
            print(f"plot_local_energy: skipping {label!r}: no finite {metric} points")
            continue
        pts.sort()
        xs, ys, es = zip(*pts, strict=True)
        ax.errorbar(xs, ys, yerr=es, marker="o", markersize=3, capsize=2, label=label)
        drawn += 1
    ax.set_xlabel("σ (perturbation intensity)")
    ax.set_ylabel(ylabel)
    ax.axhline(0.0, color="0.7", linewidth=0.8)
    if title:
        ax.set_title(title)
    if drawn:
        ax.legend(fontsize="small")
    else:
        print(f"plot_local_energy: nothing to draw, writing empty axes to {path}")
        ax.text(0.5, 0.5, "no finite points", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=120)
    return path
