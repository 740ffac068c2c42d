"""``g5k check`` and ``g5k init``: a playbook checked as the reserve phase would, and a starting one."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from g5kdeploy.cli.common import api_url_for, handle_errors, print_json, settings
from g5kdeploy.playbook import load_playbook
from g5kdeploy.reserve.scratch import check_without_run
from g5kdeploy.signals import terminate_as_interrupt
from g5kdeploy.starter import write_starter
from g5kdeploy.testbeds import testbed_for
from g5kdeploy.walltime import format_duration


class InitTestbed(StrEnum):
    local = "local"
    grid5000 = "grid5000"
    vm = "vm"


def register(app: typer.Typer) -> None:
    app.command("check")(check_command)
    app.command("init")(init_command)


@handle_errors
def check_command(
    ctx: typer.Context,
    playbook: Annotated[Path, typer.Argument(help="The experiment's playbook (YAML).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print what was checked as JSON on stdout.")] = False,
) -> None:
    """Check a playbook as reserve does before it submits, submitting nothing: exit 0, or 2 naming the field.

    The schema, then against the playbook's API (local testbeds: a simulator of their own): sites, clusters and
    their queues, node counts against the inventory, the reservation date, the walltime against the usage policy."""
    state = settings(ctx)
    book = load_playbook(playbook)
    testbed = testbed_for(book.testbed)
    # On the local testbed the check starts a simulator: SIGTERM must unwind to stop it too.
    terminate_as_interrupt()
    report = check_without_run(book, playbook, testbed, api_url=api_url_for(book))
    roles = ", ".join(f"{name} {role.nodes}" for name, role in book.reservation.roles.items())
    checked = [f"{playbook}: version {book.version}, testbed {book.testbed}, roles {roles}", *report.checked]
    jobs = [
        {
            "site": job.site,
            "resources": job.resources,
            "types": list(job.types),
            "walltime": format_duration(job.walltime),
        }
        for job in report.placement.jobs
    ]
    if as_json:
        print_json({"playbook": str(playbook), "ok": True, "checked": checked, "notes": report.notes, "jobs": jobs})
        return
    lines = [f"ok: {line}" for line in checked]
    lines += [
        f"OAR request on {job['site']}: {job['resources']}, types: {', '.join(job['types']) or 'none'}" for job in jobs
    ]
    lines += [f"note: {note}" for note in report.notes]
    lines.append("nothing was submitted")
    for line in lines:
        state.out.print(line, highlight=False, markup=False)


@handle_errors
def init_command(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="Where to write it (never over an existing file).")] = Path(
        "experiment.yaml"
    ),
    testbed: Annotated[
        InitTestbed, typer.Option("--testbed", help="Where it runs: loopback nodes, Grid'5000 or QEMU guests.")
    ] = InitTestbed.local,
) -> None:
    """Write a commented starting playbook (the statx experiment) that passes g5k check."""
    state = settings(ctx)
    write_starter(path, testbed.value)
    state.out.print(
        f"wrote {path} (testbed {testbed.value}); next: g5k check {path}, then g5k run {path}",
        highlight=False,
        markup=False,
    )
