"""wideflat.data."""
