"""``g5k vm kernel``: the VM testbed's kernel, built into the cache ahead of a run (or found there)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from g5kdeploy.cli.common import handle_errors, print_json, settings
from g5kdeploy.playbook import load_playbook
from g5kdeploy.signals import terminate_as_interrupt
from g5kdeploy.tools.kernel import ensure_kernel

app = typer.Typer(help="The VM testbed's tools.", no_args_is_help=True)


@app.command("kernel")
@handle_errors
def kernel_command(
    ctx: typer.Context,
    playbook: Annotated[
        Path | None, typer.Argument(help="A VM playbook whose kernel section (patches, config) to build with.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the kernel's cache entry as JSON.")] = False,
) -> None:
    """Build the experiment's VM kernel if the cache lacks it (a run would build it first), and say where it is."""
    state = settings(ctx)
    book = load_playbook(playbook) if playbook is not None else None
    terminate_as_interrupt()
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())  # fmt: skip
    with Progress(*columns, console=state.err, transient=True) as progress:
        task = progress.add_task("looking in the cache", total=None)

        def show(step: str, done: int, total: int | None) -> None:
            progress.update(task, description=step, completed=done, total=total)

        kernel = ensure_kernel(kernel=book.kernel if book else None, playbook_path=playbook, on_progress=show)
    described: dict[str, Any] = {"release": kernel.release, "directory": str(kernel.directory)}
    if as_json:
        print_json(described)
    else:
        state.out.print(f"{kernel.release}: {kernel.directory}", highlight=False, markup=False)
