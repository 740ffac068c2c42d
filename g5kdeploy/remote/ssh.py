"""Parallel commands and transfers over OpenSSH, through execo, one ControlMaster per host.

Every operation goes in two steps. First the hosts without a live master are connected (``ssh host true``,
which leaves a master behind thanks to ``ControlPersist``), at most ``max_new_connections`` at a time: that
is the part the Grid'5000 access gateway limits. Then the operation itself starts on every connected host at
once, on its host's master (commands: a session asked of each master over its socket, see ``mux``, with no
ssh client per host; transfers: execo ``Put``/``Get`` and pipelines). A host whose ssh exits 255 (connection
refused, reset, dropped) is tried again, after a random pause, through the same two steps; a command's own
non-zero exit is never retried.
"""

from __future__ import annotations

import random
import shlex
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

from execo import Host, SshProcess
from execo.process import ProcessBase

from g5kdeploy.errors import ConfigError
from g5kdeploy.log import get_logger
from g5kdeploy.remote import mux, transfer
from g5kdeploy.remote.batch import Collector, finish_process
from g5kdeploy.remote.masters import Masters
from g5kdeploy.remote.results import CommandResult, Outcome, TransferResult

log = get_logger(__name__)

# `timeout` exits 124 when it stopped the command, 137 when it had to SIGKILL it.
TIMEOUT_EXITS = (124, 137)
KILL_AFTER = 2
# Local slack over the remote `timeout`, for the connection and the teardown.
LOCAL_GRACE = 5.0
RETRY_PAUSE = (0.2, 1.0)
POLL = 0.005
QUIET = {"nolog_exit_code": True, "nolog_timeout": True, "nolog_error": True}

# Starts the operation on the given (connected) hosts.
Starter = Callable[[Sequence[str]], Collector]


