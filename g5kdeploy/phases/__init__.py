"""The pipeline's phases, each a function over a run record."""
