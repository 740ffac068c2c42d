"""Nightly experiments: when to run them (schedule, install) and what changed since the last runs (history,
regression)."""
