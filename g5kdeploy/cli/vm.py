"""``g5k vm kernel``: the VM testbed's kernel, built into the cache ahead of a run (or found there)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from g5kdeploy.cli.common import handle_errors, print_json, settings
from g5kdeploy.signals import terminate_as_interrupt
from g5kdeploy.tools.kernel import ensure_kernel

app = typer.Typer(help="The VM testbed's tools.", no_args_is_help=True)


@app.command("kernel")
@handle_errors
def kernel_command(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the kernel's cache entry as JSON.")] = False,
) -> None:
    """Build the experiment's VM kernel if the cache lacks it (a run would build it first), and say where it is."""
    state = settings(ctx)
    terminate_as_interrupt()
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=state.err, transient=True) as progress:
        task = progress.add_task("looking in the cache", total=None)

        def show(step: str, done: int, total: int | None) -> None:
            progress.update(task, description=step, completed=done, total=total)

        kernel = ensure_kernel(on_progress=show)
    described: dict[str, Any] = {"release": kernel.release, "directory": str(kernel.directory)}
    if as_json:
        print_json(described)
    else:
        state.out.print(f"{kernel.release}: {kernel.directory}", highlight=False, markup=False)
