"""How a fan-out's execo processes (connection probes, transfers) are collected, as :data:`Collector` outcomes.

Commands do not start a process per host at all: :mod:`g5kdeploy.remote.mux` asks each host's master directly.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping

from execo.process import ProcessBase

from g5kdeploy.remote.results import SSH_CONNECTION_FAILED, Outcome

# Waits (at most the given seconds) for the operation started on a set of hosts, and says how each ended.
Collector = Callable[[float], dict[str, Outcome]]
KILL_WAIT = 5.0


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
