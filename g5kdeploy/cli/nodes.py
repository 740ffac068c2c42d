"""``g5k ssh`` and ``g5k exec``: a shell on one node of a run, or a command on many of them at once."""

from __future__ import annotations

import os
import shlex
import sys
from typing import Annotated, Any

import typer

from g5kdeploy.cli.common import Settings, handle_errors, print_json, settings
from g5kdeploy.errors import G5kError, ToolError
from g5kdeploy.process import child_env
from g5kdeploy.remote import CommandResult
from g5kdeploy.remote.nodes import reachable, run_on_nodes, ssh_argv, target
from g5kdeploy.results import NodeAccess, RunRecord
from g5kdeploy.testbeds import testbed_for

Run = Annotated[str, typer.Argument(help="The run: id, id prefix, latest or its directory.")]


def register(app: typer.Typer) -> None:
    app.command("ssh")(ssh_command)
    # ``g5k exec RUN -- ls -l``: what follows the run is the command, options included.
    app.command("exec", context_settings={"ignore_unknown_options": True})(exec_command)


def _access(state: Settings, record: RunRecord) -> NodeAccess:
    """The run's nodes made reachable as the phases do it (the local testbed restarts nodes found dead)."""
    reachable(record)
    return testbed_for(record.testbed).access(record, state.store)


@handle_errors
def ssh_command(
    ctx: typer.Context,
    run: Run,
    node: Annotated[
        str | None,
        typer.Argument(metavar="[NODE|ROLE]", help="A node (gros-12 or its full name) or a role (its first node)."),
    ] = None,
    command: Annotated[
        str | None, typer.Option("--command", "-c", help="Run this instead of a shell, and exit with its status.")
    ] = None,
    print_only: Annotated[
        bool, typer.Option("--print", help="Print the ssh command line instead of running it.")
    ] = False,
) -> None:
    """A shell on a node of the run (default: the first node of the first role), through the run's ssh_config."""
    state = settings(ctx)
    record = state.store.load(run)
    access = _access(state, record)
    argv = ssh_argv(access, target(record, node), command)
    if print_only:
        typer.echo(shlex.join(argv))
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        # ssh takes over this process: the terminal, the exit status and the signals are the user's and ssh's.
        os.execvpe(argv[0], argv, child_env())
    except OSError as exc:
        raise ToolError(
            f"cannot start ssh: {exc.strerror}", command=argv, hint="apt-get install openssh-client"
        ) from None


@handle_errors
def exec_command(
    ctx: typer.Context,
    run: Run,
    command: Annotated[
        list[str], typer.Argument(metavar="-- COMMAND...", help="The command, run by each node's login shell.")
    ],
    roles: Annotated[
        list[str] | None, typer.Option("--role", "-r", help="The nodes of this role (repeat for more roles).")
    ] = None,
    nodes: Annotated[
        str | None, typer.Option("--nodes", "-n", help="These nodes, comma-separated (gros-12 or full names).")
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", "-t", help="Seconds each node's command may take.")] = 60.0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per node on stdout.")] = False,
) -> None:
    """Run COMMAND on the run's nodes at once (default: all of them); exit 1 naming the nodes where it failed."""
    state = settings(ctx)
    record = state.store.load(run)
    _access(state, record)
    names = [name.strip() for name in (nodes or "").split(",") if name.strip()]
    # As ssh does, the words are joined with spaces and the node's shell reads them: quote what it must not split.
    results = run_on_nodes(record, " ".join(command), roles=roles or [], nodes=names, timeout=timeout)
    if as_json:
        print_json([_result_json(result) for result in results.values()])
    else:
        for result in results.values():
            _print_prefixed(result)
    failed = [result for result in results.values() if not result.ok]
    if failed:
        raise G5kError(
            f"the command failed on {len(failed)} of {len(results)} nodes: "
            + ", ".join(f"{_short(result.host)} ({_why(result, timeout)})" for result in failed)
        )


def _short(node: str) -> str:
    return node.split(".")[0]


def _why(result: CommandResult, timeout: float) -> str:
    if result.timed_out:
        return f"timed out after {timeout:g} s"
    if result.error:
        return result.error
    return f"exit {result.exit_code}"


def _print_prefixed(result: CommandResult) -> None:
    prefix = _short(result.host)
    for text, stream in ((result.stdout, sys.stdout), (result.stderr, sys.stderr)):
        for line in text.splitlines():
            stream.write(f"{prefix}: {line}\n")
    sys.stdout.flush()


def _result_json(result: CommandResult) -> dict[str, Any]:
    return {
        "node": result.host,
        "ok": result.ok,
        "exit_code": result.exit_code,
        "stdout": result.stdout,
        "stderr": result.stderr,
        "duration": round(result.duration, 3),
        "timed_out": result.timed_out,
        "error": result.error,
    }
