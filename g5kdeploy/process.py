"""Local processes the agent starts and must stop again, even from another invocation.

Daemons (the local testbed's simulator, later its sshd nodes and Prometheus) are started in their own
session, so a Ctrl-C in the terminal reaches the agent, which then releases what it holds through them,
and not the daemons themselves. They are stopped by PID, after checking that the PID still belongs to the
program we started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

from g5kdeploy.errors import DeadlineExceeded, TestbedError, ToolError
from g5kdeploy.log import is_secret

#: Variables that carry credentials: a child process never needs them (the agent talks to the API itself).
SECRET_VARIABLES = frozenset({"G5K_PASSWORD"})


def port_free(address: str, port: int) -> bool:
    """Whether ``address:port`` can be bound right now (with SO_REUSEADDR, as sshd and Go servers bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True


def run(
    argv: Sequence[str | Path],
    *,
    timeout: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdout: int | None = subprocess.PIPE,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` to completion within ``timeout`` seconds; a failure is a ToolError with its stderr's tail.

    The child gets ``env`` (default: ours) without credentials, and no standard input.
    """
    command = [str(part) for part in argv]
    try:
        done = subprocess.run(
            command,
            check=False,
            cwd=cwd,
            env=child_env(env),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            timeout=timeout,
        )
    except FileNotFoundError:
        raise ToolError(f"{command[0]} not found", command=command) from None
    except subprocess.TimeoutExpired:
        raise ToolError(f"{Path(command[0]).name} did not finish within {timeout:.0f} s", command=command) from None
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise ToolError(
            f"{Path(command[0]).name} failed (exit {done.returncode})" + (f":\n{tail}" if tail else ""),
            command=command,
        )
    return done


def child_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: our environment) without the variables that hold a credential."""
    source = os.environ if base is None else base
    return {name: value for name, value in source.items() if name not in SECRET_VARIABLES and not is_secret(value)}


def spawn_daemon(argv: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None) -> int:
    """Start ``argv`` detached, its output appended to ``log_path``; return its PID.

    The daemon gets ``env`` (default: ours), never with a credential in it.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=child_env(env),
        )
    return process.pid


def log_size(log_path: Path) -> int:
    """Where a daemon's appended output will start: read from there, not older runs' lines."""
    return log_path.stat().st_size if log_path.exists() else 0


def wait_for_line(log_path: Path, prefix: str, *, pid: int, timeout: float, offset: int = 0) -> str:
    """The first line of ``log_path`` after byte ``offset`` that starts with ``prefix``, once the daemon writes it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in _read_from(log_path, offset).splitlines():
            if line.startswith(prefix):
                return line.strip()
        if not is_running(pid):
            tail = _read_from(log_path, offset)[-2000:]
            raise TestbedError(f"process {pid} exited before it was ready; its output ends with:\n{tail}")
        time.sleep(0.05)
    raise DeadlineExceeded(f"process {pid} did not print a line starting with {prefix!r} within {timeout:.0f} s")


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def listens_on(pid: int, address: str, port: int) -> bool:
    """Whether process ``pid`` itself holds the listening TCP socket ``address:port``.

    A readiness probe that only connects could be answered by another program on that address (another run's
    daemon); this tells our daemon from it.
    """
    try:
        connections = psutil.Process(pid).net_connections(kind="tcp")
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return any(
        conn.status == psutil.CONN_LISTEN and conn.laddr and (conn.laddr.ip, conn.laddr.port) == (address, port)
        for conn in connections
    )


def free_port(address: str) -> int:
    """A port the kernel considers free on ``address`` right now (a daemon may still lose it in a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((address, 0))
        return int(probe.getsockname()[1])


def is_running(pid: int, *, expect: str | None = None) -> bool:
    """Whether ``pid`` is alive (and not a zombie), and its command line contains ``expect``."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    if status.rsplit(")", 1)[-1].split()[0] == "Z":
        _reap(pid)
        return False
    return expect is None or expect in cmdline


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop_pid(pid: int, *, expect: str, timeout: float = 10.0) -> bool:
    """SIGTERM ``pid`` if it is still our ``expect`` program, SIGKILL after ``timeout``; True if it ran.

    What the daemon forked is stopped too (a Python daemon that imports execo forks a helper that outlives it
    by a second), and this returns only once all of them are gone.
    """
    if not is_running(pid, expect=expect):
        return False
    descendants = _descendants(pid)
    os.kill(pid, signal.SIGTERM)
    wait_gone(pid, timeout=timeout)
    for child in descendants:
        with contextlib.suppress(psutil.Error):
            if child.is_running():
                child.terminate()
    for child in descendants:
        wait_gone(child.pid, timeout=timeout)
    return True


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def wait_gone(pid: int, *, timeout: float = 10.0) -> None:
    """Wait until ``pid`` (already told to stop) has exited, SIGKILL it after ``timeout``.

    An exiting process may already show an empty command line, so this checks only that it exists.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not is_running(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    while is_running(pid) and time.monotonic() < deadline + 5:
        _reap(pid)
        time.sleep(0.05)
