"""Experiments: per-method training steps, the demo, and the paper's studies."""

from .methods import esgd_step, forever, grad_evals_per_step, rsgd_step, sgd_step

__all__ = ["esgd_step", "forever", "grad_evals_per_step", "rsgd_step", "sgd_step"]