class SshRunner:
    def __init__(
        self,
        ssh_config: Path,
        *,
        control_dir: Path | None = None,
        max_new_connections: int = 10,
        retries: int = 2,
        connect_timeout: float = 10.0,
        control_persist: int = 120,
    ) -> None:
        if max_new_connections < 1 or retries < 0 or connect_timeout <= 0:
            raise ConfigError("max_new_connections must be >= 1, retries >= 0 and connect_timeout > 0")
        self.ssh_config = ssh_config
        self.max_new_connections = max_new_connections
        self.retries = retries
        self.connect_timeout = connect_timeout
        self._masters = Masters(
            ssh_config, control_dir=control_dir, persist=control_persist, connect_timeout=connect_timeout
        )

    @property
    def ssh_options(self) -> tuple[str, ...]:
        """The full ssh option list (execo's defaults, such as ``-tt``, are replaced, not extended)."""
        return self._masters.ssh_options

    @property
    def connection_params(self) -> dict[str, Any]:
        return {"ssh_options": self.ssh_options, "scp_options": (*self.ssh_options, "-q")}

    def run(
        self, hosts: Sequence[str], command: str, *, timeout: float = 60.0, env: Mapping[str, str] | None = None
    ) -> dict[str, CommandResult]:
        remote = remote_command(command, timeout=timeout, env=env)

        def start(ready: Sequence[str]) -> Collector:
            # One session per host on its warm master, asked over the master's socket: no ssh client per node.
            return mux.launch({host: self._masters.socket(host) for host in ready}, remote, self._masters.directory)

        outcomes = self.fanout(hosts, start, limit=timeout + LOCAL_GRACE)
        return {host: _command_result(host, outcome, timeout) for host, outcome in outcomes.items()}

    def put(
        self, hosts: Sequence[str], local: Path, remote: str, *, timeout: float = 300.0
    ) -> dict[str, TransferResult]:
        return transfer.put(self, hosts, local, remote, timeout=timeout)

    def get(
        self, hosts: Sequence[str], remote: str, local_dir: Path, *, timeout: float = 300.0
    ) -> dict[str, TransferResult]:
        return transfer.get(self, hosts, remote, local_dir, timeout=timeout)

    def put_tree(
        self, hosts: Sequence[str], local_dir: Path, remote_dir: str, *, timeout: float = 300.0
    ) -> dict[str, TransferResult]:
        return transfer.put_tree(self, hosts, local_dir, remote_dir, timeout=timeout)

    def get_tree(
        self, hosts: Sequence[str], remote_dir: str, local_dir: Path, *, timeout: float = 300.0
    ) -> dict[str, TransferResult]:
        return transfer.get_tree(self, hosts, remote_dir, local_dir, timeout=timeout)

    def close(self) -> None:
        self._masters.close()

    def __enter__(self) -> SshRunner:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def fanout(self, hosts: Iterable[str], start: Starter, *, limit: float) -> dict[str, Outcome]:
        """Connect, then ``start`` the operation on the connected hosts; retry connection failures."""
        pending = list(dict.fromkeys(hosts))
        self._masters.lookup(pending)
        final: dict[str, Outcome] = {}
        for attempt in range(1, self.retries + 2):
            outcomes = self._connect(pending)
            ready = [host for host in pending if host not in outcomes]
            if ready:
                outcomes.update(start(ready)(limit))
            for host, outcome in outcomes.items():
                final[host] = replace(outcome, attempts=attempt)
            pending = [host for host in pending if outcomes[host].connection_failed]
            if not pending or attempt > self.retries:
                break
            log.debug("retrying after connection failures", hosts=pending, attempt=attempt)
            # Jitter, so that hosts dropped together do not all come back in the same instant.
            time.sleep(random.uniform(*RETRY_PAUSE) * attempt)
        return final

    def _connect(self, hosts: Sequence[str]) -> dict[str, Outcome]:
        """Open a master to each host that has none, ``max_new_connections`` at a time; the failures."""
        queue = [host for host in hosts if not self._masters.is_up(host)]
        running: dict[str, tuple[ProcessBase, float]] = {}
        failures: dict[str, Outcome] = {}
        limit = self.connect_timeout + LOCAL_GRACE
        while queue or running:
            while queue and len(running) < self.max_new_connections:
                host = queue.pop(0)
                probe = SshProcess("true", Host(host), connection_params=self.connection_params, **QUIET)
                running[host] = (probe.start(), time.monotonic() + limit)
            for host, (probe, deadline) in list(running.items()):
                if not probe.ended and time.monotonic() < deadline:
                    continue
                del running[host]
                outcome = finish_process(probe)
                if not (outcome.exit_code == 0 and outcome.error is None):
                    detail = _last_line(outcome.stderr) or outcome.error or f"exit {outcome.exit_code}"
                    failures[host] = replace(outcome, error=f"cannot connect: {detail}", connection_failed=True)
            time.sleep(POLL)
        return failures


def remote_command(command: str, *, timeout: float, env: Mapping[str, str] | None = None) -> str:
    """``command`` for the remote login shell, with ``env`` exported and a time limit enforced on the node.

    Killing the local ssh client would leave the remote command running (there is no tty to hang up), so
    the node's own ``timeout`` ends it, with its whole process group. The login shell has already read the
    user's startup files; ``SHLVL=1`` keeps bash from reading ``~/.bashrc`` a second time in the inner shell
    (``exec`` resets the level to 0, and bash reads it for any level-1 shell started by sshd).
    """
    exports = ""
    for name, value in (env or {}).items():
        if not name.isidentifier():
            raise ConfigError(f"invalid environment variable name {name!r}")
        exports += f"export {name}={shlex.quote(value)}; "
    inner = shlex.quote(exports + command)
    return f'exec timeout -k {KILL_AFTER} {timeout:g} env SHLVL=1 "${{SHELL:-/bin/sh}}" -c {inner} </dev/null'


def _command_result(host: str, outcome: Outcome, timeout: float) -> CommandResult:
    timed_out = outcome.timed_out or (outcome.exit_code in TIMEOUT_EXITS and outcome.duration >= timeout)
    error = outcome.error
    if outcome.connection_failed and error is None:
        error = f"ssh connection failed: {_last_line(outcome.stderr) or 'exit 255'}"
    failed_ssh = outcome.connection_failed or timed_out
    return CommandResult(
        host=host,
        exit_code=None if failed_ssh else outcome.exit_code,
        stdout=outcome.stdout,
        stderr=outcome.stderr,
        duration=outcome.duration,
        timed_out=timed_out,
        attempts=outcome.attempts,
        error=error,
    )


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""
