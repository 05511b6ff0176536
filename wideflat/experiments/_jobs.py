"""Run independent pieces of a study here or in worker processes, handing each result on as
soon as it finishes (so the caller saves it before the next one is reported)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from typing import Any

__all__ = ["run_jobs"]


def run_jobs(
    fn: Callable[..., Any], tasks: Iterable[tuple], jobs: int, on_result: Callable[[Any], None]
) -> None:
    """``on_result(fn(*task))`` for every task: in this process (``jobs == 1``) or in ``jobs``
    spawned worker processes (one torch thread each: they share the cores), at most ``jobs``
    tasks in flight. A failing task raises after
    the results that finished with it were handed on; the tasks not started are cancelled."""
    tasks = list(tasks)
    if jobs == 1:
        for task in tasks:
            on_result(fn(*task))
        return
    pool = ProcessPoolExecutor(
        max_workers=jobs, mp_context=get_context("spawn"), initializer=_one_thread
    )
    pending: dict = {}
    try:
        while tasks or pending:
            while tasks and len(pending) < jobs:
                task = tasks.pop(0)
                pending[pool.submit(fn, *task)] = task
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            failed = [f for f in finished if f.exception() is not None]
            for fut in finished:
                pending.pop(fut)
                if fut not in failed:
                    on_result(fut.result())
            if failed:
                raise failed[0].exception()
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)
