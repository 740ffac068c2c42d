"""``g5k run``: the whole pipeline for one playbook, then release."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.status import Status

from g5kdeploy.cli.common import handle_errors, print_json, settings, start_or_resume
from g5kdeploy.phases.pipeline import run_pipeline
from g5kdeploy.signals import terminate_as_interrupt
from g5kdeploy.testbeds import testbed_for


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)


@handle_errors
def run_command(
    ctx: typer.Context,
    playbook: Annotated[Path | None, typer.Argument(help="The experiment's playbook (YAML).")] = None,
    resume: Annotated[
        str | None, typer.Option("--resume", help="Continue this run from its first unfinished phase.")
    ] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the jobs at the end (and on failure).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON on stdout.")] = False,
) -> None:
    """Reserve, deploy, bench, collect, then release: one command for the whole experiment."""
    state = settings(ctx)
    store = state.store
    record = start_or_resume(state, playbook, resume, option="--resume")
    terminate_as_interrupt()
    with Status("starting", console=state.err) as status:
        summary = run_pipeline(
            record, store, testbed_for(record.testbed), keep=keep, on_phase=lambda phase: status.update(phase)
        )
    report = str(summary.report) if summary and summary.report else None
    if as_json:
        print_json(
            {"run_id": record.run_id, "report": report, "phases": {k: v.state for k, v in record.phases.items()}}
        )
    else:
        phases = ", ".join(f"{name} {phase.state}" for name, phase in record.phases.items())
        state.out.print(f"{record.run_id}: {phases}", highlight=False, markup=False)
        if report:
            state.out.print(f"report: {report}", highlight=False, markup=False)
