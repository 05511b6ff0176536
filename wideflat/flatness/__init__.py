"""wideflat.flatness."""
