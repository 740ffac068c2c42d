"""``g5k nightly``: plan, run, check and schedule the nightly runs of a playbook."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.status import Status
from rich.table import Table

from g5kdeploy.cli.common import api_url_for, handle_errors, print_json, settings
from g5kdeploy.nightly.install import (
    crontab_line,
    install_cron,
    install_systemd,
    systemd_enable_commands,
    systemd_units,
    uninstall_cron,
    uninstall_systemd,
)
from g5kdeploy.nightly.phase import PlannedJob, check, plan_nightly, require_nightly, run_nightly
from g5kdeploy.playbook import load_playbook
from g5kdeploy.signals import terminate_as_interrupt
from g5kdeploy.testbeds import testbed_for
from g5kdeploy.walltime import format_duration

if TYPE_CHECKING:  # numpy, scipy and ruptures load only for the commands that detect
    from g5kdeploy.nightly.regression import Report

app = typer.Typer(
    help="Every night: a policy-legal slot, the pipeline, and regression detection.", no_args_is_help=True
)
Book = Annotated[Path, typer.Argument(help="The experiment's playbook (YAML).")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="nightly")


@app.command("plan")
@handle_errors
def plan_command(ctx: typer.Context, playbook: Book, as_json: JsonFlag = False) -> None:
    """The next legal slot (nights on working days, weekends, French holidays) and the OAR request to submit.

    Reads the API as the reserve phase does (sites, clusters), submits nothing."""
    state = settings(ctx)
    book = load_playbook(playbook)
    require_nightly(book, playbook)
    testbed = testbed_for(book.testbed)
    # On the local testbed planning starts a simulator: SIGTERM must unwind to stop it too.
    terminate_as_interrupt()
    plan = plan_nightly(book, playbook, state.store, testbed, api_url=api_url_for(book))
    name_is_run_id = book.reservation.job_name is None
    if as_json:
        print_json(
            {
                "testbed": book.testbed,
                "usage_policy": testbed.usage_policy,
                "slot": plan.slot.to_json() if plan.slot else None,
                "notes": plan.notes,
                "attach_to": plan.attach_to,
                "jobs": [
                    {"site": job.site, "walltime": format_duration(job.walltime), "body": job.body,
                     "name_is_run_id": name_is_run_id}
                    for job in plan.jobs
                ],
            }
        )  # fmt: skip
        return
    lines = [f"slot: {plan.slot}"] if plan.slot else []
    lines += [f"note: {note}" for note in plan.notes]
    if plan.attach_to:
        lines.append(f"the night's run {plan.attach_to} exists: g5k nightly run attaches to it, submits nothing")
    for job in plan.jobs:
        lines += [f"OAR request on {job.site}:", *_request_lines(job, name_is_run_id=name_is_run_id)]
    for line in lines:
        state.out.print(line, highlight=False, markup=False)


def _request_lines(job: PlannedJob, *, name_is_run_id: bool) -> list[str]:
    """The job body as the reserve phase POSTs it, every field shown (defaults included)."""
    body = job.body
    reservation = body.get("reservation")
    when = f"{reservation} (Europe/Paris)" if reservation else "none, the job starts at once"
    return [
        f"  name: {body['name']}" + (" (the run's id, new for each run)" if name_is_run_id else ""),
        f"  resources: {body['resources']}",
        f"  walltime: {format_duration(job.walltime)}",
        f"  reservation: {when}",
        f"  types: {', '.join(body.get('types', [])) or 'none'}",
        f"  queue: {body.get('queue', 'default')}",
        f"  project: {body.get('project') or 'none'}",
        f"  command: {body['command']}",
    ]


@app.command("run")
@handle_errors
def run_command(
    ctx: typer.Context,
    playbook: Book,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the jobs at the end.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Book tonight's slot (or attach to tonight's run), run the pipeline in it, then check for regressions."""
    state = settings(ctx)
    book = load_playbook(playbook)
    require_nightly(book, playbook)
    testbed = testbed_for(book.testbed)
    api_url = api_url_for(book)
    terminate_as_interrupt()
    with Status("nightly", console=state.err) as status:
        outcome = run_nightly(
            book,
            playbook,
            state.store,
            testbed,
            api_url=api_url,
            keep=keep,
            on_phase=lambda phase: status.update(phase),
        )
    if as_json:
        print_json(
            {
                "run_id": outcome.record.run_id,
                "reattached": outcome.reattached,
                "slot": outcome.slot.to_json() if outcome.slot else None,
                "notes": outcome.notes,
                "report": str(outcome.files.get("markdown")),
                "regressions": len(outcome.report.regressions),
                "history": outcome.report.to_dict()["history"],
                "hook": outcome.hook,
            }
        )
    else:
        verb = "attached to" if outcome.reattached else "ran"
        state.out.print(f"{verb} {outcome.record.run_id}; history: {outcome.files.get('markdown')}", markup=False)
        _print_changes(state.out, outcome.report)
        if outcome.hook:
            state.out.print(outcome.hook, highlight=False, markup=False)
    # The night's run went through: too little history yet is ``check``'s verdict (exit 4), not a failed night,
    # which the timer would otherwise report for the first nights of every new playbook.
    # A night without enough history yet is not a failure (a new playbook's timer must not fail for a week).
    raise typer.Exit(3 if outcome.report.regressions else 0)


