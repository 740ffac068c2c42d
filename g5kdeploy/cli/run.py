"""``g5k run``: the whole pipeline for one playbook, then release."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from g5kdeploy.cli.common import Settings, handle_errors, print_json, settings, start_or_resume
from g5kdeploy.cli.progress import PipelineDisplay
from g5kdeploy.pipeline import PipelineOutcome, run_pipeline
from g5kdeploy.reserve.phase import check_pinned
from g5kdeploy.reserve.release import Released
from g5kdeploy.results import RunRecord
from g5kdeploy.signals import terminate_as_interrupt
from g5kdeploy.testbeds import testbed_for


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)


@handle_errors
def run_command(
    ctx: typer.Context,
    playbook: Annotated[Path | None, typer.Argument(help="The experiment's playbook (YAML).")] = None,
    resume: Annotated[
        str | None, typer.Option("--resume", metavar="RUN", help="Continue this run from its first unfinished phase.")
    ] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the jobs at the end (and on failure).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON on stdout.")] = False,
    allow_unlocked: Annotated[
        bool,
        typer.Option("--allow-unlocked", help="Deploy with nxc on Grid'5000 even though flake.lock pins nothing."),
    ] = False,
) -> None:
    """Reserve, deploy, bench, collect, then release: one command for the whole experiment."""
    state = settings(ctx)
    record = start_or_resume(state, playbook, resume, option="--resume")
    # Here, not in the reserve phase: the deploy comes after the reservation, and a refusal must reserve nothing.
    check_pinned(record.playbook, allow_unlocked=allow_unlocked)
    testbed = testbed_for(record.testbed)
    terminate_as_interrupt()
    outcome = PipelineOutcome()
    try:
        with PipelineDisplay(state.err, now=testbed.clock.now) as display:
            outcome = run_pipeline(record, state.store, testbed, keep=keep, watchers=display.watchers)
    finally:
        # Whatever happened, say so if jobs were left behind: the command to finish the release is the way out.
        _warn_remaining(state, record, outcome.released)
    collected = outcome.collected
    report = str(collected.report) if collected and collected.report else None
    warnings = collected.warnings if collected else []
    for warning in warnings:
        state.tell(warning, level="warning", label="warning")
    if as_json:
        print_json({
            "run_id": record.run_id,
            "report": report,
            "phases": {name: phase.state for name, phase in record.phases.items()},
            "warnings": warnings,
            "released": record.released_at is not None,
        })  # fmt: skip
        return
    phases = ", ".join(f"{name} {phase.state}" for name, phase in record.phases.items())
    state.out.print(f"{record.run_id}: {phases}", highlight=False, markup=False)
    if report:
        state.out.print(f"report: {report}", highlight=False, markup=False)


def _warn_remaining(state: Settings, record: RunRecord, released: Released | None) -> None:
    if released is None or released.error is None:
        return
    jobs = ", ".join(job.label for job in record.live_jobs()) or "see the ledger"
    state.tell(
        f"{jobs} ({released.error}); release them with: g5k release {record.run_id}",
        level="error",
        label="jobs not released",
    )
