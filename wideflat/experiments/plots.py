"""Tables and figures from run folders only (never imports training code).

* :func:`collect_runs`: every run folder under a folder (``run.json`` + ``metrics.jsonl``).
* :func:`summary_rows` / :func:`format_table`: test error mean ± std per method, like the
  paper's Table 1, with wall clock and throughput.
* :func:`plot_test_error`: Fig. 2, test error vs (rescaled) epoch, mean ± std over seeds.
* :func:`plot_energy`: Figs. 3–5, δE_train vs σ per method, one panel per measured epoch.

Everything tolerates NaN, empty and one-row metrics: missing values are skipped, a figure
with nothing to draw still gets written with a note, and nothing here raises on bad rows.

Example:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     collect_runs(d), format_table(summary_rows([])).splitlines()[0][:30]
    ([], '| method | runs | test error (')
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "LABELS",
    "RunRecord",
    "collect_runs",
    "format_table",
    "plot_energy",
    "plot_test_error",
    "summary_rows",
]

LABELS = {"sgd": "SGD", "esgd": "eSGD", "rsgd": "rSGD", "rsgdxy": "rSGD×y", "sam": "SAM"}
_ORDER = list(LABELS)


@dataclass
class RunRecord:
    """One run folder as read from disk."""

    path: Path
    label: str  # sgd | esgd | rsgd | rsgdxy | sam
    seed: int
    status: str
    summary: dict = field(default_factory=dict)
    metrics: list[dict] = field(default_factory=list)
    energy: dict[int, dict] = field(default_factory=dict)  # epoch → profile JSON dict


def _num(value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return rows
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def collect_runs(folder: str | os.PathLike) -> list[RunRecord]:
    """Every run under ``folder`` (itself or its sub-folders) with a readable run.json."""
    folder = Path(folder)
    runs = []
    candidates = (
        [folder] + sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    )
    for path in candidates:
        try:
            record = json.loads((path / "run.json").read_text())
        except (OSError, json.JSONDecodeError):
            continue
        energy = {}
        for f in sorted((path / "energy").glob("epoch-*.json")):
            try:
                energy[int(f.stem.split("-")[1])] = json.loads(f.read_text())
            except (OSError, ValueError, json.JSONDecodeError):
                continue
        runs.append(
            RunRecord(
                path=path,
                label=str(record.get("label", "?")),
                seed=int(record.get("seed", -1)),
                status=str(record.get("status", "?")),
                summary=record.get("summary") or {},
                metrics=_read_jsonl(path / "metrics.jsonl"),
                energy=energy,
            )
        )
    return runs


def _sort_key(label: str):
    return (_ORDER.index(label) if label in _ORDER else len(_ORDER), label)


def _mean_std(values: list[float]) -> tuple[float, float, int]:
    v = np.array([x for x in values if math.isfinite(x)], dtype=float)
    if v.size == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else math.nan, int(v.size)


def summary_rows(runs: list[RunRecord]) -> list[dict]:
    """Per method: finished runs, test/train error mean and std (%), time, throughput."""
    rows = []
    for label in sorted({r.label for r in runs}, key=_sort_key):
        done = [r for r in runs if r.label == label and r.status == "finished"]
        s = [r.summary for r in done]
        row = {"label": label, "runs": len(done), "seeds": sorted(r.seed for r in done)}
        for key, scale in (
            ("test_error", 100),
            ("train_error", 100),
            ("train_loss", 1),
            ("train_seconds", 1),
            ("images_per_s", 1),
        ):
            mean, std, _ = _mean_std([_num(x.get(key)) * scale for x in s])
            row[key], row[key + "_std"] = mean, std
        rows.append(row)
    return rows


def _pm(mean: float, std: float, digits: int) -> str:
    if not math.isfinite(mean):
        return "–"
    if not math.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def format_table(rows: list[dict]) -> str:
    """A Markdown table of :func:`summary_rows` (mean ± std over seeds)."""
    lines = [
        "| method | runs | test error (%) | train error (%) | train loss | train time (s) "
        "| images/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {LABELS.get(r['label'], r['label'])} | {r['runs']} "
            f"| {_pm(r['test_error'], r['test_error_std'], 2)} "
            f"| {_pm(r['train_error'], r['train_error_std'], 2)} "
            f"| {_pm(r['train_loss'], r['train_loss_std'], 3)} "
            f"| {_pm(r['train_seconds'], r['train_seconds_std'], 0)} "
            f"| {_pm(r['images_per_s'], r['images_per_s_std'], 0)} |"
        )
    return "\n".join(lines)


def _pyplot():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_test_error(runs: list[RunRecord], path: str | os.PathLike, *, title: str = "") -> Path:
    """Fig. 2: test error (%) vs epoch (data epochs; per replica for rSGD×y), mean ± std."""
    plt = _pyplot()
    path = Path(path)
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = False
    for label in sorted({r.label for r in runs}, key=_sort_key):
        curves: dict[int, list[float]] = {}
        for r in runs:
            if r.label != label:
                continue
            for row in r.metrics:
                e, err = _num(row.get("epoch")), _num(row.get("test_error"))
                if math.isfinite(e) and math.isfinite(err):
                    curves.setdefault(int(e), []).append(100 * err)
        if not curves:
            continue
        epochs = sorted(curves)
        mean = np.array([np.mean(curves[e]) for e in epochs])
        std = np.array([np.std(curves[e]) for e in epochs])
        (line,) = ax.plot(epochs, mean, marker="o", ms=3, label=LABELS.get(label, label))
        ax.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        drawn = True
    if not drawn:
        ax.text(0.5, 0.5, "no finite test errors", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("epoch (rescaled: data consumed)")
    ax.set_ylabel("test error (%)")
    if title:
        ax.set_title(title)
    if drawn:
        ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_energy(runs: list[RunRecord], path: str | os.PathLike, *, title: str = "") -> Path:
    """Figs. 3–5: δE_train(σ) (%) per method, mean ± std over seeds, a panel per epoch."""
    plt = _pyplot()
    path = Path(path)
    epochs = sorted({e for r in runs for e in r.energy})
    fig, axes = plt.subplots(1, max(len(epochs), 1), figsize=(4.5 * max(len(epochs), 1), 3.8))
    axes = np.atleast_1d(axes)
    for ax, epoch in zip(axes, epochs, strict=False):
        for label in sorted({r.label for r in runs}, key=_sort_key):
            curves = []
            sigmas = None
            for r in runs:
                prof = r.energy.get(epoch)
                if r.label != label or not prof:
                    continue
                s = [_num(x) for x in prof.get("sigmas", [])]
                d = [100 * _num(x) for x in prof.get("delta_error", [])]
                if s and len(s) == len(d):
                    sigmas = s if sigmas is None else sigmas
                    if s == sigmas:
                        curves.append(d)
            if not curves:
                continue
            c = np.array(curves, dtype=float)
            mean, std = np.nanmean(c, axis=0), np.nanstd(c, axis=0)
            (line,) = ax.plot(sigmas, mean, marker="o", ms=3, label=LABELS.get(label, label))
            ax.fill_between(sigmas, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        ax.set_title(f"epoch {epoch}")
        ax.set_xlabel("σ (multiplicative)")
        ax.set_ylabel("δE_train (%)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    if not epochs:
        axes[0].text(
            0.5,
            0.5,
            "no local-energy profiles",
            ha="center",
            va="center",
            transform=axes[0].transAxes,
        )
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
