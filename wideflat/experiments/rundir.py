"""A run folder: where a run's results go, and where a resumed run finds them::

    out/
        run.json            resolved config, config hash, seed, the data folder read, environment
                            (versions, git commit, device), argv, status (running | finished |
                            failed | interrupted, with "error") and the summary
        metrics.jsonl       one strict-JSON row per epoch (NaN as null, named in "nonfinite")
        metrics.csv         the same rows as a table (rewritten from metrics.jsonl each epoch)
        tensorboard/        the same rows as TensorBoard scalars (``tensorboard=True``;
                            :mod:`~.tensorboard_log`)
        energy/epoch-0005.json   local-energy profiles δE(σ) (LocalEnergyProfile.to_json)
        energy/train-error-0.01.json  ... measured when the train error first fell to 1 %
        energy/stationary.json   ... measured when the train loss stopped moving
        checkpoints/step-…/      atomic, verified checkpoints (wideflat.experiments.checkpoint)

:class:`RunFolder` writes it; :func:`read_metrics` and :func:`run_status` read it; the resume
helpers decide what a resumed run keeps, refusing (``RunError``, nothing changed) whatever
would lose results.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._io import json_ready, unwritable_reason, write_bytes_atomic, write_json_atomic
from .checkpoint import CheckpointError, ConfigMismatchError, NoCheckpointError, load_checkpoint
from .config import TrainConfig
from .errors import RunError

__all__ = [
    "RunFolder",
    "RunSummary",
    "check_fresh_start",
    "load_resume",
    "parse_row",
    "read_metrics",
    "resume_rows",
    "row_json",
    "run_label",
    "run_status",
]


@dataclass(frozen=True)
class RunSummary:
    """The end of a run, as stored in run.json under ``"summary"``."""

    out: str
    label: str  # sgd | esgd | rsgd | rsgdxy | sam
    seed: int
    epochs: int  # data epochs trained
    steps: int  # optimizer steps
    grad_evals: int  # minibatch gradients, all replicas and inner steps
    test_error: float  # fraction, at the evaluated model (rSGD: the center)
    train_error: float  # fraction, on the train-eval subset
    train_loss: float  # mean minibatch loss over the last epoch
    train_seconds: float  # wall clock of the training steps only (no evaluation)
    images_per_s: float  # gradient images per second over epochs 2.. (epoch 1 if only one)
    stop_reason: str = "epochs"  # "epochs", or why the run stopped early (stop_at_collapse)


def run_label(cfg: TrainConfig) -> str:
    """The run kind: the method, or ``rsgdxy`` for rSGD at the per-replica budget."""
    return "rsgdxy" if cfg.budget == "per-replica" else cfg.method


# --- metrics.jsonl ------------------------------------------------------------------------


def row_json(row: dict) -> str:
    """One strict-JSON line: non-finite floats written as null and named in ``nonfinite``."""
    bad = sorted(k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v))
    return json.dumps({**json_ready(row), "nonfinite": bad}, allow_nan=False)


def parse_row(line: str) -> dict | None:
    """One ``metrics.jsonl`` row (null → NaN), or None if the line is not one."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return None
    epoch = row.get("epoch") if isinstance(row, dict) else None
    if isinstance(epoch, bool) or not isinstance(epoch, int):
        return None
    return {k: (math.nan if v is None else v) for k, v in row.items()}


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The rows of a ``metrics.jsonl`` (null → NaN); unparsable lines are skipped.

    (A resumed run does not skip them: see :func:`resume_rows`.)
    """
    path = Path(path)
    if not path.is_file():
        return []
    lines = path.read_text(errors="replace").splitlines()
    return [row for row in map(parse_row, lines) if row is not None]


def flat_row(row: dict) -> dict[str, Any]:
    """A metrics row with ``nonfinite`` left out and a list value (each replica's errors)
    spread over ``key[0]``, ``key[1]``, ... (the columns of metrics.csv and the TensorBoard
    tags).

    Example:
        >>> flat_row({"epoch": 2, "errs": [0.1, 0.2], "nonfinite": []})
        {'epoch': 2, 'errs[0]': 0.1, 'errs[1]': 0.2}
    """
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key == "nonfinite":
            continue
        if isinstance(value, list):
            for i, v in enumerate(value):
                out[f"{key}[{i}]"] = v
        else:
            out[key] = value
    return out


def metrics_csv(rows: list[dict]) -> str:
    """Metrics rows as CSV: one column per key in order of first appearance, a list value
    (each replica's errors) spread over ``key[0]``, ``key[1]``, ...; NaN and missing cells
    empty.

    Example:
        >>> rows = [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "errs": [0.1, 0.2]}]
        >>> print(metrics_csv(rows), end="")
        epoch,loss,errs[0],errs[1]
        1,0.5,,
        2,,0.1,0.2
    """
    import csv
    import io

    flat = [flat_row(row) for row in rows]
    columns = list(dict.fromkeys(k for row in flat for k in row))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in flat:
        cells = []
        for key in columns:
            v = row.get(key)
            cells.append("" if v is None or (isinstance(v, float) and math.isnan(v)) else v)
        writer.writerow(cells)
    return buf.getvalue()


def run_status(folder: str | os.PathLike) -> tuple[str | None, str | None]:
    """``(status, config_hash)`` from a folder's run.json; ``(None, None)`` if unreadable."""
    try:
        record = json.loads((Path(folder) / "run.json").read_text())
    except (OSError, ValueError):  # unreadable, not UTF-8 or not JSON
        return None, None
    if not isinstance(record, dict):
        return None, None
    return record.get("status"), record.get("config_hash")


# --- resuming -----------------------------------------------------------------------------


def _resolve_resume(out: Path, resume: str | None) -> tuple[Path | None, int | None]:
    """(checkpoint folder, step or None) to resume from, or (None, None) for a fresh start."""
    if resume is None:
        return None, None
    if resume == "auto":
        return out / "checkpoints", None
    path = Path(resume)
    if not path.exists():
        raise RunError(f"resume checkpoint not found: {path}")
    if (path / "checkpoints").is_dir():
        return path / "checkpoints", None
    m = re.fullmatch(r"step-(\d+)", path.name)
    if m and (path / "MANIFEST.json").exists():
        return path.parent, int(m.group(1))
    return path, None


def load_resume(
    cfg: TrainConfig, chash: str, out: Path, resume: str | None
) -> tuple[Path, dict] | None:
    """(checkpoint file, payload) to resume from, or None for a fresh start.

    ``resume``: None (fresh), ``"auto"`` (the newest verified checkpoint in
    ``out/checkpoints``, else fresh) or a run folder, its ``checkpoints`` folder or one
    ``step-…`` folder (must exist and match the config).
    """
    ckpt_dir, ckpt_step = _resolve_resume(out, resume)
    if ckpt_dir is None:
        return None
    try:
        step, payload = load_checkpoint(
            ckpt_dir, config_hash=chash, step=ckpt_step, config=cfg.to_dict()
        )
    except NoCheckpointError:
        if resume != "auto":
            raise RunError(f"no committed checkpoint in {ckpt_dir}") from None
        return None
    except ConfigMismatchError as e:
        fix = (
            f"run with the settings of that run, or start a new one with another --out (or "
            f"delete {out} to start over)"
            if resume == "auto"
            else "resume a checkpoint of this config, or start fresh without --resume"
        )
        raise RunError(f"{e}; {fix}") from None
    except CheckpointError as e:
        raise RunError(str(e)) from None
    return ckpt_dir / f"step-{step:09d}" / "rank-0.pt", payload


def check_fresh_start(out: Path, first_step: int, log: Callable[[str], None]) -> None:
    """``--resume auto`` found no committed checkpoint in ``out``: refuse (RunError, nothing
    changed) to start it from scratch when that would discard more than a run writes before
    its first checkpoint (at most the row of epoch 1: the next row follows that checkpoint):
    a finished run.json, a second metrics row, or step folders past the first save (whose
    rank files may still be intact)."""
    ckpt_dir = out / "checkpoints"
    status, _ = run_status(out)
    metrics = out / "metrics.jsonl"
    lines = metrics.read_text(errors="replace").splitlines() if metrics.is_file() else []
    rows = sum(1 for line in lines if line.strip())
    steps = [
        p
        for p in ckpt_dir.glob("step-*")
        if (m := re.fullmatch(r"step-(\d+)", p.name)) and int(m.group(1)) > first_step
    ]
    found = [
        text
        for text, present in (
            ("run.json says finished", status == "finished"),
            (f"metrics.jsonl has {rows} rows", rows > 1),
            (f"{len(steps)} step folders without a manifest", steps),
        )
        if present
    ]
    if found:
        raise RunError(
            f"{out} holds a run ({'; '.join(found)}) but no committed checkpoint in "
            f"{ckpt_dir}; nothing was changed: delete {out} to start over, or choose "
            "another --out"
        )
    if (out / "run.json").exists() or (out / "metrics.jsonl").exists():
        log(f"no committed checkpoint in {ckpt_dir}: starting from scratch")


def resume_rows(path: Path, start_epoch: int, log: Callable[[str], None]) -> list[dict]:
    """The rows of ``metrics.jsonl`` a run resumed at ``start_epoch`` keeps: one per epoch
    1..start_epoch. Lines past them (a row cut short by a kill) are dropped, damaged ones
    other than the last line with a note; a damaged or missing row among them raises
    RunError naming the file and line (nothing changed)."""
    rows: list[dict] = []
    damaged: list[int] = []
    lines = path.read_text(errors="replace").splitlines() if path.is_file() else []
    for number, line in enumerate(lines, 1):
        row = parse_row(line)
        if row is None and line.strip():
            damaged.append(number)
        elif row is not None and row["epoch"] <= start_epoch:
            rows.append(row)
    missing = sorted(set(range(1, start_epoch + 1)) - {r["epoch"] for r in rows})
    if missing:
        what = f"line {damaged[0]} is damaged" if damaged else "a row is missing"
        raise RunError(
            f"{path}: {what}, and the row of epoch {missing[0]} is not there (the checkpoint "
            f"is at epoch {start_epoch}); nothing was changed: repair the line, or delete "
            f"{path.parent} to start over"
        )
    noted = [n for n in damaged if n < len(lines)]
    if noted:
        log(f"{path}: dropping damaged line(s) {', '.join(map(str, noted))}, not rows kept")
    return rows


# --- writing ------------------------------------------------------------------------------


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class RunFolder:
    """The run folder ``out`` of one run: checked first, then written as the run goes."""

    def __init__(self, out: str | os.PathLike, *, tensorboard: bool = False):
        self.path = Path(out)
        self.metrics = self.path / "metrics.jsonl"
        self.record: dict[str, Any] = {}
        self.tensorboard = tensorboard
        self._scalars = None  # a tensorboard_log.ScalarLog once checked

    def check(self, resume: str | None) -> None:
        """RunError unless ``out`` can take this run: a folder (or nothing yet) that is
        writable and, without ``resume``, holds no run."""
        out = self.path
        if out.exists() and not out.is_dir():
            raise RunError(f"output folder {out} exists and is not a folder")
        held = ("run.json", "metrics.jsonl", "checkpoints")
        if resume is None and any((out / name).exists() for name in held):
            raise RunError(
                f"output folder {out} already holds a run; pass --resume auto to continue it "
                "or choose another --out"
            )
        if unwritable_reason(out) is not None:
            raise RunError(f"output folder {out} is not writable")
        if self.tensorboard:
            from .tensorboard_log import scalar_log

            self._scalars = scalar_log(out)

    def begin(self, record: dict[str, Any], rows: list[dict]) -> None:
        """Take the folder: the kept metrics rows, and run.json with status ``running``."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(self.metrics, "".join(row_json(r) + "\n" for r in rows).encode())
        write_bytes_atomic(self.path / "metrics.csv", metrics_csv(rows).encode())
        if self._scalars is not None:
            self._scalars.begin(rows)
        self.record = {**record, "status": "running", "created": _now()}
        write_json_atomic(self.path / "run.json", self.record)

    def append(self, row: dict) -> None:
        """One epoch's metrics row (and metrics.csv rewritten from all rows)."""
        with self.metrics.open("a") as f:
            f.write(row_json(row) + "\n")
        csv = metrics_csv(read_metrics(self.metrics))
        write_bytes_atomic(self.path / "metrics.csv", csv.encode())
        if self._scalars is not None:
            self._scalars.add(row)

    def energy_file(self, epoch: int | None = None, *, name: str | None = None) -> Path:
        """Where the local-energy profile measured after ``epoch`` goes, or the one a
        trigger named ``name`` measured (``train-error-0.01``, ``stationary``); the folder is
        created."""
        (self.path / "energy").mkdir(exist_ok=True)
        file = f"epoch-{epoch:04d}.json" if name is None else f"{name}.json"
        return self.path / "energy" / file

    def stop(self, error: BaseException) -> None:
        """Mark run.json ``failed`` (``interrupted`` for Ctrl-C) with the error's one line."""
        self._close_scalars()
        self.record["status"] = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
        self.record["error"] = " ".join(str(error).split()) or type(error).__name__
        with contextlib.suppress(OSError):  # e.g. the disk is full: the error itself is raised
            write_json_atomic(self.path / "run.json", self.record)

    def _close_scalars(self) -> None:
        if self._scalars is not None:
            with contextlib.suppress(OSError):
                self._scalars.close()

    def finish(self, cfg: TrainConfig, steps: int, train_seconds: float) -> RunSummary:
        """The :class:`RunSummary` from metrics.jsonl, stored in run.json (``finished``)."""
        self._close_scalars()
        rows = read_metrics(self.metrics)
        evaluated = [r for r in rows if "test_error" in r]
        last = evaluated[-1] if evaluated else {}
        speeds = [r["images_per_s"] for r in rows if r.get("epoch", 0) > 1] or [
            r["images_per_s"] for r in rows
        ]
        summary = RunSummary(
            out=str(self.path),
            label=run_label(cfg),
            seed=cfg.seed,
            epochs=int(rows[-1]["epoch"]) if rows else cfg.epochs,
            steps=steps,
            grad_evals=steps * cfg.grad_evals_per_step,
            test_error=float(last.get("test_error", math.nan)),
            train_error=float(last.get("train_error", math.nan)),
            train_loss=float(rows[-1]["train_loss"]) if rows else math.nan,
            train_seconds=train_seconds,
            images_per_s=float(np.median(speeds)) if speeds else math.nan,
            stop_reason=str(rows[-1].get("stop") or "epochs") if rows else "epochs",
        )
        self.record.update(status="finished", summary=asdict(summary), finished=_now())
        write_json_atomic(self.path / "run.json", self.record)
        return summary
