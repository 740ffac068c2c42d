"""How a fan-out's ssh clients are started and collected: by execo, or many at once by one local bash.

execo starts each process from its conductor thread through ``Popen(preexec_fn=...)``, a full fork of the
Python process: about 6 ms each here, more than a multiplexed ``true`` costs on the node. One execo process
running a small bash that starts every client (bash forks cheaply) keeps the fan-out's cost on the nodes.
Each client's output, exit status and start/end times land in files of a private scratch directory.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from execo import Process
from execo.process import ProcessBase

from g5kdeploy.errors import RemoteError
from g5kdeploy.process import is_running
from g5kdeploy.remote.results import SSH_CONNECTION_FAILED, Outcome

# Waits (at most the given seconds) for the operation started on a set of hosts, and says how each ended.
Collector = Callable[[float], dict[str, Outcome]]
KILL_WAIT = 5.0


def launch(hosts: Sequence[str], argv_for: Callable[[str], Sequence[str]], scratch_parent: Path) -> Collector:
    """Start ``argv_for(host)`` for every host at once; the returned function waits and collects."""
    scratch = Path(tempfile.mkdtemp(prefix="b", dir=scratch_parent))
    lines = [f"cd {shlex.quote(str(scratch))} || exit 1"]
    for index, host in enumerate(hosts):
        argv = shlex.join(argv_for(host))
        lines.append(
            f"( start=$EPOCHREALTIME; {argv} </dev/null >{index}.out 2>{index}.err & echo $! >{index}.pid;"
            f' wait $!; echo "$? $start $EPOCHREALTIME" >{index}.rc ) &'
        )
    lines.append("wait")
    launcher = Process(("bash", "-c", "\n".join(lines)), nolog_exit_code=True, nolog_error=True).start()

    def collect(limit: float) -> dict[str, Outcome]:
        launcher.wait(limit)
        try:
            if not launcher.ended:
                _kill_clients(scratch, len(hosts))
                launcher.kill()
                launcher.wait(KILL_WAIT)
            if launcher.error:
                raise RemoteError(f"cannot start the ssh clients: {launcher.error_reason}")
            return {host: _outcome(scratch, index) for index, host in enumerate(hosts)}
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    return collect


def _outcome(scratch: Path, index: int) -> Outcome:
    stdout = _read(scratch / f"{index}.out")
    stderr = _read(scratch / f"{index}.err")
    fields = _read(scratch / f"{index}.rc").split()
    if len(fields) != 3:
        return Outcome(None, stdout, stderr, 0.0, timed_out=True, error=None, connection_failed=False)
    exit_code = int(fields[0])
    return Outcome(
        exit_code,
        stdout,
        stderr,
        float(fields[2]) - float(fields[1]),
        timed_out=False,
        error=None,
        connection_failed=exit_code == SSH_CONNECTION_FAILED,
    )


def _kill_clients(scratch: Path, count: int) -> None:
    for index in range(count):
        pid_text = _read(scratch / f"{index}.pid").strip()
        if pid_text.isdigit() and is_running(int(pid_text), expect="ssh"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_text), signal.SIGTERM)


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode(errors="replace")
    except FileNotFoundError:
        return ""


def collect_processes(processes: Mapping[str, ProcessBase]) -> Collector:
    """Wait for every execo process until one shared deadline, then kill the stragglers."""

    def collect(limit: float) -> dict[str, Outcome]:
        deadline = time.monotonic() + limit
        for process in processes.values():
            process.wait(max(0.0, deadline - time.monotonic()))
        return {host: finish_process(process) for host, process in processes.items()}

    return collect


def finish_process(process: ProcessBase) -> Outcome:
    timed_out = not process.ended
    if timed_out:
        process.kill()
        process.wait(KILL_WAIT)
    exit_code = None if process.exit_code is None else os.waitstatus_to_exitcode(process.exit_code)
    end = process.end_date or time.time()
    return Outcome(
        exit_code=None if timed_out else exit_code,
        stdout=process.stdout,
        stderr=process.stderr,
        duration=end - (process.start_date or end),
        timed_out=timed_out,
        error=str(process.error_reason) if process.error else None,
        connection_failed=exit_code == SSH_CONNECTION_FAILED,
    )
