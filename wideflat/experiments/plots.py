"""Tables and figures from run folders only (never imports training code).

Figures are drawn on a ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot, no global
backend), matplotlib being imported only when a figure is drawn.

* :func:`collect_runs`: every run folder under a folder (``run.json`` + ``metrics.jsonl``).
* :func:`run_flags` / :func:`flag_runs`: why a run is *not a result* (it ended at
  chance-level test error, above the preset's ``max_train_error`` or did not finish).
* :func:`summary_rows` / :func:`format_table`: test error mean ± std per method, like the
  paper's Table 1, with wall clock, throughput and a "check" column: flagged runs get a †
  and a footnote naming the run and the reason.
* :func:`plot_test_error`: Fig. 2, test error vs (rescaled) epoch, mean ± std over seeds.
* :func:`plot_energy_matched`: δE_train(σ) measured when each run first reached a given
  training error (or a stationary loss), the paper's comparison at matched training error.
* :func:`plot_collapse`: the stopping quantities (replica–center distance, d(w, μ)) and
  rSGD's center, replica and ensemble test errors over epochs.
* :func:`plot_energy`: Figs. 3–5, δE_train vs σ per method, one panel per measured epoch;
  the legend gives each method's final train and test error (as the paper's Fig. 3 does).

In both figures flagged runs are drawn apart from their method's clean runs: grey, dashed,
with a hatched band and "† not a result" in the legend. (A run that ends at chance level
barely moves under weight noise, so its δE curve is the lowest: unflagged, it would read as
the flattest method.)

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
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._io import read_jsonl

__all__ = [
    "CHANCE_FRACTION",
    "FLAGGED_COLOR",
    "LABELS",
    "RunRecord",
    "collect_runs",
    "flag_runs",
    "format_matched_table",
    "format_table",
    "matched_rows",
    "plot_collapse",
    "plot_energy",
    "plot_energy_matched",
    "plot_test_error",
    "run_flags",
    "summary_rows",
]

LABELS = {"sgd": "SGD", "esgd": "eSGD", "rsgd": "rSGD", "rsgdxy": "rSGD×y", "sam": "SAM"}
_ORDER = list(LABELS)
# A test error >= CHANCE_FRACTION × (1 - 1/classes) is "at chance": the accuracy is less than
# 5 % of the way from guessing (1/classes) to perfect. 10 classes: >= 85.5 %; 100: >= 94.05 %.
CHANCE_FRACTION = 0.95
FLAGGED_COLOR = "0.55"  # grey
_FLAG_NOTE = "† flagged run, not a result:\nat chance, train error too high, or unfinished"


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
    # trigger name (train-error-0.01, stationary) → profile JSON dict
    triggered: dict[str, dict] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)  # why it is not a result (flag_runs)


def _num(value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value


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
        energy, triggered = {}, {}
        for f in sorted((path / "energy").glob("*.json")):
            try:
                profile = json.loads(f.read_text())
                if f.stem.startswith("epoch-"):
                    energy[int(f.stem.split("-")[1])] = profile
                else:
                    triggered[f.stem] = profile
            except (OSError, ValueError, json.JSONDecodeError):
                continue
        runs.append(
            RunRecord(
                path=path,
                label=str(record.get("label", "?")),
                seed=int(record.get("seed", -1)),
                status=str(record.get("status", "?")),
                summary=record.get("summary") or {},
                metrics=read_jsonl(path / "metrics.jsonl"),
                energy=energy,
                triggered=triggered,
            )
        )
    return runs


def run_flags(summary: dict, *, num_classes: int, max_train_error: float) -> list[str]:
    """Why a finished run is not a result; ``[]`` when it is one.

    Flagged: no finite test error; a test error at chance level, i.e. at least
    :data:`CHANCE_FRACTION` × (1 − 1/``num_classes``); a training error above
    ``max_train_error`` (the preset's, a fraction). Errors in ``summary`` are fractions.

    Example:
        >>> run_flags({"test_error": 0.9, "train_error": 0.1}, num_classes=10, max_train_error=0.5)
        ['test error 90.0 % at chance level (>= 85.5 %; chance 1 - 1/10 = 90.0 %)']
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"Invalid num_classes: {num_classes!r} (expected an int >= 2)")
    if not 0 <= max_train_error <= 1:
        raise ValueError(f"Invalid max_train_error: {max_train_error!r} (expected 0..1)")
    chance = 1 - 1 / num_classes
    test, train = _num(summary.get("test_error")), _num(summary.get("train_error"))
    flags = []
    if not math.isfinite(test):
        flags.append("no test error")
    elif test >= CHANCE_FRACTION * chance:
        limit = 100 * CHANCE_FRACTION * chance
        flags.append(
            f"test error {100 * test:.1f} % at chance level (>= {limit:.1f} %; "
            f"chance 1 - 1/{num_classes} = {100 * chance:.1f} %)"
        )
    if math.isfinite(train) and train > max_train_error:
        flags.append(
            f"train error {100 * train:.1f} % > max_train_error {100 * max_train_error:g} %"
        )
    return flags


