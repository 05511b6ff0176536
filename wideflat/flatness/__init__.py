"""Flatness measures: local-energy profiles for any model; local entropy (BP, Monte Carlo)."""

from .energy import LocalEnergyProfile, classification_error, local_energy
from .plots import plot_local_energy

__all__ = ["LocalEnergyProfile", "classification_error", "local_energy", "plot_local_energy"]
