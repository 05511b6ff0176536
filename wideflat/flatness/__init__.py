"""Flatness measures.

* :func:`local_energy` — δE_train(w, σ) profiles for any model (paper Eq. 4).
* :func:`committee_local_energy` — δE_train(w, σ) of a committee machine, batched (Eq. 4).
* :func:`committee_local_entropy` — Φ_LE(w, d) of a committee machine by Belief Propagation
  (paper Eq. 3, appendix B.1).
* :func:`local_entropy_mc` and :func:`committee_gaussian_mc` — Monte Carlo estimates of the
  local entropy (any model; the committee machine's Gaussian measure, which checks BP).
* :func:`hessian` — top eigenvalues (Lanczos on exact Hessian–vector products) and trace
  (Hutchinson, with its standard error) of the training-loss Hessian.
* :func:`sharpness` — worst-case loss increase in a ball of radius ρ (SAM's sharpness; the
  adaptive, scale-invariant ASAM variant; m-sharpness).
* :func:`pac_bayes_sigma` — the largest magnitude-aware Gaussian σ whose expected training-error
  increase stays below a target (Jiang et al., 2020), and 1/σ².
* :func:`interpolate`, :func:`plane`, :func:`random_directions`, :func:`landscape_1d`,
  :func:`landscape_2d` — loss and error along the line between two solutions (barrier height),
  on the plane through three, and along filter-normalized random directions
  (:mod:`~wideflat.flatness.landscape`).
* :func:`plot_local_energy` — a figure of profiles (:mod:`~wideflat.flatness.plots`, imported
  on first use, so that importing the measures does not load matplotlib).
"""

from .committee import committee_local_energy
from .committee_bp import BPConvergenceError, CommitteeLocalEntropy, committee_local_entropy
from .curvature import HessianSpectrum, hessian
from .energy import LocalEnergyProfile, classification_error, local_energy
from .landscape import (
    Interpolation,
    Landscape1D,
    Landscape2D,
    Plane,
    interpolate,
    landscape_1d,
    landscape_2d,
    plane,
    random_directions,
)
from .monte_carlo import (
    CommitteeGaussianMC,
    LocalEntropyMC,
    committee_gaussian_mc,
    default_errors,
    local_entropy_mc,
)
from .pac_bayes import PacBayesSigma, pac_bayes_sigma
from .worst_case import Sharpness, sharpness

__all__ = [
    "BPConvergenceError",
    "HessianSpectrum",
    "Interpolation",
    "Landscape1D",
    "Landscape2D",
    "PacBayesSigma",
    "Plane",
    "Sharpness",
    "CommitteeGaussianMC",
    "CommitteeLocalEntropy",
    "LocalEnergyProfile",
    "LocalEntropyMC",
    "classification_error",
    "committee_gaussian_mc",
    "committee_local_energy",
    "committee_local_entropy",
    "default_errors",
    "hessian",
    "interpolate",
    "landscape_1d",
    "landscape_2d",
    "local_energy",
    "local_entropy_mc",
    "pac_bayes_sigma",
    "plane",
    "plot_interpolation",
    "plot_landscape_1d",
    "plot_landscape_2d",
    "plot_local_energy",
    "plot_plane",
    "random_directions",
    "sharpness",
]

_LAZY_PLOTS = {  # name → module; plots import matplotlib, so only on first use
    "plot_local_energy": "plots",
    "plot_interpolation": "landscape_plots",
    "plot_plane": "landscape_plots",
    "plot_landscape_1d": "landscape_plots",
    "plot_landscape_2d": "landscape_plots",
}


def __getattr__(name: str):
    if name in _LAZY_PLOTS:
        if _LAZY_PLOTS[name] == "plots":  # a plain import statement, which -X importtime sees
            from . import plots as module
        else:
            from . import landscape_plots as module
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
