"""``g5k collect``, ``g5k verify`` and ``g5k snapshot serve``: a run's results, checked and explorable."""

from __future__ import annotations

import tarfile
import tempfile
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.status import Status

from g5kdeploy.cli.common import handle_errors, print_json, settings
from g5kdeploy.collect.manifest import verify_manifest
from g5kdeploy.collect.phase import run_collect
from g5kdeploy.errors import ConfigError, G5kError
from g5kdeploy.signals import terminate_as_interrupt
from g5kdeploy.testbeds import testbed_for
from g5kdeploy.tools.prometheus import serve_snapshot, stop_served

snapshot_app = typer.Typer(help="Explore a finished run's Prometheus snapshot.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("collect")(collect_command)
    app.command("verify")(verify_command)
    app.add_typer(snapshot_app, name="snapshot")


@handle_errors
def collect_command(
    ctx: typer.Context,
    run: Annotated[str | None, typer.Argument(help="The run to collect (default: the latest).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was written as JSON.")] = False,
) -> None:
    """Bring back the Prometheus snapshot, node facts, exports; write plots, report and manifest."""
    state = settings(ctx)
    record = state.store.load(run) if run else state.store.latest()
    terminate_as_interrupt()
    with Status("collecting", console=state.err) as status:
        summary = run_collect(
            record, state.store, testbed_for(record.testbed), on_step=lambda step: status.update(f"collect: {step}")
        )
    written = {
        "run_id": record.run_id,
        "snapshot": str(summary.snapshot),
        "exports": {name: str(path) for name, path in summary.exports.items()},
        "plots": [str(path) for path in summary.plots],
        "report": str(summary.report),
        "manifest": str(summary.manifest),
    }
    if as_json:
        print_json(written)
    else:
        state.out.print(f"report: {summary.report}", highlight=False, markup=False)


@handle_errors
def verify_command(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="The run: its directory, id, id prefix or latest.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON on stdout.")] = False,
) -> None:
    """Check every file of a run against its manifest.json; exit 1 naming what changed."""
    state = settings(ctx)
    directory = Path(run) if (Path(run) / "run.json").exists() else state.store.directory(state.store.resolve(run))
    problems = verify_manifest(directory)
    if as_json:
        print_json({"run_dir": str(directory), "ok": not problems, "problems": problems})
    if problems:
        raise G5kError(f"{directory}: {len(problems)} problem(s):\n" + "\n".join(f"  {p}" for p in problems))
    if not as_json:
        state.out.print(f"{directory}: every file matches manifest.json", highlight=False, markup=False)


@snapshot_app.command("serve")
@handle_errors
def serve_command(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="The run whose snapshot to serve.")],
    port: Annotated[int, typer.Option(help="Local port (0 picks a free one).")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the URL as JSON.")] = False,
) -> None:
    """Start a local Prometheus on a copy of the run's snapshot (no scraping) until Ctrl-C."""
    state = settings(ctx)
    record = state.store.load(run)
    tarball = record.collected.tarball
    run_dir = state.store.directory(record.run_id)
    if not tarball or not (run_dir / "prometheus" / tarball).exists():
        raise ConfigError(f"run {record.run_id} has no collected snapshot", hint=f"g5k collect {record.run_id}")
    terminate_as_interrupt()
    with tempfile.TemporaryDirectory(prefix="g5k-snapshot-") as scratch:
        with tarfile.open(run_dir / "prometheus" / tarball) as archive:
            archive.extractall(scratch, filter="data")
        snapshot = next(path for path in Path(scratch).iterdir() if path.is_dir())
        served = serve_snapshot(snapshot, Path(scratch) / "serve", port=port)
        try:
            if as_json:
                print_json({"run_id": record.run_id, "url": served.url, "pid": served.pid})
            else:
                state.out.print(f"{served.url}  (Prometheus on {record.run_id}'s snapshot; Ctrl-C stops it)")
            threading.Event().wait()
        finally:
            stop_served(served.pid)