@app.command("check")
@handle_errors
def check_command(ctx: typer.Context, playbook: Book, as_json: JsonFlag = False) -> None:
    """Change points in the playbook's finished runs: exit 0 if nothing regressed, 3 on a regression, 4 when no
    series has enough runs yet to be checked."""
    state = settings(ctx)
    book = load_playbook(playbook)
    report, files = check(state.store, book)
    if as_json:
        print_json({**report.to_dict(), "files": {name: str(path) for name, path in files.items()}})
    else:
        _print_changes(state.out, report)
        state.out.print(f"report: {files['markdown']}", highlight=False, markup=False)
    raise typer.Exit(report.exit_code)


def _print_changes(out: Console, report: Report) -> None:
    for split in report.splits:
        out.print(f"note: {split.message}", highlight=False, markup=False)
    if report.history_message:
        out.print(report.history_message, highlight=False, markup=False)
        return
    for message in report.short_series():
        out.print(f"note: {message}", highlight=False, markup=False)
    if not report.changes:
        out.print(f"no change over {report.runs} runs", highlight=False, markup=False)
        return
    rows = report.rows()
    table = Table(*rows[0].keys())
    for row in rows:
        table.add_row(*row.values())
    out.print(table)


@app.command("install")
@handle_errors
def install_command(
    ctx: typer.Context,
    playbook: Book,
    cron: Annotated[bool, typer.Option("--cron", help="A crontab line instead of a systemd user timer.")] = False,
    systemd: Annotated[bool, typer.Option("--systemd", help="A systemd user timer (the default).")] = False,
    name: Annotated[str, typer.Option(help="Name of the timer or crontab entry.")] = "g5k-nightly",
) -> None:
    """Run ``g5k nightly run PLAYBOOK`` every day, from a systemd user timer or a crontab line."""
    state = settings(ctx)
    book = load_playbook(playbook)
    require_nightly(book, playbook)
    g5k = shutil.which("g5k") or str(Path(sys.executable).with_name("g5k"))
    if cron and not systemd:
        line = crontab_line(playbook.absolute(), g5k=g5k, results_dir=state.store.results_dir, name=name)
        install_cron(line)
        state.out.print(f"crontab: {line}", highlight=False, markup=False)
        return
    units = systemd_units(playbook.absolute(), g5k=g5k, results_dir=state.store.results_dir, name=name)
    for path in install_systemd(units):
        state.out.print(f"wrote {path}", highlight=False, markup=False)
    for command in systemd_enable_commands(name):
        state.out.print(f"then: {command}", highlight=False, markup=False)


@app.command("uninstall")
@handle_errors
def uninstall_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="Name of the timer or crontab entry.")] = "g5k-nightly",
    cron: Annotated[bool, typer.Option("--cron", help="Remove the crontab line.")] = False,
) -> None:
    """Remove what ``g5k nightly install`` wrote."""
    state = settings(ctx)
    if cron:
        removed = uninstall_cron(name)
        state.out.print("crontab entry removed" if removed else "no crontab entry", highlight=False, markup=False)
        return
    for path in uninstall_systemd(name):
        state.out.print(f"removed {path}", highlight=False, markup=False)
