"""wideflat.models."""