def flag_runs(
    runs: list[RunRecord], *, num_classes: int, max_train_error: float
) -> list[RunRecord]:
    """Set each run's ``flags`` (:func:`run_flags`; an unfinished run is flagged by its status)
    and return ``runs``."""
    for r in runs:
        if r.status != "finished":
            r.flags = [f"run {r.status}"]
        else:
            r.flags = run_flags(r.summary, num_classes=num_classes, max_train_error=max_train_error)
    return runs


def _sort_key(label: str):
    return (_ORDER.index(label) if label in _ORDER else len(_ORDER), label)


def _mean_std(values: list[float]) -> tuple[float, float, int]:
    v = np.array([x for x in values if math.isfinite(x)], dtype=float)
    if v.size == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else math.nan, int(v.size)


def summary_rows(runs: list[RunRecord]) -> list[dict]:
    """Per method: finished runs, test/train error mean and std (%), time, throughput, the
    flagged runs among them (``flagged``: how many; ``flagged_runs``: folder → reasons) and
    the runs not finished by status (``unfinished``, e.g. ``{"running": 1}``).

    Flagged runs stay in the means (the row reports what was run); the table marks them.
    """
    rows = []
    for label in sorted({r.label for r in runs}, key=_sort_key):
        done = [r for r in runs if r.label == label and r.status == "finished"]
        s = [r.summary for r in done]
        row = {"label": label, "runs": len(done), "seeds": sorted(r.seed for r in done)}
        others = Counter(r.status for r in runs if r.label == label and r.status != "finished")
        row["unfinished"] = dict(sorted(others.items()))
        row["flagged_runs"] = {r.path.name: list(r.flags) for r in done if r.flags}
        row["flagged"] = len(row["flagged_runs"])
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


def matched_rows(runs: list[RunRecord], *, finished_only: bool = True) -> list[dict]:
    """Per method and trigger (``train-error-X``, ``stationary``): how many runs reached it,
    the epoch they did (mean ± std), and δE_train (%) at each σ there (mean ± std): the
    comparison at matched training error.

    Like :func:`summary_rows` it counts finished runs only (``runs``: how many; a method with
    none has no rows), so "reached k of n" is final; ``finished_only=False`` also takes runs
    in progress (a single run's page).
    """
    if finished_only:
        runs = [r for r in runs if r.status == "finished"]
    rows = []
    names = sorted({n for r in runs for n in r.triggered})
    for label in sorted({r.label for r in runs}, key=_sort_key):
        mine = [r for r in runs if r.label == label]
        for name in names:
            reached = [r for r in mine if name in r.triggered]
            epochs = [_num(row.get("epoch")) for r in reached for row in r.metrics
                      if name in (row.get("energy_measured") or [])]  # fmt: skip
            row = {"label": label, "trigger": name, "runs": len(mine), "reached": len(reached)}
            row["epoch"], row["epoch_std"], _ = _mean_std(epochs)
            sigmas = reached[0].triggered[name].get("sigmas", []) if reached else []
            row["sigmas"] = [_num(x) for x in sigmas]
            row["delta_error"], row["delta_error_std"] = [], []
            for i in range(len(sigmas)):
                values = [
                    100 * _num(r.triggered[name].get("delta_error", [])[i])
                    for r in reached
                    if len(r.triggered[name].get("delta_error", [])) > i
                ]
                mean, std, _ = _mean_std(values)
                row["delta_error"].append(mean)
                row["delta_error_std"].append(std)
            rows.append(row)
    return rows


