"""Experiments: per-method training steps, checkpoints, the demo and the paper's studies."""

from .checkpoint import (
    CheckpointError,
    NoCheckpointError,
    latest_step,
    load_checkpoint,
    save_checkpoint,
    verify_checkpoint,
)
from .committee_study import CommitteeStudyConfig, quick_study_config, run_committee_study
from .committee_train import CommitteeTrainResult, committee_preset, train_committee
from .config import TrainConfig
from .methods import esgd_step, forever, grad_evals_per_step, rsgd_step, sgd_step
from .presets import preset_config
from .runner import compare, train

__all__ = [
    "CheckpointError",
    "CommitteeStudyConfig",
    "CommitteeTrainResult",
    "NoCheckpointError",
    "TrainConfig",
    "committee_preset",
    "compare",
    "esgd_step",
    "forever",
    "grad_evals_per_step",
    "latest_step",
    "load_checkpoint",
    "preset_config",
    "quick_study_config",
    "run_committee_study",
    "rsgd_step",
    "save_checkpoint",
    "sgd_step",
    "train",
    "train_committee",
    "verify_checkpoint",
]
