"""Entropy-SGD's Langevin noise: drawn in blocks on torch's threads, or while the closure runs.

torch's CPU generator (mt19937) is serial: drawing N(0, I) for a 0.66M-parameter network in
one call takes about 1.8 ms, some 5 % of an SGD step of SmallConvNet at batch 128 on one
thread and more on several, since it does not shrink with them. So on CPU the flat noise is
cut into blocks of ``BLOCK`` numbers, block ``j`` drawn from its own stream (stream ``j`` of
:class:`~wideflat._rng.DeviceGenerators`; stream 0 is the device's generator, so a model
under ``BLOCK`` parameters gets ``torch.randn``'s stream): the bits never depend on which
thread draws which block, so the blocks can be drawn

* while the closure computes the gradient, by a worker thread, when torch's threads leave a
  core free (``torch.set_num_threads(1)`` on two cores): the draw is hidden;
* otherwise after the closure, in an OpenMP parallel region of torch's own thread team, when
  torch runs on the GNU OpenMP runtime (Linux wheels) with several threads: each block is a
  ``normal_`` call from one of the team's threads. A second Python thread gains nothing
  there, because after every parallel kernel torch's idle OpenMP threads spin on the other
  cores for a while; the team's threads are the ones to use;
* or on the calling thread.

On an accelerator the draw is one asynchronous kernel of the device's generator, launched
from the calling thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import math
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import groupby

import torch

from .. import _rng
from .._kernels import langevin_
from ._esgd_scratch import Scratch

__all__ = ["BLOCK", "NoiseDraw"]

# Numbers per CPU stream: small enough to share 0.66M numbers out evenly between a few
# threads, large enough that a call (a few µs) is ~1 % of drawing its block (≈ 0.18 ms).
BLOCK = 1 << 16

# Below this many CPU numbers (≈ 0.15 ms of drawing) a hand-off to other threads (tens of
# µs) is not worth it.
_THREAD_MIN = 1 << 16

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()

Task = tuple[torch.Tensor, torch.Generator]


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _worker() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wideflat-noise")
        return _pool


def _spare_core() -> bool:
    """Whether a CPU is left over by torch's intra-op threads. Only then does a worker draw
    during the closure: with every core computing the closure it gained nothing
    (benchmarks/optim_overhead.py, 2 threads on 2 cores; also at the lowest CPU priority,
    since torch's OpenMP threads spin between kernels)."""
    return torch.get_num_threads() < _cpus()


def _draw(tasks: list[Task]) -> None:
    for block, gen in tasks:
        block.normal_(generator=gen)  # torch.randn's stream of that generator, no allocation


class _TeamDraw:
    """Draw tasks in a parallel region of torch's OpenMP team (GNU OpenMP, found among the
    libraries this process has loaded: ``/proc/self/maps``), through ``GOMP_parallel``.

    Each of the team's threads takes the next task until none is left (the GIL makes the
    hand-out atomic; ``normal_`` releases it while it draws). Unavailable (``None`` from
    :func:`team`) off Linux or on another OpenMP runtime.
    """

    _callback_type = ctypes.CFUNCTYPE(None, ctypes.c_void_p)

    def __init__(self, lib: ctypes.CDLL):
        self.lib = lib
        lib.GOMP_parallel.argtypes = [self._callback_type, ctypes.c_void_p, ctypes.c_uint,
                                      ctypes.c_uint]  # fmt: skip
        lib.GOMP_parallel.restype = None
        self._jobs: dict[int, tuple] = {}
        self._ids = itertools.count(1)
        self._callback = self._callback_type(self._body)  # kept alive as long as self

    def _body(self, key) -> None:  # on each thread of the team, the caller's included
        tasks, next_task, errors = self._jobs[key]
        try:
            for i in next_task:
                if i >= len(tasks):
                    return
                block, gen = tasks[i]
                block.normal_(generator=gen)
        except BaseException as error:  # noqa: BLE001 (KeyboardInterrupt too): re-raised
            errors.append(error)

    def __call__(self, tasks: list[Task], threads: int) -> None:
        key = next(self._ids)
        errors: list[BaseException] = []
        self._jobs[key] = (tasks, itertools.count(), errors)
        try:
            self.lib.GOMP_parallel(self._callback, key, threads, 0)
        finally:
            del self._jobs[key]
        if errors:
            raise errors[0]


_team: _TeamDraw | None | bool = False  # False: not looked up yet


def team() -> _TeamDraw | None:
    """The OpenMP team's draw, or ``None`` where it is unavailable."""
    global _team
    if _team is False:
        _team = None
        with contextlib.suppress(OSError, AttributeError):
            with open("/proc/self/maps") as maps:
                paths = {line.split()[-1] for line in maps if "/libgomp" in line}
            # torch's own copy (its wheels bundle one in torch/lib) if several are loaded
            ours = {p for p in paths if p.startswith(os.path.dirname(torch.__file__) + os.sep)}
            if len(ours or paths) == 1:
                _team = _TeamDraw(ctypes.CDLL((ours or paths).pop()))
    return _team


def _draw_cpu(tasks: list[Task]) -> None:
    """The CPU blocks after the closure: on torch's threads if there are several and the
    draw is big enough, else here."""
    threads = torch.get_num_threads()
    draw = team() if threads > 1 and len(tasks) > 1 else None
    if draw is None or sum(block.numel() for block, _ in tasks) < _THREAD_MIN:
        _draw(tasks)
    else:
        draw(tasks, min(threads, len(tasks)))


def _layout(groups, params, include) -> list[tuple[tuple, list[tuple[int, float]]]]:
    """Per (device, dtype), the (flat index, scale) of the parameters in ``include`` whose
    group has noise, in the order of the groups and parameters."""
    buckets: dict[tuple, list[tuple[int, float]]] = {}
    offset = 0
    for group in groups:
        if group["convention"] == "original":
            scale = math.sqrt(2.0 * group["inner_lr"]) * group["noise"]
        else:
            scale = math.sqrt(group["inner_lr"]) * group["noise"]
        n = len(group["params"])
        if scale != 0:
            for i in range(offset, offset + n):
                if i in include:
                    p = params[i]
                    buckets.setdefault((p.device, p.dtype), []).append((i, scale))
        offset += n
    return list(buckets.items())


class NoiseDraw:
    """One inner step's ξ ~ N(0, I) for the parameters that received a gradient.

    Per (device, dtype), a flat buffer over those parameters of the groups with a non-zero
    scale (``√η' ε``, or ``√(2η') ε`` under ``convention="original"``), in the order of the
    groups and parameters, filled by ``normal_``: on CPU block ``j`` (``BLOCK`` numbers) from
    stream ``j`` of the optimizer's generators, elsewhere in one call from the device's
    generator. The blocks are drawn on several threads when the buffer is large (see the
    module's docstring); the bits never depend on that.

    Which parameters receive a gradient is known only after the closure. On CPU with a core
    to spare the draw starts before it, for the parameters that require one, on a worker
    thread; :meth:`add_` checks the guess against the gradients the closure left (and the
    scales, read then) and, when it was wrong, resets the streams and draws again for the
    right set. Either way the bits are those of a draw after the closure.

    Example:
        >>> from wideflat._rng import DeviceGenerators
        >>> from wideflat.optim._esgd_scratch import Scratch
        >>> p = torch.zeros(3)
        >>> groups = [{"params": [p], "inner_lr": 0.25, "noise": 1.0, "convention": "paper"}]
        >>> draw = NoiseDraw(groups, [p], Scratch([p]), DeviceGenerators(0))
        >>> draw.add_([[0]])                                  # p += √0.25 · 1 · ξ
        >>> torch.equal(p, 0.5 * torch.randn(3, generator=torch.Generator().manual_seed(0)))
        True
    """

    def __init__(self, groups, params, scratch: Scratch, gens: _rng.DeviceGenerators):
        self.groups, self.params, self.scratch, self.gens = groups, params, scratch, gens
        self.layout: list = []
        self.flats: list[torch.Tensor] = []
        self.pieces: list[list[torch.Tensor]] = []
        self._states: list[tuple[torch.Generator, torch.Tensor]] = []
        self._future: Future | None = None
        if not _spare_core():
            return  # every core is busy with the closure: drawn in add_, on all of them
        guess = {i for i, p in enumerate(params) if p.requires_grad}
        layout = [(k, m) for k, m in _layout(groups, params, guess) if k[0].type == "cpu"]
        if sum(params[i].numel() for _, m in layout for i, _ in m) < _THREAD_MIN:
            return  # too small to be worth a thread: drawn in add_
        self.layout = layout
        tasks = self._tasks(layout)
        self._states = [(gen, gen.get_state()) for _, gen in tasks]
        self._future = _worker().submit(_draw, tasks)

    def _tasks(self, layout) -> list[Task]:
        tasks: list[Task] = []
        self.flats, self.pieces = [], []
        for key, members in layout:
            ps = [self.params[i] for i, _ in members]
            flat, *pieces = self.scratch.noise_views(key, ps, tuple(i for i, _ in members))
            self.flats.append(flat)
            self.pieces.append(pieces)
            device = key[0]
            if device.type == "cpu":
                tasks += [(b, self.gens.get(device, j)) for j, b in enumerate(flat.split(BLOCK))]
            else:
                tasks.append((flat, self.gens.get(device)))
        return tasks

    def wait(self) -> None:
        """Block until the draw started before the closure is complete (re-raising its
        error, if any)."""
        future, self._future = self._future, None
        if future is not None:
            future.result()

    def settle(self) -> None:
        """Block until the draw has stopped, ignoring its error: before a rollback resets
        the generators, which must not be drawing from then on."""
        with contextlib.suppress(Exception):
            self.wait()

    def add_(self, live: list[list[int]]) -> None:
        """``w' += scale · ξ`` on the parameters in ``live`` (flat indices per group).

        One foreach call per run of consecutive parameters with the same scale.
        """
        layout = _layout(self.groups, self.params, {i for idx in live for i in idx})
        if layout == self.layout:
            self.wait()
        else:  # no draw started, or for another set: undo it, draw for this one
            self.settle()
            for gen, state in self._states:
                gen.set_state(state)
            self.layout = layout
            tasks = self._tasks(layout)
            # An accelerator's draw is launched from this thread (on its current stream).
            _draw([t for t in tasks if t[1].device.type != "cpu"])
            _draw_cpu([t for t in tasks if t[1].device.type == "cpu"])
        for (_, members), pieces in zip(self.layout, self.pieces, strict=True):
            run = list(zip(members, pieces, strict=True))
            for scale, same in groupby(run, key=lambda m: m[0][1]):
                same = list(same)
                langevin_([self.params[i] for (i, _), _ in same], [x for _, x in same], scale)