def format_matched_table(rows: list[dict]) -> str:
    """A Markdown table of :func:`matched_rows` (δE at the largest σ, lower = flatter)."""
    lines = [
        "| trigger | method | reached | at epoch "
        "| δE_train (%) at the largest σ (lower: flatter) |",
        "|---|---|---:|---:|---:|",
    ]
    for r in sorted(rows, key=lambda r: (r["trigger"], _sort_key(r["label"]))):
        sigma = f"σ = {r['sigmas'][-1]:g}: " if r["sigmas"] else ""
        de = _pm(r["delta_error"][-1], r["delta_error_std"][-1], 2) if r["sigmas"] else "–"
        lines.append(
            f"| {r['trigger']} | {LABELS.get(r['label'], r['label'])} | {r['reached']} of "
            f"{r['runs']} | {_pm(r['epoch'], r['epoch_std'], 1)} | {sigma}{de} |"
        )
    return "\n".join(lines)


def _pm(mean: float, std: float, digits: int) -> str:
    if not math.isfinite(mean):
        return "–"
    if not math.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def format_table(rows: list[dict]) -> str:
    """A Markdown table of :func:`summary_rows` (mean ± std over seeds).

    The last column says whether the row's runs are results: ``ok``, or ``† k of n`` with one
    footnote per flagged run (its folder and why) below the table; runs of the method that
    are not finished (not in the row's numbers) follow in brackets, e.g. ``– (1 running)``.
    """
    lines = [
        "| method | runs | test error (%) | train error (%) | train loss | train time (s) "
        "| images/s | check |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    notes = []
    for r in rows:
        flagged = r.get("flagged_runs", {})
        check = "–" if not r["runs"] else "ok"
        if flagged:
            check = f"† {len(flagged)} of {r['runs']}"
            notes += [f"† {name}: not a result: {'; '.join(why)}." for name, why in flagged.items()]
        if r.get("unfinished"):  # runs in progress (or failed) are not in the row's numbers
            check += " (" + ", ".join(f"{n} {k}" for k, n in r["unfinished"].items()) + ")"
        lines.append(
            f"| {LABELS.get(r['label'], r['label'])} | {r['runs']} "
            f"| {_pm(r['test_error'], r['test_error_std'], 2)} "
            f"| {_pm(r['train_error'], r['train_error_std'], 2)} "
            f"| {_pm(r['train_loss'], r['train_loss_std'], 3)} "
            f"| {_pm(r['train_seconds'], r['train_seconds_std'], 0)} "
            f"| {_pm(r['images_per_s'], r['images_per_s_std'], 0)} | {check} |"
        )
    if notes:
        lines += ["", *notes]
    return "\n".join(lines)


def _figure(figsize: tuple[float, float]):
    """A figure on the Agg canvas: no pyplot state, no global backend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _groups(runs: list[RunRecord], label: str) -> list[tuple[list[RunRecord], bool]]:
    """A method's clean runs and its flagged runs, each drawn as one curve (if any)."""
    mine = [r for r in runs if r.label == label]
    clean = [r for r in mine if not r.flags]
    flagged = [r for r in mine if r.flags]
    return [(group, bad) for group, bad in ((clean, False), (flagged, True)) if group]


def _method_color(label: str) -> str:
    """The method's colour, the same in every panel and figure (SGD C0, eSGD C1, rSGD C2,
    rSGD×y C3, SAM C4; another label a fixed colour from the rest of the cycle)."""
    if label in _ORDER:
        return f"C{_ORDER.index(label)}"
    return f"C{len(_ORDER) + sum(map(ord, label)) % (10 - len(_ORDER))}"


def _draw(ax, x, mean, std, label: str, flagged: bool, *, method: str, ls: str = "-") -> None:
    """One mean ± std curve in ``method``'s colour; a flagged one grey, dashed, with a
    hatched band."""
    if flagged:
        ax.plot(x, mean, "--", marker="x", ms=4, color=FLAGGED_COLOR, label=label)
        ax.fill_between(
            x, mean - std, mean + std, facecolor="none", edgecolor=FLAGGED_COLOR, hatch="//"
        )
        return
    color = _method_color(method)
    ax.plot(x, mean, ls, marker="o", ms=3, color=color, label=label)
    ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2)


