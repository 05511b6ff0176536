"""The committee-machine study of the paper (§5, Fig. 1, appendix B.1).

* :mod:`~wideflat.experiments.committee.presets`: the five algorithms and their
  hyper-parameters (:func:`committee_preset`).
* :mod:`~wideflat.experiments.committee.train`: :func:`train_committee`, all restarts (and
  rSGD replicas) as one batched tensor program, on the per-step kernels of
  :mod:`wideflat.optim`'s optimizers (:mod:`wideflat._kernels`).
* :mod:`~wideflat.experiments.committee.study`: :func:`run_committee_study`, training plus
  the flatness of every solution, written to ``results.json``.
* :mod:`~wideflat.experiments.committee.plots`: Fig. 1 from a ``results.json`` (imported on
  its own: it loads matplotlib).
"""

from .presets import (
    ALGORITHMS,
    COMMITTEE_PRESETS,
    CommitteeHyperParams,
    committee_preset,
    list_committee_algorithms,
)
from .study import (
    QUICK_ALGORITHMS,
    QUICK_READING,
    SCHEMA,
    CommitteeStudyConfig,
    check_study_folder,
    default_study_folder,
    format_bp_mc_table,
    format_study_table,
    quick_study_config,
    run_committee_study,
)
from .train import STOP_REASONS, CommitteeTrainResult, restart_generator, train_committee

__all__ = [
    "ALGORITHMS",
    "COMMITTEE_PRESETS",
    "QUICK_ALGORITHMS",
    "QUICK_READING",
    "SCHEMA",
    "STOP_REASONS",
    "CommitteeHyperParams",
    "CommitteeStudyConfig",
    "CommitteeTrainResult",
    "check_study_folder",
    "committee_preset",
    "default_study_folder",
    "format_bp_mc_table",
    "format_study_table",
    "list_committee_algorithms",
    "quick_study_config",
    "restart_generator",
    "run_committee_study",
    "train_committee",
]
