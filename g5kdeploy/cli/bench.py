"""``g5k bench``: the playbook's sweep on the run's nodes, with a progress bar, resumable."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from g5kdeploy.bench.phase import BenchSummary, run_bench
from g5kdeploy.cli.common import handle_errors, print_json, settings
from g5kdeploy.errors import G5kError
from g5kdeploy.signals import terminate_as_interrupt
from g5kdeploy.testbeds import testbed_for


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_command)


@handle_errors
def bench_command(
    ctx: typer.Context,
    run: Annotated[str | None, typer.Argument(help="The run to benchmark (default: the latest).")] = None,
    redo: Annotated[
        bool, typer.Option("--redo", help="Run every combination again (earlier results are kept aside).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
) -> None:
    """Run the playbook's workload over every combination on every selected node; rerun to finish a sweep."""
    state = settings(ctx)
    store = state.store
    record = store.load(run) if run else store.latest()
    testbed = testbed_for(record.testbed)
    terminate_as_interrupt()
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())  # fmt: skip
    with Progress(*columns, console=state.err, transient=True) as progress:
        task = progress.add_task("preparing nodes", total=None)

        def show(done: int, total: int, what: str) -> None:
            progress.update(task, completed=done, total=total, description=what)

        summary = run_bench(record, store, testbed, redo=redo, on_progress=show)
    if as_json:
        print_json(_summary_json(record.run_id, summary))
    else:
        state.out.print(
            f"{record.run_id}: {summary.done + summary.ran} results ({summary.ran} new), "
            f"{len(summary.failed)} failed, {len(summary.skipped)} skipped; table: {summary.csv}",
            highlight=False,
            markup=False,
        )
        by_reason: dict[str, int] = {}
        for reason in summary.skipped.values():
            by_reason[reason] = by_reason.get(reason, 0) + 1
        for reason, count in sorted(by_reason.items()):
            state.out.print(f"  skipped {count} (combination, node) pairs: {reason}", highlight=False, markup=False)
    if summary.failed:
        missing = "\n".join(f"  {label}: {reason}" for label, reason in sorted(summary.failed.items()))
        raise G5kError(
            f"{len(summary.failed)} (combination, node) pairs are missing:\n{missing}",
            hint=f"results so far are kept; rerun g5k bench {record.run_id} to retry only what is missing",
        )


def _summary_json(run_id: str, summary: BenchSummary) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "results": summary.done + summary.ran,
        "new": summary.ran,
        "failed": summary.failed,
        "skipped": summary.skipped,
        "csv": str(summary.csv),
    }
