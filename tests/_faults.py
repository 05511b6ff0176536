"""Test-only fault injection, by patching (production code reads no fault variable).

* :func:`save_fault` makes a checkpoint rank file's atomic write (``wideflat._io``) fail at
  one point: ``before_write`` (before the tmp file is opened), ``mid_write`` (half of it
  written and flushed), ``after_tmp`` (tmp complete, before the rename) or ``after_rename``
  (rank file in place, before the barrier and the manifest); optionally only for one step or
  rank. It raises ``error`` (default :class:`InjectedFault`), or with ``exit=True`` ends the
  process with ``os._exit(1)`` as a kill would.
* :func:`loss_fault` makes the training loss of one step (and replica) NaN or inf.

Run as a script it is the driver of subprocess tests: it installs the faults its options
name, then runs the ``wideflat`` command line on the remaining arguments::

    python tests/_faults.py --save after_rename --exit --step 30 -- train --method rsgd ...
"""

from __future__ import annotations

import argparse
import builtins
import os
import sys
from pathlib import Path

POINTS = ("before_write", "mid_write", "after_tmp", "after_rename")


class InjectedFault(RuntimeError):
    """The failure :func:`save_fault` raises by default."""


def _set(obj, name, value) -> None:
    setattr(obj, name, value)


def _is_rank_file(path, step: int | None, rank: int | None) -> bool:
    """Whether ``path`` (a rank file or its tmp) is one of the faulted step's and rank's."""
    path = Path(path)
    name = path.name.removesuffix(".tmp")
    if not (name.startswith("rank-") and name.endswith(".pt")):
        return False  # the manifest and every other file are written normally
    if step is not None and path.parent.name != f"step-{step:09d}":
        return False
    return rank is None or name == f"rank-{rank}.pt"


def save_fault(
    point: str,
    *,
    step: int | None = None,
    rank: int | None = None,
    exit: bool = False,
    error: type[BaseException] = InjectedFault,
    patch=_set,
) -> None:
    """Make checkpoint saves fail at ``point`` (see the module docstring).

    ``patch(obj, name, value)`` installs the patch: ``monkeypatch.setattr`` in a test (undone
    afterwards), plain ``setattr`` in a driver process.
    """
    import wideflat._io as io

    if point not in POINTS:
        raise ValueError(f"unknown fault point {point!r} (one of {', '.join(POINTS)})")
    real_open, real_replace = builtins.open, os.replace

    def fire(path) -> None:
        if exit:
            os._exit(1)
        raise error(f"injected failure at save:{point} ({path})")

    class HalfThenFail:
        """A file that writes half of what it is given, flushes it, then fails."""

        def __init__(self, f):
            self._f = f

        def write(self, data):
            view = memoryview(data)
            self._f.write(view[: len(view) // 2])
            self._f.flush()
            fire(self._f.name)

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._f.close()

    def faulty_open(file, mode="r", *args, **kwargs):
        if "w" in mode and _is_rank_file(file, step, rank):
            if point == "before_write":
                fire(file)
            return HalfThenFail(real_open(file, mode, *args, **kwargs))
        return real_open(file, mode, *args, **kwargs)

    def faulty_replace(src, dst, *args, **kwargs):
        if not _is_rank_file(src, step, rank):
            return real_replace(src, dst, *args, **kwargs)
        if point == "after_tmp":
            fire(src)
        real_replace(src, dst, *args, **kwargs)
        fire(dst)

    if point in ("before_write", "mid_write"):
        patch(io, "open", faulty_open)  # a module global shadows the builtin inside _io
    else:
        patch(io.os, "replace", faulty_replace)


def loss_fault(value: float, *, step: int, replica: int = 0, patch=_set) -> None:
    """Multiply the training loss of optimizer step ``step`` (of ``replica``; 1-based steps,
    replicas counted by the rSGD loop engine's calls) by ``value`` (NaN or inf)."""
    from wideflat.experiments.methods import LossProbe

    real = LossProbe.loss

    def loss(self, out, t):
        result = real(self, out, t)
        here = self.calls if self.per_replica else 0
        return result * value if (self.step, here) == (step, replica) else result

    patch(LossProbe, "loss", loss)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="wideflat with injected faults (tests only)")
    parser.add_argument("--save", choices=POINTS, help="fail checkpoint saves at this point")
    parser.add_argument("--exit", action="store_true", help="os._exit(1) instead of raising")
    parser.add_argument("--step", type=int, help="only the save (or loss) of this step")
    parser.add_argument("--rank", type=int, help="only this rank's file")
    parser.add_argument("--loss", choices=("nan", "inf"), help="poison the loss of --step")
    parser.add_argument("--replica", type=int, default=0, help="... of this replica")
    parser.add_argument("wideflat", nargs=argparse.REMAINDER, help="-- then wideflat's arguments")
    args = parser.parse_args(argv)
    if args.save:
        save_fault(args.save, step=args.step, rank=args.rank, exit=args.exit)
    if args.loss:
        loss_fault(float(args.loss), step=args.step, replica=args.replica)
    from wideflat.cli import main as wideflat

    rest = args.wideflat[1:] if args.wideflat[:1] == ["--"] else args.wideflat
    return wideflat(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
