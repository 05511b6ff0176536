"""The resumable work of a committee study: one file per finished piece, in ``OUT/parts``.

A study is cut into pieces that are each saved as soon as they finish, atomically:

* ``parts/ALG/train-START-STOP.pt``: restarts ``START .. STOP−1`` of algorithm ``ALG``
  trained (their output networks and training numbers). Restarts are trained in fixed
  chunks of :data:`CHUNK` (:func:`~wideflat.experiments.committee.train.train_committee`'s
  ``first_restart``: restart ``r`` is the same network in any chunk, up to rounding in the
  last bits of the batched float32 products), so a resumed study gives exactly the numbers
  of an uninterrupted one.
* ``parts/ALG/restart-R.json``: restart ``R`` measured (its row of ``results.json``).

:func:`train_chunk` and :func:`measure_one` are the work functions; they run in the study's
process or in worker processes (they load the data themselves, once per process).
"""

from __future__ import annotations

import io
import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from wideflat._io import write_bytes_atomic, write_json_atomic

from . import _measure
from .presets import ALGORITHMS

__all__ = ["CHUNK", "Parts", "chunks", "load_study_data", "measure_one", "train_chunk"]

CHUNK = 10  # restarts per training piece


def chunks(restarts: int) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` training pieces of a study with ``restarts`` restarts.

    Example:
        >>> chunks(25)
        [(0, 10), (10, 20), (20, 25)]
    """
    return [(s, min(s + CHUNK, restarts)) for s in range(0, restarts, CHUNK)]


class Parts:
    """The ``parts`` folder of a study in ``out``."""

    def __init__(self, out: Path) -> None:
        self.root = Path(out) / "parts"

    def _train_path(self, alg: str, start: int, stop: int) -> Path:
        return self.root / alg / f"train-{start:04d}-{stop:04d}.pt"

    def _measure_path(self, alg: str, r: int) -> Path:
        return self.root / alg / f"restart-{r:04d}.json"

    def load_train(self, alg: str, start: int, stop: int) -> dict[str, Any] | None:
        """A saved training piece, or ``None`` (missing: it is trained again)."""
        path = self._train_path(alg, start, stop)
        if not path.exists():
            return None
        return torch.load(path, map_location="cpu", weights_only=True)

    def save_train(self, alg: str, start: int, stop: int, piece: dict[str, Any]) -> None:
        path = self._train_path(alg, start, stop)
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        torch.save(piece, buf)
        write_bytes_atomic(path, buf.getvalue())

    def load_measure(self, alg: str, r: int) -> dict[str, Any] | None:
        path = self._measure_path(alg, r)
        return json.loads(path.read_text()) if path.exists() else None

    def save_measure(self, alg: str, r: int, row: dict[str, Any]) -> None:
        path = self._measure_path(alg, r)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, row)

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


_DATA: dict[tuple, Any] = {}


def load_study_data(cfg, data_root):
    """The study's data set (cached per process)."""
    from wideflat.data import fashion_committee, teacher_committee

    key = (cfg.data, cfg.n_train, cfg.seed, cfg.balanced, str(data_root))
    if key not in _DATA:
        if cfg.data == "fashion":
            _DATA[key] = fashion_committee(
                data_root, n_train=cfg.n_train, seed=cfg.seed, balanced=cfg.balanced
            )
        else:
            _DATA[key] = teacher_committee(cfg.n_train, seed=cfg.seed)
    return _DATA[key]


def train_chunk(cfg, alg: str, start: int, stop: int, data_root) -> dict[str, Any]:
    """Train restarts ``start .. stop−1`` of ``alg``; the piece saved in ``parts``."""
    from .train import train_committee

    data = load_study_data(cfg, data_root)
    tr = train_committee(
        alg,
        data.X_train,
        data.y_train,
        restarts=stop - start,
        seed=cfg.seed,
        max_epochs=cfg.max_epochs,
        X_test=data.X_test,
        y_test=data.y_test,
        progress=False,
        overrides=cfg.overrides_for(alg),
        first_restart=start,
    )
    return {
        "weights": tr.weights,
        "train_error": tr.train_error.tolist(),
        "train_loss": tr.train_loss.tolist(),
        "test_error": tr.test_error.tolist(),
        "epochs": tr.epochs.tolist(),
        "steps": tr.steps.tolist(),
        "stop_reason": list(tr.stop_reason),
        "wall_time": tr.wall_time,
    }


def measure_one(cfg, alg: str, r: int, w: torch.Tensor, trained: dict, data_root) -> dict:
    """Measure restart ``r`` of ``alg`` (weights ``w``); its row of ``results.json``.

    ``trained`` holds the restart's training numbers (``train_error``, ...). The first
    ``cfg.mc_restarts`` restarts also get the BP–Monte Carlo check (``bp_mc``).
    """
    t0 = time.perf_counter()
    data = load_study_data(cfg, data_root)
    gen = _measure.flatness_generator(cfg.seed, ALGORITHMS.index(alg), r)
    le, en = _measure.measure_restart(w, data, cfg, gen)
    bal = _measure.balanced_error(w.unsqueeze(0), data.X_test, data.y_test)
    row = {
        "restart": r,
        **trained,
        "test_error_balanced": float(bal[0]),
        "local_entropy": le,
        "local_energy": en,
        "bp_mc": None,
    }
    if r < cfg.mc_restarts and torch.isfinite(w).all():
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
        row["bp_mc"] = _measure.bp_mc_gap(w, data, le, cfg.mc_samples, seed)
    row["measure_wall_s"] = time.perf_counter() - t0
    return row
