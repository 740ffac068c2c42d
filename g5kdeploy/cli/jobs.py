"""``g5k reserve``, ``g5k release`` and ``g5k status``: the life of a run's jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.status import Status
from rich.table import Table

from g5kdeploy.cli.common import Settings, handle_errors, print_json, settings, start_or_resume
from g5kdeploy.cli.progress import job_line
from g5kdeploy.errors import ConfigError, G5kError
from g5kdeploy.pipeline import release
from g5kdeploy.reserve.phase import check_pinned, reserve
from g5kdeploy.results import JobEntry, RunRecord
from g5kdeploy.signals import terminate_as_interrupt
from g5kdeploy.testbeds import testbed_for
from g5kdeploy.walltime import format_duration

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]


def register(app: typer.Typer) -> None:
    app.command("reserve")(reserve_command)
    app.command("release")(release_command)
    app.command("status")(status_command)


@handle_errors
def reserve_command(
    ctx: typer.Context,
    playbook: Annotated[Path | None, typer.Argument(help="The experiment's playbook (YAML).")] = None,
    run: Annotated[str | None, typer.Option("--run", help="Resume this run instead of starting one.")] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the jobs if reservation fails or is interrupted.")] = False,
    allow_unlocked: Annotated[
        bool,
        typer.Option("--allow-unlocked", help="Deploy with nxc on Grid'5000 even though flake.lock pins nothing."),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Reserve the playbook's nodes: one OAR job per site, waited for until running."""
    state = settings(ctx)
    store = state.store
    record = start_or_resume(state, playbook, run, option="--run")
    check_pinned(record.playbook, allow_unlocked=allow_unlocked)
    testbed = testbed_for(record.testbed)
    terminate_as_interrupt()
    with Status("submitting", console=state.err) as status:

        def show(entry: JobEntry, job: dict[str, Any]) -> None:
            status.update(job_line(entry, job, testbed.clock.now()))

        def building(what: str, done: int, total: int | None) -> None:
            status.update(f"{what} ({done}/{total})" if total else what)

        record = reserve(record, store, testbed, keep=keep, on_update=show, on_build=building)
    if as_json:
        print_json(_run_json(record, state))
    else:
        _print_roles(state, record)


