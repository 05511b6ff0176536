"""Entropy-SGD's Langevin noise: drawn while the closure runs, added after the inner step.

torch's CPU generator (mt19937) is serial: drawing N(0, I) for a 0.66M-parameter network
takes about 1.5 ms, some 5 % of an SGD step of SmallConvNet at batch 128, and most of
eSGD's overhead per gradient evaluation. Nothing in the draw depends on the closure, so on
CPU it runs on a worker thread while the closure computes the gradient on the main thread,
when torch's threads leave a core free (``torch.set_num_threads(1)`` on two cores: eSGD
2–6 % faster per step); the result is the same bits as drawing it after the closure (same
generator, same calls, same order), only the time moves. On an accelerator the draw is an
asynchronous kernel already and is launched in place.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import groupby

import torch

from .. import _rng
from .._kernels import langevin_
from ._esgd_scratch import Scratch

__all__ = ["NoiseDraw"]

# Below this many CPU numbers (≈ 0.15 ms of drawing) a thread hand-off (tens of µs) is not
# worth it.
_THREAD_MIN = 1 << 16

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _worker() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wideflat-noise")
        return _pool


def _spare_core() -> bool:
    """Whether a CPU is left over by torch's intra-op threads. Only then is the draw moved to
    the worker: with every core computing the closure it gained nothing and cost up to 4 %
    (benchmarks/optim_overhead.py, 2 threads on 2 cores)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return torch.get_num_threads() < cpus


def _draw(jobs: list[tuple[torch.Tensor, torch.Generator]]) -> None:
    for flat, gen in jobs:  # in bucket order: buckets of one device share its generator
        flat.normal_(generator=gen)  # torch.randn's stream, no allocation


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

    Per (device, dtype), one ``normal_`` call into a flat buffer over those parameters of
    the groups with a non-zero scale (``√η' ε``, or ``√(2η') ε`` under
    ``convention="original"``), in the order of the groups and parameters: the stream of
    one ``torch.randn`` of the flat size per (device, dtype).

    Which parameters receive a gradient is known only after the closure. On CPU the draw
    starts before it, for the parameters that require one, on a worker thread; :meth:`add_`
    checks the guess against the gradients the closure left (and the scales, read then)
    and, when it was wrong, resets the generator and draws again for the right set. Either
    way the bits are those of a draw after the closure.

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
        self._states: dict[str, torch.Tensor] = {}
        self._future: Future | None = None
        guess = {i for i, p in enumerate(params) if p.requires_grad}
        layout = [(k, m) for k, m in _layout(groups, params, guess) if k[0].type == "cpu"]
        if sum(params[i].numel() for _, m in layout for i, _ in m) < _THREAD_MIN:
            return  # too small to be worth a thread: drawn in add_
        if not _spare_core():
            return  # every core is busy with the closure: drawn in add_
        for key, _ in layout:
            self._states.setdefault(str(key[0]), self.gens.get(key[0]).get_state())
        self.layout = layout
        self._future = _worker().submit(_draw, self._jobs(layout))

    def _jobs(self, layout) -> list[tuple[torch.Tensor, torch.Generator]]:
        jobs = []
        self.flats, self.pieces = [], []
        for key, members in layout:
            ps = [self.params[i] for i, _ in members]
            flat, *pieces = self.scratch.noise_views(key, ps, tuple(i for i, _ in members))
            self.flats.append(flat)
            self.pieces.append(pieces)
            jobs.append((flat, self.gens.get(key[0])))
        return jobs

    def wait(self) -> None:
        """Block until the draw started before the closure is complete (re-raising its
        error, if any)."""
        future, self._future = self._future, None
        if future is not None:
            future.result()

    def settle(self) -> None:
        """Block until the draw has stopped, ignoring its error: before a rollback resets
        the generator, which must not be drawing from then on."""
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
            for device, state in self._states.items():
                self.gens.get(torch.device(device)).set_state(state)
            self.layout = layout
            _draw(self._jobs(layout))
        for (_, members), pieces in zip(self.layout, self.pieces, strict=True):
            run = list(zip(members, pieces, strict=True))
            for scale, same in groupby(run, key=lambda m: m[0][1]):
                same = list(same)
                langevin_([self.params[i] for (i, _), _ in same], [x for _, x in same], scale)
