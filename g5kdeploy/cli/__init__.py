"""The ``g5k`` command: parses, calls the library, renders. One module per command group."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from g5kdeploy import __version__
from g5kdeploy.cli import bench, cache, check, collect, deploy, discover, jobs, nightly, nodes, run, sim, vm, vmtest
from g5kdeploy.cli.common import CURRENT, Settings
from g5kdeploy.log import configure

#: The top-level options, with whether each takes a value: accepted after the subcommand too.
GLOBAL_OPTIONS = {"--results-dir": True, "--log-json": False, "--verbose": False, "-v": False}


class _GlobalOptionsAnywhere(TyperGroup):
    """``g5k status --results-dir X`` as well as ``g5k --results-dir X status``: users put them either way."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # typer's vendored click.Context
        return super().parse_args(ctx, hoist_global_options(args))


def hoist_global_options(args: list[str]) -> list[str]:
    """``args`` with the global options that follow the subcommand moved before it (nothing after ``--``)."""
    front: list[str] = []
    rest: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            rest += args[index:]
            break
        name = arg.split("=", 1)[0]
        if name in GLOBAL_OPTIONS:
            takes_value = GLOBAL_OPTIONS[name] and "=" not in arg
            front += args[index : index + 1 + takes_value]
            index += 1 + takes_value
            continue
        if arg.startswith("-v") and arg.strip("v") == "-":  # -vv
            front.append(arg)
        else:
            rest.append(arg)
        index += 1
    return front + rest


app = typer.Typer(
    name="g5k",
    cls=_GlobalOptionsAnywhere,
    help="Run kernel + eBPF experiments on Grid'5000 (or the local testbed), reproducibly.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
run.register(app)
jobs.register(app)
deploy.register(app)
bench.register(app)
collect.register(app)
nightly.register(app)
check.register(app)
nodes.register(app)
discover.register(app)
cache.register(app)
vmtest.register(app)
app.add_typer(vm.app, name="vm", help="The VM testbed's tools (its kernel).")
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
    CURRENT.set(ctx.obj)


def main() -> None:
    app()
