"""Which reading of appendix B.1 makes the paper's stopping rules fire: the conventions sweep.

The paper gives the committee machine's hyper-parameters (appendix B.1) but not three
conventions they depend on:

* ``unit_norm``: whether ``η`` moves units kept at norm ``√N`` or at norm 1 (the loss step
  differs by a factor ``N``; distances by ``1/N``);
* ``loss_reduction``: whether the minibatch loss is a mean or a sum over its ``B`` patterns
  (the loss step differs by ``B``; with a sum the coupling term is ``B`` times weaker
  *relative to the loss*, so this is also the question of the coupling's scale);
* ``schedule_clock``: whether ``t`` in ``β(t)``, ``ω(t)``, ``γ(t)`` counts epochs (as B.1
  says) or minibatch steps.

Under the paper's conventions every run ends by its stopping rule (SGD fast at zero training
errors, SGD slow at a loss < 1e-7, rSGD at a replica–center distance < 1e-8, eSGD at
``d(w, μ) < 1e-8``). :func:`run_conventions` trains every algorithm under each of the
``2 × 2 × 2`` conventions with the paper's values and records, per cell, the fraction of
restarts whose rule fired, the epochs it took and how the others ended. Cells are appended
to ``cells.jsonl`` as they finish (a killed sweep resumes where it stopped), several at once
in worker processes (one torch thread each).

Command (the table in ``docs/results.md``)::

    python -m wideflat.experiments.committee.conventions --out docs/committee/conventions \\
        --restarts 4 --max-epochs 6000 --jobs 2
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from wideflat._io import environment, fsync_dir, read_jsonl, write_json_atomic

from .presets import ALGORITHMS, committee_preset
from .train import _RULE_REASON

__all__ = ["CONVENTIONS", "convention_name", "format_conventions_table", "run_conventions"]

CONVENTIONS: tuple[dict[str, str], ...] = tuple(
    {"unit_norm": u, "loss_reduction": r, "schedule_clock": c}
    for u, r, c in itertools.product(("sqrt-n", "one"), ("mean", "sum"), ("epoch", "step"))
)


def convention_name(conv: Mapping[str, str]) -> str:
    """``"sqrt-n/mean/epoch"``-style label of a convention.

    Example:
        >>> convention_name(CONVENTIONS[0])
        'sqrt-n/mean/epoch'
    """
    return f"{conv['unit_norm']}/{conv['loss_reduction']}/{conv['schedule_clock']}"


def _run_cell(
    conv: dict[str, str],
    algorithm: str,
    restarts: int,
    max_epochs: int,
    seed: int,
    data: str,
    data_root: str | None,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Train one (convention, algorithm) cell in this (worker) process; its JSON row."""
    from wideflat.data import fashion_committee, teacher_committee

    from .train import train_committee

    if data == "fashion":
        d = fashion_committee(data_root, n_train=500, seed=seed, balanced=True)
    else:
        d = teacher_committee(500, seed=seed)
    res = train_committee(
        algorithm,
        d.X_train,
        d.y_train,
        restarts=restarts,
        seed=seed,
        max_epochs=max_epochs,
        X_test=d.X_test,
        y_test=d.y_test,
        progress=False,
        overrides={**conv, **extra},
    )
    return {
        "convention": convention_name(conv),
        **conv,
        "algorithm": algorithm,
        "restarts": restarts,
        "max_epochs": max_epochs,
        "seed": seed,
        "data": data,
        "rule": _RULE_REASON[algorithm],
        "overrides": extra,
        "stop_reason": list(res.stop_reason),
        "epochs": res.epochs.tolist(),
        "train_error": res.train_error.tolist(),
        "test_error": res.test_error.tolist(),
        "train_wall_s": res.wall_time,
    }


