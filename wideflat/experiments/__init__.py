"""The deep-network harness and the paper's studies.

A run flows in one line (docs/architecture.md): :mod:`wideflat.cli` → :func:`preset_config`
(:mod:`.presets`) → :class:`TrainConfig` (:mod:`.config`) → :func:`~.build.build` →
:func:`train` (:mod:`.training`, one step per method from :mod:`.methods`) → the run folder
(:mod:`.rundir`, :mod:`.checkpoint`) → tables and figures (:mod:`.plots`); :func:`compare`
(:mod:`.comparison`) runs several. The other names that used to be importable from here
(checkpoint functions, per-method steps, the committee study) are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from .comparison import compare
from .config import TrainConfig
from .presets import preset_config
from .training import train

__all__ = ["TrainConfig", "compare", "preset_config", "train"]

# Loaded on first access, so that importing the harness loads neither matplotlib nor the
# committee study.
_LAZY = {
    **dict.fromkeys(
        ["CheckpointError", "NoCheckpointError", "latest_step", "load_checkpoint",
         "save_checkpoint", "verify_checkpoint"],
        ".checkpoint",
    ),
    **dict.fromkeys(
        ["esgd_step", "forever", "grad_evals_per_step", "rsgd_step", "sgd_step"], ".methods"
    ),
    **dict.fromkeys(
        ["CommitteeStudyConfig", "CommitteeTrainResult", "committee_preset",
         "quick_study_config", "run_committee_study", "train_committee"],
        ".committee",
    ),
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
