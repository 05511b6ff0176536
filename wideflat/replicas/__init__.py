"""wideflat.replicas."""
