"""``g5k sim serve [options]``: the Grid'5000 API simulator, which is a program of its own.

The agent imports nothing of the simulator: this command replaces itself with ``python -m g5kdeploy.simulator``,
so the simulator's own options, help and exit codes are exactly those of the program.
"""

from __future__ import annotations

import os
import sys

import typer

app = typer.Typer(help="A local Grid'5000 API simulator (python-grid5000 works against it).", no_args_is_help=True)
SIMULATOR = [sys.executable, "-m", "g5kdeploy.simulator"]


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
def serve(ctx: typer.Context) -> None:
    """Serve the API on loopback until SIGTERM/SIGINT; the first line of stdout is the base URL (--help: options)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [*SIMULATOR, *ctx.args])
