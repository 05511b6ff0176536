"""wideflat.experiments."""
