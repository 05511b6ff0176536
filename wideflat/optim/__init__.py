"""wideflat.optim."""
