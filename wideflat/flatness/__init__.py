"""Flatness measures.

* :func:`local_energy` — δE_train(w, σ) profiles for any model (paper Eq. 4).
* :func:`committee_local_energy` — δE_train(w, σ) of a committee machine, batched (Eq. 4).
* :func:`committee_local_entropy` — Φ_LE(w, d) of a committee machine by Belief Propagation
  (paper Eq. 3, appendix B.1).
* :func:`local_entropy_mc` and :func:`committee_gaussian_mc` — Monte Carlo estimates of the
  local entropy (any model; the committee machine's Gaussian measure, which checks BP).
* :func:`plot_local_energy` — a figure of profiles (:mod:`~wideflat.flatness.plots`, imported
  on first use, so that importing the measures does not load matplotlib).
"""

from .committee import committee_local_energy
from .committee_bp import BPConvergenceError, CommitteeLocalEntropy, committee_local_entropy
from .energy import LocalEnergyProfile, classification_error, local_energy
from .monte_carlo import (
    CommitteeGaussianMC,
    LocalEntropyMC,
    committee_gaussian_mc,
    default_errors,
    local_entropy_mc,
)

__all__ = [
    "BPConvergenceError",
    "CommitteeGaussianMC",
    "CommitteeLocalEntropy",
    "LocalEnergyProfile",
    "LocalEntropyMC",
    "classification_error",
    "committee_gaussian_mc",
    "committee_local_energy",
    "committee_local_entropy",
    "default_errors",
    "local_energy",
    "local_entropy_mc",
    "plot_local_energy",
]


def __getattr__(name: str):
    if name == "plot_local_energy":  # lazy: plots import matplotlib
        from .plots import plot_local_energy

        globals()[name] = plot_local_energy
        return plot_local_energy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
