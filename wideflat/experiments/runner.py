"""Deprecated: the training runner was split by concern (kept importable for one release).

``train`` → :mod:`wideflat.experiments.training`; ``compare`` → :mod:`~.comparison`;
``RunError``/``NonFiniteRunError`` → :mod:`~.errors`; ``RunSummary``, ``read_metrics``,
``run_label`` → :mod:`~.rundir`; ``lr_at`` → :mod:`~.config`; ``steps_per_epoch`` →
:mod:`~.build`; ``cli_train``/``cli_compare`` → the handlers of :mod:`wideflat.cli`;
``throughput`` → ``benchmarks/throughput.py`` in the source tree. Each name warns
(``DeprecationWarning``) when it is taken from here.
"""

from __future__ import annotations

import warnings
from typing import Any

from wideflat._deprecated import moved

_NEW = {
    **dict.fromkeys(["NonFiniteRunError", "RunError"], "wideflat.experiments.errors"),
    **dict.fromkeys(["RunSummary", "read_metrics", "run_label"], "wideflat.experiments.rundir"),
    "lr_at": "wideflat.experiments.config",
    "steps_per_epoch": "wideflat.experiments.build",
    "train": "wideflat.experiments.training",
    "compare": "wideflat.experiments.comparison",
}
_moved = moved(__name__, _NEW, stacklevel=3)  # called from this module's __getattr__

__all__ = sorted([*_NEW, "cli_compare", "cli_train"])  # served by __getattr__, each warns


def __getattr__(name: str) -> Any:
    if name == "throughput":
        raise AttributeError(
            "wideflat.experiments.runner.throughput moved to benchmarks/throughput.py "
            "(a script of the source tree: python benchmarks/throughput.py --help)"
        )
    if name in ("cli_train", "cli_compare"):
        warnings.warn(
            f"wideflat.experiments.runner.{name} is deprecated: the handlers live in "
            "wideflat.cli (run `wideflat train` / `wideflat compare`, or wideflat.cli.main)",
            DeprecationWarning,
            stacklevel=2,
        )
        from wideflat import cli

        return cli._run_train if name == "cli_train" else cli._run_compare
    return _moved(name)
