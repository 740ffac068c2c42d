"""``g5k nightly``: plan, run, check and schedule the nightly runs of a playbook."""

from __future__ import annotations

import shutil
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

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
from g5kdeploy.nightly.regression import Report
from g5kdeploy.phases.nightly import check, plan_night, require_nightly, run_nightly
from g5kdeploy.playbook import PARIS, load_playbook
from g5kdeploy.signals import terminate_as_interrupt
from g5kdeploy.testbeds import testbed_for
from g5kdeploy.walltime import format_duration

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
    """The next legal slot (nights on working days, weekends, French holidays) and the reservation to submit."""
    state = settings(ctx)
    book = load_playbook(playbook)
    require_nightly(book, playbook)
    slot, notes = plan_night(book, datetime.now(PARIS))
    walltime = f"walltime={format_duration(slot.walltime)}"
    if as_json:
        print_json(
            {**slot.to_json(), "notes": notes, "oar": {"reservation": slot.oar_reservation, "resources": walltime}}
        )
        return
    for note in notes:
        state.err.print(f"skipped: {note}", highlight=False, markup=False)
    state.out.print(f"slot: {slot}", highlight=False, markup=False)
    state.out.print(
        f'oar: reservation="{slot.oar_reservation}" resources="...,{walltime}"', highlight=False, markup=False
    )


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
                "hook": outcome.hook,
            }
        )
    else:
        verb = "attached to" if outcome.reattached else "ran"
        state.out.print(f"{verb} {outcome.record.run_id}; history: {outcome.files.get('markdown')}", markup=False)
        _print_changes(state.out, outcome.report)
        if outcome.hook:
            state.out.print(outcome.hook, highlight=False, markup=False)
    raise typer.Exit(outcome.report.exit_code)


@app.command("check")
@handle_errors
def check_command(ctx: typer.Context, playbook: Book, as_json: JsonFlag = False) -> None:
    """Change points in the playbook's finished runs: exit 0 if nothing regressed, 3 on a regression."""
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
