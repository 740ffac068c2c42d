"""Every local process the agent starts goes through here (``subprocess`` is imported nowhere else).

:func:`run` runs a program to its end, :func:`stream` a long one whose output shows progress, and
:func:`spawn_daemon` starts one that outlives the call; each child gets our environment without credentials,
and a program that fails or runs out of time is a ToolError saying what it was for.

Daemons (the local testbed's simulator, sshd nodes, Prometheus, QEMU guests) are started in their own session,
so a Ctrl-C in the terminal reaches the agent, which then releases what it holds through them, and not the
daemons themselves. They are stopped by PID, after checking that the PID still belongs to the program we started.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import random
import selectors
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psutil

from g5kdeploy.errors import DeadlineExceeded, TestbedError, ToolError
from g5kdeploy.log import is_secret
from g5kdeploy.waiting import seconds, wait_until

#: Variables that carry credentials: a child process never needs them (the agent talks to the API itself).
SECRET_VARIABLES = frozenset({"G5K_PASSWORD"})
#: Where daemons' ports are picked: below Linux's ephemeral range (32768+), so an outgoing connection never takes
#: the port between its choice and the daemon's bind.
PORT_RANGE = (10000, 32000)
#: Lines of a failed program's stderr (or output log) shown in its error.
TAIL_LINES = 20
#: Seconds a stopped process group gets between SIGTERM and SIGKILL, and after SIGKILL to be gone.
STOP_GRACE = 10.0
#: Seconds a SIGKILLed process may take to be gone (its exit, then its parent's reaping).
KILL_GRACE = 5.0


def port_free(address: str, port: int) -> bool:
    """Whether ``address:port`` can be bound right now (with SO_REUSEADDR, as sshd and Go servers bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True


def free_ports(addresses: Sequence[str], count: int = 1, *, avoid: Collection[int] = ()) -> list[int]:
    """``count`` distinct ports, none in ``avoid``, that no socket holds on any of ``addresses`` right now.

    A daemon may still lose one to another program before it binds it: its caller then picks again.
    """
    ports: list[int] = []
    for _ in range(200 * count):
        port = random.randint(*PORT_RANGE)
        if port not in ports and port not in avoid and all(port_free(address, port) for address in addresses):
            ports.append(port)
            if len(ports) == count:
                return ports
    where = addresses[0] if len(addresses) == 1 else f"all {len(addresses)} addresses from {addresses[0]}"
    raise TestbedError(f"not {count} port(s) free between {PORT_RANGE[0]} and {PORT_RANGE[1]} on {where}")


@dataclass(frozen=True)
class Completed:
    """A program that ran to its end: its command line, exit status and output."""

    command: list[str]
    returncode: int
    stdout: str
    stderr: str


def run(
    argv: Sequence[str | Path],
    *,
    timeout: float,
    what: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    check: bool = True,
) -> Completed:
    """Run ``argv`` to completion within ``timeout`` seconds, to ``what`` (in words: "compile statx-bench").

    A program that cannot start or does not end in time is a ToolError naming ``what``; with ``check`` a
    non-zero exit is one too, with the tail of its stderr, else the caller reads ``returncode``. The child gets
    ``env`` (default: ours) without credentials, and ``input`` (default: nothing) on its standard input.
    """
    command = [str(part) for part in argv]
    try:
        done = subprocess.run(
            command,
            check=False,
            cwd=cwd,
            env=child_env(env),
            input=input,
            stdin=subprocess.DEVNULL if input is None else None,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise _late(command, what, timeout) from None
    except OSError as exc:
        raise _unstartable(command, what, exc) from None
    if check and done.returncode != 0:
        raise _failed(command, what, done.returncode, done.stderr)
    return Completed(command, done.returncode, done.stdout, done.stderr)


def stream(
    argv: Sequence[str | Path],
    *,
    timeout: float,
    what: str,
    log_path: Path,
    on_line: Callable[[str], None],
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run a long ``argv`` (a build) like :func:`run`, each line of its output passed to ``on_line`` as it comes.

    Its stdout and stderr go, line by line, to ``log_path``, whose tail a failure shows. It runs in a process
    group of its own, stopped with everything it started however this ends: exit, timeout, an error in
    ``on_line``, Ctrl-C.
    """
    command = [str(part) for part in argv]
    deadline = time.monotonic() + timeout
    with log_path.open("w") as log_file:
        try:
            child = subprocess.Popen(
                command,
                cwd=cwd,
                env=child_env(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise _unstartable(command, what, exc) from None
        assert child.stdout is not None
        try:
            for line in _lines(child.stdout, deadline):
                log_file.write(line)
                on_line(line)
            returncode = child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except (TimeoutError, subprocess.TimeoutExpired):
            raise _late(command, what, timeout) from None
        finally:
            _stop_group(child)
            child.stdout.close()
    if returncode != 0:
        raise _failed(command, what, returncode, log_path.read_text(errors="replace"))


def _lines(pipe: IO[bytes], deadline: float) -> Iterator[str]:
    """The lines of ``pipe`` as they come, until it closes; TimeoutError at ``deadline``, even in a silence."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    with selectors.DefaultSelector() as selector:
        selector.register(pipe, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            if not selector.select(timeout=left):
                continue
            chunk = os.read(pipe.fileno(), 1 << 16)
            if not chunk:
                break
            *lines, pending = (pending + decoder.decode(chunk)).split("\n")
            yield from (line + "\n" for line in lines)
    if rest := pending + decoder.decode(b"", final=True):
        yield rest


def _stop_group(child: subprocess.Popen[bytes]) -> None:
    """End ``child`` and every process it started (its process group), and reap it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if child.poll() is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)  # stragglers of an exited leader
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=STOP_GRACE)


def _unstartable(command: list[str], what: str, error: OSError) -> ToolError:
    if isinstance(error, FileNotFoundError) and error.filename in (command[0], None):
        return ToolError(f"cannot {what}: {command[0]} not found", command=command)
    return ToolError(f"cannot {what}: {command[0]} could not start: {error.strerror or error}", command=command)


def _late(command: list[str], what: str, timeout: float) -> ToolError:
    name = Path(command[0]).name
    return ToolError(f"cannot {what}: {name} did not finish within {seconds(timeout)}", command=command)


def _failed(command: list[str], what: str, returncode: int, output: str) -> ToolError:
    tail = "\n".join(output.rstrip().splitlines()[-TAIL_LINES:])
    return ToolError(
        f"cannot {what}: {Path(command[0]).name} exited with status {returncode}" + (f":\n{tail}" if tail else ""),
        command=command,
    )


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

    def printed() -> str | None:
        for line in _read_from(log_path, offset).splitlines():
            if line.startswith(prefix):
                return line.strip()
        if not is_running(pid):
            tail = _read_from(log_path, offset)[-2000:]
            raise TestbedError(f"process {pid} exited before it was ready; its output ends with:\n{tail}")
        return None

    return wait_until(printed, timeout=timeout, what=f"process {pid} to print a line starting with {prefix!r}")


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
    what = f"process {pid} to exit"
    try:
        wait_until(lambda: _gone(pid), timeout=timeout, what=what)
    except DeadlineExceeded:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(DeadlineExceeded):
            wait_until(lambda: _gone(pid), timeout=KILL_GRACE, what=what)


def _gone(pid: int) -> bool:
    _reap(pid)
    return not is_running(pid)
