"""`python -m g5kdeploy.simulator [options]`: the same as `g5k sim serve [options]`."""

import typer

from g5kdeploy.simulator.cli import serve

if __name__ == "__main__":
    typer.run(serve)
