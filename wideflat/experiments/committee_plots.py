"""Deprecated: moved to :mod:`wideflat.experiments.committee.plots`.

``curve_stats`` and ``plot_fig1`` keep working from here until the next release, with a
``DeprecationWarning``. The command line stays for now (no warning):
``python -m wideflat.experiments.committee_plots RESULTS.json [OUT.png]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from wideflat._deprecated import moved

_NEW = "wideflat.experiments.committee.plots"

__all__ = ["curve_stats", "main", "plot_fig1"]  # noqa: F822 (moved names: __getattr__)
__getattr__ = moved(__name__, dict.fromkeys(["curve_stats", "plot_fig1"], _NEW))


def main(argv: list[str] | None = None) -> int:
    """``python -m wideflat.experiments.committee_plots RESULTS.json [OUT.png]``."""
    from wideflat.experiments.committee.plots import plot_fig1

    argv = sys.argv[1:] if argv is None else argv
    if not 1 <= len(argv) <= 2:
        print("usage: python -m wideflat.experiments.committee_plots RESULTS.json [OUT.png]")
        return 2
    src = Path(argv[0])
    dst = Path(argv[1]) if len(argv) == 2 else src.with_name("fig1.png")
    try:
        print(plot_fig1(src, dst))
    except (OSError, ValueError) as exc:
        print(f"committee_plots: {src}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