def _label(label: str, group: list[RunRecord], flagged: bool, errors: bool = False) -> str:
    text = LABELS.get(label, label)
    if flagged:
        text += f" † ({len(group)} runs)" if len(group) > 1 else " †"
    if errors:
        train = [100 * _num(r.summary.get("train_error")) for r in group]
        test = [100 * _num(r.summary.get("test_error")) for r in group]
        (train, _, _), (test, _, _) = _mean_std(train), _mean_std(test)
        if math.isfinite(test):
            train_text = f"train {train:.1f} %, " if math.isfinite(train) else ""
            text += f" (final: {train_text}test {test:.1f} %)"
    return text


def _draw_test_error(ax, runs: list[RunRecord]) -> bool:
    """Fig. 2 curves on ``ax``; whether anything was drawn."""
    return _draw_over_epochs(ax, runs, lambda row: 100 * _num(row.get("test_error")))


def _draw_over_epochs(ax, runs: list[RunRecord], value, suffix: str = "", ls: str = "-") -> bool:
    """Per method, mean ± std over seeds of ``value(row)`` against the epoch (rows where it
    is not finite are skipped), in line style ``ls``; whether anything was drawn."""
    drawn = False
    for label in sorted({r.label for r in runs}, key=_sort_key):
        for group, flagged in _groups(runs, label):
            curves: dict[int, list[float]] = {}
            for r in group:
                for row in r.metrics:
                    e, v = _num(row.get("epoch")), value(row)
                    if math.isfinite(e) and math.isfinite(v):
                        curves.setdefault(int(e), []).append(v)
            if not curves:
                continue
            epochs = sorted(curves)
            mean = np.array([np.mean(curves[e]) for e in epochs])
            std = np.array([np.std(curves[e]) for e in epochs])
            text = _label(label, group, flagged) + suffix
            _draw(ax, epochs, mean, std, text, flagged, method=label, ls=ls)
            drawn = True
    return drawn


def _draw_energy(ax, runs: list[RunRecord], epoch, *, triggered: bool = False) -> None:
    """One Fig. 3 panel (the profiles measured after ``epoch``, or by the trigger named
    ``epoch`` with ``triggered``) on ``ax``."""
    for label in sorted({r.label for r in runs}, key=_sort_key):
        for group, flagged in _groups(runs, label):
            curves, sigmas = [], None
            for r in group:
                prof = (r.triggered if triggered else r.energy).get(epoch)
                if not prof:
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
            text = _label(label, group, flagged, errors=True)
            _draw(ax, sigmas, mean, std, text, flagged, method=label)


def _legend(ax, runs: list[RunRecord], **where) -> None:
    if ax.get_legend_handles_labels()[0]:
        note = _FLAG_NOTE if any(r.flags for r in runs) else None
        ax.legend(title=note, title_fontsize="small", fontsize="small", **where)