@handle_errors
def release_command(
    ctx: typer.Context,
    run: Annotated[str | None, typer.Argument(help="The run: id, id prefix or latest (default).")] = None,
    all_runs: Annotated[
        bool, typer.Option("--all", help="Release every run that still holds jobs or local daemons.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Delete every job a run still holds, and stop its local testbed."""
    state = settings(ctx)
    store = state.store
    if all_runs and run:
        raise ConfigError("give a RUN or --all, not both")
    if all_runs:
        records = [record for record in store.all() if _holds_something(record)]
    else:
        records = [store.load(run) if run else store.latest()]
    terminate_as_interrupt()
    report: dict[str, list[str]] = {}
    failures: list[str] = []
    for record in records:
        testbed = testbed_for(record.testbed)
        with store.locked(record.run_id), Status(f"releasing {record.run_id}", console=state.err):
            outcome = release(record, store, testbed)
        lines = list(outcome.messages)
        if outcome.stopped:
            lines.append(f"stopped {outcome.stopped} local daemon{'s' if outcome.stopped != 1 else ''}")
        if outcome.error is not None:
            jobs = ", ".join(job.label for job in record.live_jobs())
            failures.append(f"{record.run_id}: {jobs or 'jobs'} not released: {outcome.error}")
            lines.append(f"failed: {outcome.error}")
        report[record.run_id] = lines
    if as_json:
        print_json(report)
    elif not records:
        state.out.print("nothing to release: no run holds jobs or local daemons", highlight=False, markup=False)
    else:
        for run_id, lines in report.items():
            state.out.print(f"[bold]{run_id}[/]", highlight=False)
            for line in lines or ["nothing to release"]:
                state.out.print(f"  {line}", highlight=False, markup=False)
    if failures:
        raise G5kError("some runs were not fully released:\n" + "\n".join(failures), hint="run g5k release again")


def _holds_something(record: RunRecord) -> bool:
    return not record.released_at or bool(testbed_for(record.testbed).running_daemons(record))


@handle_errors
def status_command(
    ctx: typer.Context,
    run: Annotated[str | None, typer.Argument(help="One run: id, id prefix or latest (default: all).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """The runs in the results directory: phase, jobs, nodes and walltime left."""
    state = settings(ctx)
    records = [state.store.load(run)] if run else state.store.all()
    rows = [_status_row(record) for record in records]
    if as_json:
        print_json(rows)
        return
    if not rows:
        state.out.print(f"no runs in {state.store.results_dir}", highlight=False, markup=False)
        return
    # One block per run, its id alone on the first line: the id is what the user copies into the next command,
    # so it is never cut or wrapped, whatever the terminal's width.
    for row in rows:
        state.out.print(row["run_id"], style="bold", highlight=False, markup=False, overflow="ignore", crop=False)
        for line in _status_lines(row):
            state.out.print(f"  {line}", highlight=False, markup=False)


def _status_lines(row: dict[str, Any]) -> list[str]:
    phase = row["phase"] + (", released" if row["released"] and row["phase"] != "released" else "")
    left = format_duration(row["walltime_left"]) if row["walltime_left"] else "-"
    lines = [f"{row['testbed']} testbed, {phase}, {row['nodes']} nodes, walltime left {left}"]
    jobs = [f"{j['site']}/{j['uid'] if j['uid'] is not None else '?'} {j['state']}" for j in row["jobs"]]
    if jobs:
        lines.append(f"jobs: {', '.join(jobs)}")
    if row["error"]:
        lines.append(f"error: {row['error']}")
    return lines


def _status_row(record: RunRecord) -> dict[str, Any]:
    testbed = testbed_for(record.testbed)
    api = testbed.connect(record) if record.live_jobs() else None
    now = testbed.clock.now()
    jobs: list[dict[str, Any]] = []
    ends: list[int] = []
    for entry in record.jobs:
        job_state, started = entry.state, entry.started_at
        if api is not None and entry.uid is not None and entry.live:
            try:
                live = api.get_job(entry.site, entry.uid)
                job_state = str(live.get("state", job_state))
                # OAR reports started_at 0 before the start: keep the recorded time then, as the reserve phase does.
                started = int(live["started_at"]) if live.get("started_at") else started
            except G5kError:
                job_state = f"{entry.state} (recorded; API unreachable)"
        jobs.append({"site": entry.site, "uid": entry.uid, "state": job_state, "started_at": started})
        if started and job_state == "running":
            ends.append(started + entry.walltime)
    failed = next(((name, phase) for name, phase in record.phases.items() if phase.state == "failed"), None)
    return {
        "run_id": record.run_id,
        "testbed": record.testbed,
        "phase": f"{failed[0]}:failed" if failed else record.phase,
        "failed_phase": failed[0] if failed else None,
        "error": (failed[1].error or "no reason recorded") if failed else None,
        "released": record.released_at is not None,
        "jobs": jobs,
        "nodes": sum(len(nodes) for nodes in record.roles.values()),
        "roles": record.roles,
        "walltime_left": max(0, int(min(ends) - now)) if ends else None,
    }


def _run_json(record: RunRecord, state: Settings) -> dict[str, Any]:
    return {
        "run_id": record.run_id,
        "run_dir": str(state.store.directory(record.run_id)),
        "testbed": record.testbed,
        "jobs": [{"site": j.site, "uid": j.uid, "state": j.state, "nodes": j.nodes} for j in record.jobs],
        "roles": record.roles,
    }


def _print_roles(state: Settings, record: RunRecord) -> None:
    table = Table("role", "nodes", title=f"{record.run_id}: reserved")
    for role, nodes in record.roles.items():
        table.add_row(role, "\n".join(nodes))
    state.out.print(table)
    jobs = ", ".join(f"{j.site}/{j.uid}" for j in record.jobs)
    state.out.print(f"jobs {jobs}; release with: g5k release {record.run_id}", highlight=False, markup=False)
