"""Differences to a reference method paired by seed: what a study's claims rest on.

Two methods trained with the same seed share their initialisation and minibatch order, so
the difference method − reference per seed removes most of the seed-to-seed spread that the
per-method means ± std of :func:`~.plots.summary_rows` carry. For each method other than the
reference and each quantity, :func:`paired_rows` gives the mean of the per-seed differences
and its standard error (std with ddof = 1 over √n) over the seeds where both runs have it:

* the final test error (%);
* δE_train (%) at the largest σ measured, at each matched-training-error or stationary
  trigger (each run measured when *it* reached the trigger) and at each fixed epoch.

Only finished runs that are not flagged (:func:`~.plots.flag_runs`: at chance level, above
the preset's training error threshold) enter a pair.

Example:
    >>> from pathlib import Path
    >>> from wideflat.experiments.plots import RunRecord
    >>> runs = [RunRecord(Path(f"{m}-s{s}"), m, s, "finished", {"test_error": e})
    ...         for m, s, e in [("sgd", 0, .10), ("sgd", 1, .12), ("esgd", 0, .09),
    ...                         ("esgd", 1, .10)]]
    >>> row = paired_rows(runs)[0]
    >>> row["label"], row["quantity"], row["n"], round(row["mean"], 6), round(row["se"], 6)
    ('esgd', 'test error', 2, -1.5, 0.5)
"""

from __future__ import annotations

import math

from .plots import LABELS, RunRecord, _mean_std, _num, _sort_key

__all__ = ["TITLE", "format_paired_table", "paired_rows"]

TITLE = "Paired with SGD (same seed; mean ± s.e. over seeds; finished runs not flagged)"


def _quantities(run: RunRecord) -> dict[str, float]:
    """A run's paired quantities (in %), by name."""
    out = {"test error": 100 * _num(run.summary.get("test_error"))}
    points = sorted(run.triggered.items())
    points += [(f"epoch {e}", p) for e, p in sorted(run.energy.items())]
    for where, profile in points:
        sigmas, delta = profile.get("sigmas") or [], profile.get("delta_error") or []
        if sigmas and len(delta) == len(sigmas):
            out[f"δE(σ={_num(sigmas[-1]):g}) at {where}"] = 100 * _num(delta[-1])
    return out


def paired_rows(runs: list[RunRecord], reference: str = "sgd") -> list[dict]:
    """Per method other than ``reference`` and per quantity: ``n`` seeds with both values,
    ``mean`` and ``se`` of method − reference (percentage points; ``se`` NaN for n = 1), and
    the ``seeds``. Empty without reference runs."""
    usable = [r for r in runs if r.status == "finished" and not r.flags]
    base = {r.seed: _quantities(r) for r in usable if r.label == reference}
    rows = []
    for label in sorted({r.label for r in usable} - {reference}, key=_sort_key):
        mine = {r.seed: _quantities(r) for r in usable if r.label == label}
        names = sorted({q for values in mine.values() for q in values}, key=_order)
        for name in names:
            pairs = {s: v[name] - base[s][name] for s, v in sorted(mine.items())
                     if s in base and math.isfinite(v.get(name, math.nan))
                     and math.isfinite(base[s].get(name, math.nan))}  # fmt: skip
            if not pairs:
                continue
            mean, std, n = _mean_std(list(pairs.values()))  # std NaN for n = 1
            rows.append({"label": label, "quantity": name, "n": n, "mean": mean,
                         "se": std / math.sqrt(n), "seeds": list(pairs)})  # fmt: skip
    return rows


def _order(name: str) -> tuple:
    """Test error first, then the triggers, then the fixed epochs by number."""
    if name == "test error":
        return (0, 0, name)
    epoch = name.rsplit(" at epoch ", 1)
    return (2, int(epoch[1]), name) if len(epoch) == 2 else (1, 0, name)


def format_paired_table(rows: list[dict], reference: str = "sgd") -> str:
    """A Markdown table of :func:`paired_rows`: mean ± s.e. of the paired differences."""
    ref = LABELS.get(reference, reference)
    lines = [
        f"| method | quantity | seeds | method − {ref} (points, mean ± s.e.) |",
        "|---|---|---:|---:|",
    ]
    for r in rows:
        diff = f"{r['mean']:+.2f}" + (f" ± {r['se']:.2f}" if math.isfinite(r["se"]) else "")
        lines.append(f"| {LABELS.get(r['label'], r['label'])} | {r['quantity']} | {r['n']} "
                     f"| {diff} |")  # fmt: skip
    return "\n".join(lines)