def plot_test_error(runs: list[RunRecord], path: str | os.PathLike, *, title: str = "") -> Path:
    """Fig. 2: test error (%) vs epoch (data epochs; per replica for rSGD×y), mean ± std."""
    path = Path(path)
    fig = _figure((6, 4))
    ax = fig.subplots()
    if not _draw_test_error(ax, runs):
        ax.text(0.5, 0.5, "no finite test errors", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("epoch (rescaled: data consumed)")
    ax.set_ylabel("test error (%)")
    if title:
        ax.set_title(title)
    _legend(ax, runs)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def plot_energy_matched(runs: list[RunRecord], path: str | os.PathLike, *, title: str = "") -> Path:
    """δE_train(σ) (%) measured when each run first reached a training error (or a
    stationary loss), a panel per trigger: the paper's matched-error comparison."""
    path = Path(path)
    names = sorted({n for r in runs for n in r.triggered})
    fig = _figure((4.5 * max(len(names), 1), 3.8))
    axes = np.atleast_1d(fig.subplots(1, max(len(names), 1)))
    for ax, name in zip(axes, names, strict=False):
        _draw_energy(ax, runs, name, triggered=True)
        what = name.replace("train-error-", "train error ≤ ")
        ax.set_title(f"at {what}" if name != "stationary" else "at a stationary train loss")
        ax.set_xlabel("σ (multiplicative)")
        ax.set_ylabel("δE_train (%), lower = flatter")
        ax.grid(alpha=0.3)
        _legend(ax, runs, loc="upper center", bbox_to_anchor=(0.5, -0.3))
    if not names:
        axes[0].text(0.5, 0.5, "no matched-error profiles (energy_at_train_error)",
                     ha="center", va="center", transform=axes[0].transAxes)  # fmt: skip
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def plot_collapse(runs: list[RunRecord], path: str | os.PathLike, *, title: str = "") -> Path:
    """The paper's stopping quantities and the replicas' errors over epochs (mean ± std).

    Left: rSGD's mean replica–center distance ½‖w_a − w̄‖² and eSGD's d(w, μ) = ½‖w − μ‖²
    (log scale; the paper stops at 1e-8). Right, for rSGD: test error of the center, the
    mean over replicas and the ensemble (mean logits); collapse shows as the three meeting.
    """
    path = Path(path)
    fig = _figure((11, 4))
    left, right = fig.subplots(1, 2)
    drawn = _draw_over_epochs(left, runs, lambda r: _num(r.get("replica_distance")),
                              " replica-center")  # fmt: skip
    drawn |= _draw_over_epochs(left, runs, lambda r: _num(r.get("mean_distance")), " d(w, μ)",
                               "--")  # fmt: skip
    if drawn:
        left.set_yscale("log")
    else:
        left.text(0.5, 0.5, "no collapse quantities (SGD/SAM runs only?)", ha="center",
                  va="center", transform=left.transAxes)  # fmt: skip
    left.set_xlabel("epoch")
    left.set_ylabel("distance (½ squared norm)")
    left.set_title("collapse: replicas to center (rSGD), w to μ (eSGD)")
    shown = False
    for key, suffix, ls in (("test_error", " center", "-"),
                            ("replica_test_errors", " replicas (mean)", "--"),
                            ("ensemble_test_error", " ensemble", ":")):  # fmt: skip
        rsgd = [r for r in runs if any("replica_test_errors" in row for row in r.metrics)]
        if not rsgd:
            break

        def value(row, key=key):
            v = row.get(key)
            return 100 * (float(np.mean(v)) if isinstance(v, list) and v else _num(v))

        shown |= _draw_over_epochs(right, rsgd, value, suffix, ls)
    if not shown:
        right.text(0.5, 0.5, "no rSGD runs", ha="center", va="center", transform=right.transAxes)
    right.set_xlabel("epoch")
    right.set_ylabel("test error (%)")
    right.set_title("rSGD: center, replicas and ensemble")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        _legend(ax, runs)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


def plot_energy(runs: list[RunRecord], path: str | os.PathLike, *, title: str = "") -> Path:
    """Figs. 3–5: δE_train(σ) (%) per method, mean ± std over seeds, a panel per epoch."""
    path = Path(path)
    epochs = sorted({e for r in runs for e in r.energy})
    fig = _figure((4.5 * max(len(epochs), 1), 3.8))
    axes = fig.subplots(1, max(len(epochs), 1))
    axes = np.atleast_1d(axes)
    for ax, epoch in zip(axes, epochs, strict=False):
        _draw_energy(ax, runs, epoch)
        ax.set_title(f"epoch {epoch}")
        ax.set_xlabel("σ (multiplicative)")
        ax.set_ylabel("δE_train (%)")
        ax.grid(alpha=0.3)
        _legend(ax, runs, loc="upper center", bbox_to_anchor=(0.5, -0.3))  # below the panel
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
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path
