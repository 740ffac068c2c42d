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
from collections.abc import Sequence
from pathlib import Path

from g5kdeploy.errors import DeadlineExceeded, TestbedError


def port_free(address: str, port: int) -> bool:
    """Whether ``address:port`` can be bound right now (with SO_REUSEADDR, as sshd and Go servers bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True


def spawn_daemon(argv: Sequence[str], *, log_path: Path, env: dict[str, str] | None = None) -> int:
    """Start ``argv`` detached, its output appended to ``log_path``; return its PID."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    return process.pid


def wait_for_line(log_path: Path, prefix: str, *, pid: int, timeout: float) -> str:
    """The first line of ``log_path`` that starts with ``prefix``, as soon as the daemon writes it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log_path.exists():
            for line in log_path.read_text(errors="replace").splitlines():
                if line.startswith(prefix):
                    return line.strip()
        if not is_running(pid):
            tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
            raise TestbedError(f"process {pid} exited before it was ready; its output ends with:\n{tail}")
        time.sleep(0.05)
    raise DeadlineExceeded(f"process {pid} did not print a line starting with {prefix!r} within {timeout:.0f} s")


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
    """SIGTERM ``pid`` if it is still our ``expect`` program, SIGKILL after ``timeout``; True if it ran."""
    if not is_running(pid, expect=expect):
        return False
    os.kill(pid, signal.SIGTERM)
    wait_gone(pid, timeout=timeout)
    return True


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
