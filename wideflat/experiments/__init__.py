"""Experiments: per-method training steps, checkpoints, the demo and the paper's studies."""

from .checkpoint import (
    CheckpointError,
    NoCheckpointError,
    latest_step,
    load_checkpoint,
    save_checkpoint,
    verify_checkpoint,
)
from .committee_train import CommitteeTrainResult, committee_preset, train_committee
from .methods import esgd_step, forever, grad_evals_per_step, rsgd_step, sgd_step

__all__ = [
    "CheckpointError",
    "CommitteeTrainResult",
    "NoCheckpointError",
    "committee_preset",
    "esgd_step",
    "forever",
    "grad_evals_per_step",
    "latest_step",
    "load_checkpoint",
    "rsgd_step",
    "save_checkpoint",
    "sgd_step",
    "train_committee",
    "verify_checkpoint",
]
