"""`g5k sim`: the simulator's command line, kept inside the simulator package so it runs standalone."""

from g5kdeploy.simulator.cli import app, serve

__all__ = ["app", "serve"]