def run_conventions(
    out_dir: str | os.PathLike,
    *,
    restarts: int = 4,
    max_epochs: int = 6000,
    seed: int = 0,
    algorithms: Iterable[str] = ALGORITHMS,
    conventions: Iterable[Mapping[str, str]] = CONVENTIONS,
    data: str = "fashion",
    data_root: str | None = None,
    jobs: int = 2,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    log=print,
) -> list[dict[str, Any]]:
    """Train every (convention, algorithm) cell not yet in ``out_dir/cells.jsonl``.

    Each finished cell is appended to ``cells.jsonl`` (flushed and fsynced) as it finishes;
    cells already there with the same ``restarts``, ``max_epochs``, ``seed`` and ``data`` are
    not run again. ``summary.json`` and ``table.md`` are rewritten at the end. Returns the
    rows of this sweep's cells (those of ``cells.jsonl`` with these settings). ``overrides``
    maps an algorithm to hyper-parameters replacing the paper's (default: the paper's).
    """
    overrides = {a: dict(v) for a, v in (overrides or {}).items()}
    conventions = [dict(c) for c in conventions]
    algorithms = list(algorithms)
    for a in {*algorithms, *overrides}:  # bad names and values are refused before any run
        for c in conventions:
            committee_preset(a, {**c, **overrides.get(a, {})})
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "cells.jsonl"
    rows = read_jsonl(path) if path.exists() else []
    same = {"restarts": restarts, "max_epochs": max_epochs, "seed": seed, "data": data}

    def current(row: Mapping[str, Any]) -> bool:
        return all(row.get(k) == v for k, v in same.items()) and row.get(
            "overrides", {}
        ) == overrides.get(row["algorithm"], {})

    done = {(r["convention"], r["algorithm"]) for r in rows if current(r)}
    todo = [
        (dict(c), a) for c in conventions for a in algorithms if (convention_name(c), a) not in done
    ]
    todo.sort(key=lambda ca: ca[1].startswith("rsgd"), reverse=True)  # longest first
    log(f"conventions sweep: {len(todo)} cells to run, {len(done)} done, {jobs} worker(s)")
    t0 = time.perf_counter()
    if todo:
        args = (restarts, max_epochs, seed, data, data_root)
        with path.open("a") as fh:
            for i, row in enumerate(_cells(todo, args, overrides, jobs), 1):
                fh.write(json.dumps(row) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
                rows.append(row)
                elapsed = time.perf_counter() - t0
                eta = elapsed / i * (len(todo) - i)
                cell = _summarize(row)
                log(
                    f"[{i}/{len(todo)}] {row['convention']:18s} {row['algorithm']:9s} "
                    f"rule fired {cell['stopped']}/{row['restarts']}, "
                    f"epochs {cell['epochs_text']}, train err {cell['train_error']:.3f} "
                    f"({row['train_wall_s']:.0f} s; elapsed {elapsed:.0f} s, ETA {eta:.0f} s)"
                )
        fsync_dir(out)
    current_rows = [r for r in rows if current(r)]
    summary = {
        "config": {**same, "algorithms": list(algorithms), "jobs": jobs},
        "versions": environment(),
        "cells": [{**_summarize(r), "convention": r["convention"], "algorithm": r["algorithm"]}
                  for r in current_rows],
    }  # fmt: skip
    write_json_atomic(out / "summary.json", summary)
    (out / "table.md").write_text(format_conventions_table(current_rows) + "\n")
    return current_rows


def _cells(todo, args, overrides, jobs) -> Iterator[dict[str, Any]]:
    """The rows of the cells of ``todo``, as they finish (``jobs`` worker processes)."""
    if jobs == 1:
        for c, a in todo:
            yield _run_cell(c, a, *args, overrides.get(a, {}))
        return
    ctx = get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_one_thread) as pool:
        futures = [pool.submit(_run_cell, c, a, *args, overrides.get(a, {})) for c, a in todo]
        for fut in as_completed(futures):
            yield fut.result()


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _summarize(row: Mapping[str, Any]) -> dict[str, Any]:
    """Fraction stopped by the rule, epochs to stop (median, range), how the rest ended."""
    reasons = row["stop_reason"]
    stopped = [e for e, s in zip(row["epochs"], reasons, strict=True) if s == row["rule"]]
    if stopped:
        med = statistics.median(stopped)
        text = f"{med:.0f} [{min(stopped):.0f}–{max(stopped):.0f}]"
    else:
        med, text = math.nan, "–"
    others = Counter(s for s in reasons if s != row["rule"])
    return {
        "stopped": len(stopped),
        "fraction_stopped": len(stopped) / len(reasons),
        "epochs_median": med,
        "epochs_text": text,
        "other_reasons": dict(others),
        "train_error": statistics.fmean(row["train_error"]),
        "test_error": statistics.fmean(row["test_error"]),
    }


def format_conventions_table(rows: Iterable[Mapping[str, Any]]) -> str:
    """Markdown table: one row per convention, one column per algorithm.

    Each cell: ``stopped/restarts`` by the algorithm's rule, median epochs to stop with the
    range, then the mean final training error (and the other stop reasons, if any).
    """
    rows = list(rows)
    algs = [a for a in ALGORITHMS if any(r["algorithm"] == a for r in rows)]
    convs = [convention_name(c) for c in CONVENTIONS if any(
        r["convention"] == convention_name(c) for r in rows)]  # fmt: skip
    by = {(r["convention"], r["algorithm"]): r for r in rows}
    lines = [
        "| convention (unit norm / loss / clock) | " + " | ".join(algs) + " |",
        "|---|" + "---|" * len(algs),
    ]
    for conv in convs:
        cells = []
        for a in algs:
            r = by.get((conv, a))
            if r is None:
                cells.append("")
                continue
            s = _summarize(r)
            other = ", ".join(f"{k} {v}" for k, v in sorted(s["other_reasons"].items()))
            cells.append(
                f"{s['stopped']}/{len(r['stop_reason'])} · {s['epochs_text']} · "
                f"err {s['train_error']:.3f}" + (f" ({other})" if other else "")
            )
        lines.append(f"| {conv} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m wideflat.experiments.committee.conventions",
        description="Train the committee algorithms of appendix B.1 under each reading of "
        "its conventions (unit norm x loss reduction x schedule clock) and tabulate how "
        "often each stopping rule fires. Resumable: rerun the same command after a kill.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", required=True, help="output folder (cells.jsonl, table.md)")
    p.add_argument("--restarts", type=int, default=4)
    p.add_argument("--max-epochs", type=int, default=6000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", default="fashion", choices=["fashion", "teacher"])
    p.add_argument("--data-root")
    p.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS), choices=ALGORITHMS)
    p.add_argument("--jobs", type=int, default=2, help="worker processes (1 thread each)")
    p.add_argument("--set", action="append", default=[], metavar="ALG.FIELD=VALUE",
                   help="replace a paper hyper-parameter (repeatable)")  # fmt: skip
    args = p.parse_args(argv)
    from wideflat.cli import _committee_overrides

    overrides: dict[str, dict[str, Any]] = {}
    for alg, field, value in _committee_overrides(args.set):
        overrides.setdefault(alg, {})[field] = value
    rows = run_conventions(
        args.out,
        restarts=args.restarts,
        max_epochs=args.max_epochs,
        seed=args.seed,
        algorithms=args.algorithms,
        data=args.data,
        data_root=args.data_root,
        jobs=args.jobs,
        overrides=overrides,
        log=lambda s: print(s, file=sys.stderr, flush=True),
    )
    print(format_conventions_table(rows))
    return 0


def _cli() -> int:
    from wideflat.cli import run_module_command

    return run_module_command(main, "conventions")


if __name__ == "__main__":
    sys.exit(_cli())
