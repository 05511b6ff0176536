"""How a committee study's pieces of work are run: here, or in worker processes.

:class:`Runner` submits every training chunk not yet saved, then each trained restart's
measurement, saves each piece as it finishes (:mod:`~wideflat.experiments.committee._parts`),
writes ``results.json`` after each, and an algorithm's block once all its restarts are
measured. A failing piece stops the study after the pieces that finished with it are saved.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context

import torch

from wideflat._io import write_json_atomic

from . import _measure, _parts

__all__ = ["Runner"]


class Runner:
    """Schedules the pieces of a study (training chunks, then each restart's measurement),
    here or in worker processes, saving each as it finishes."""

    def __init__(self, cfg, parts, results, path, data_root, jobs, progress, log, t_start):
        self.cfg, self.parts, self.results, self.path = cfg, parts, results, path
        self.data_root = None if data_root is None else str(data_root)
        self.jobs, self.progress, self.log, self.t_start = jobs, progress, log, t_start
        self.trained: dict[str, dict[int, tuple[torch.Tensor, dict]]] = {}
        self.rows: dict[str, dict[int, dict]] = {}

    def run(self) -> None:
        cfg = self.cfg
        todo_train, todo_measure = [], []
        for alg in cfg.algorithms:
            self.trained[alg], self.rows[alg] = {}, {}
            for start, stop in _parts.chunks(cfg.restarts):
                piece = self.parts.load_train(alg, start, stop)
                if piece is None:
                    todo_train.append((alg, start, stop))
                    continue
                self._add_trained(alg, start, piece)
                for r in range(start, stop):
                    row = self.parts.load_measure(alg, r)
                    if row is None:
                        todo_measure.append((alg, r))
                    else:
                        self.rows[alg][r] = row
        # units of progress: a restart trained, a restart measured
        total = 2 * sum(stop - start for _, start, stop in todo_train) + len(todo_measure)
        self._progress_total(total, len(todo_train), len(todo_measure))
        for alg in cfg.algorithms:
            self._maybe_finish(alg)
        pool = _pool(self.jobs)
        bar = _bar(total, self.progress)
        # Tasks are submitted a few at a time (one at a time here, with jobs=1), so that each
        # finished piece is saved before the next starts; measurements go first.
        queue: deque[tuple[str, str, int, int]] = deque(
            [("train", a, s, e) for a, s, e in todo_train]
            + [("measure", a, r, r + 1) for a, r in todo_measure]
        )
        capacity = 1 if self.jobs == 1 else 2 * self.jobs
        pending: dict[Future, tuple[str, str, int, int]] = {}
        try:
            while queue or pending:
                while queue and len(pending) < capacity:
                    task = queue.popleft()
                    pending[self._submit(pool, task)] = task
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                failed = [f for f in finished if f.exception() is not None]
                for fut in finished:  # save every finished piece before raising a failure
                    kind, alg, start, stop = pending.pop(fut)
                    if fut in failed:
                        continue
                    self._record(kind, alg, start, stop, fut.result(), queue)
                    if bar is not None:
                        bar.update(stop - start if kind == "train" else 1)
                        bar.set_postfix_str(f"{kind} {alg}", refresh=False)
                if failed:
                    raise failed[0].exception()
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)  # what finished is saved already
            raise
        else:
            pool.shutdown(wait=True)
        finally:
            if bar is not None:
                bar.close()

    def _submit(self, pool, task: tuple[str, str, int, int]) -> Future:
        kind, alg, start, stop = task
        if kind == "train":
            return pool.submit(_parts.train_chunk, self.cfg, alg, start, stop, self.data_root)
        w, info = self.trained[alg][start]
        return pool.submit(_parts.measure_one, self.cfg, alg, start, w, info, self.data_root)

    def _record(self, kind: str, alg: str, start: int, stop: int, value, queue: deque) -> None:
        """Save a finished piece, queue what it enables, rewrite ``results.json``."""
        if kind == "train":
            self.parts.save_train(alg, start, stop, value)
            self._add_trained(alg, start, value)
            queue.extendleft(("measure", alg, r, r + 1) for r in reversed(range(start, stop)))
        else:
            self.parts.save_measure(alg, start, value)
            self.rows[alg][start] = value
            for line in value["local_entropy"]["failures"]:
                self.log(f"BP warning: {alg} restart {start}: {line}")
            self._maybe_finish(alg)
        self.results["progress"]["done"] += stop - start if kind == "train" else 1
        self.results["wall_clock_s"] = time.perf_counter() - self.t_start
        write_json_atomic(self.path, self.results)

    def _progress_total(self, total: int, n_train: int, n_measure: int) -> None:
        self.results["progress"] = {
            "done": 0,
            "total": total,
            "unit": "restart trained or measured",
        }
        if n_train or n_measure:
            self.log(
                f"{n_train} training chunk(s) of <= {_parts.CHUNK} restarts and "
                f"{n_measure} measurement(s) to do, {self.jobs} process(es)"
            )

    def _add_trained(self, alg: str, start: int, piece: dict) -> None:
        keys = ("train_error", "test_error", "train_loss", "epochs", "steps", "stop_reason")
        for i, w in enumerate(piece["weights"]):
            info = {k: piece[k][i] for k in keys}
            info["steps"] = int(info["steps"])
            self.trained[alg][start + i] = (w, info)
        self.results.setdefault("train_wall_s", {})
        walls = self.results["train_wall_s"]
        walls[alg] = walls.get(alg, 0.0) + float(piece["wall_time"])

    def _maybe_finish(self, alg: str) -> None:
        """Write ``alg``'s block once every restart is measured."""
        rows = self.rows[alg]
        if len(rows) < self.cfg.restarts or alg in self.results["algorithms"]:
            return
        per_restart = [rows[r] for r in range(self.cfg.restarts)]
        block = {
            "hparams": dataclasses.asdict(self.cfg.hparams(alg)),
            "train_wall_s": self.results.get("train_wall_s", {}).get(alg),
            "flatness_wall_s": sum(r.get("measure_wall_s", 0.0) for r in per_restart),
            "restarts": per_restart,
            "summary": _measure.summarize(per_restart, self.cfg),
        }
        # paper order, whatever order the algorithms finish in
        algos = {**self.results["algorithms"], alg: block}
        self.results["algorithms"] = {a: algos[a] for a in self.cfg.algorithms if a in algos}
        if block["summary"]["bp_nonconverged_points"]:
            self.log(f"{alg}: {block['summary']['bp_nonconverged_points']} BP points did not "
                     "converge (NaN)")  # fmt: skip
        self.log(f"{alg}: {self.cfg.restarts} restarts trained and measured")


class _Inline:
    """A pool that runs each task at once, here (``jobs=1``)."""

    def submit(self, fn, *args):
        fut: Future = Future()
        try:
            fut.set_result(fn(*args))
        except BaseException as exc:
            if not isinstance(exc, Exception):
                raise
            fut.set_exception(exc)
        return fut

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


def _pool(jobs: int):
    if jobs == 1:
        return _Inline()
    return ProcessPoolExecutor(
        max_workers=jobs, mp_context=get_context("spawn"), initializer=_worker_init
    )


def _worker_init() -> None:
    torch.set_num_threads(1)


def _bar(total: int, progress: bool):
    if not progress or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="committee study", unit="restart")
