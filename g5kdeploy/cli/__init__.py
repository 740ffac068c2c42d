"""The ``g5k`` command: parses, calls the library, renders. One module per command group."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from g5kdeploy import __version__
from g5kdeploy.cli import bench, collect, deploy, jobs, nightly, run, sim
from g5kdeploy.cli.common import Settings
from g5kdeploy.log import configure

app = typer.Typer(
    name="g5k",
    help="Run kernel + eBPF experiments on Grid'5000 (or the local testbed), reproducibly.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
run.register(app)
jobs.register(app)
deploy.register(app)
bench.register(app)
collect.register(app)
nightly.register(app)
app.add_typer(sim.app, name="sim", help="A local Grid'5000 API simulator.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"g5k {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    results_dir: Annotated[
        Path, typer.Option("--results-dir", envvar="G5K_RESULTS_DIR", help="Where runs are kept.")
    ] = Path("results"),
    log_json: Annotated[bool, typer.Option("--log-json", help="Logs as JSON lines on stderr.")] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More detail in logs.")] = 0,
    version: Annotated[  # noqa: ARG001 - handled eagerly by its callback
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    configure(json_lines=log_json, verbose=verbose)
    ctx.obj = Settings(results_dir=results_dir, log_json=log_json, verbose=verbose)


def main() -> None:
    app()
