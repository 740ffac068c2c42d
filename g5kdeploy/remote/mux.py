"""Commands on warm ControlMasters without an ssh client per command: OpenSSH's multiplexing protocol, spoken here.

``ssh -S socket host command`` costs a process per node and command (3.6 ms here only to start ssh), and the
master does the work anyway. Instead, for each host this module connects to its master's socket, asks for a
session running the command (``MUX_C_NEW_SESSION`` of OpenSSH's PROTOCOL.mux), hands the master ``/dev/null``
and two files of a scratch directory as the session's stdin, stdout and stderr (``SCM_RIGHTS``), and reads the
exit status (``MUX_S_EXIT_MESSAGE``). The master closes the socket once the session is over and its output
written, so the files are complete when the socket reaches its end. A session that ends without an exit status
is what ssh reports as exit 255: a connection failure, which the caller may retry.
"""

from __future__ import annotations

import contextlib
import os
import resource
import selectors
import shutil
import socket
import struct
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from g5kdeploy.remote.batch import Collector
from g5kdeploy.remote.results import SSH_CONNECTION_FAILED, Outcome

# PROTOCOL.mux: every message is a uint32 length, then a uint32 type and its fields; strings are length-prefixed.
MUX_MSG_HELLO = 0x00000001
MUX_C_NEW_SESSION = 0x10000002
MUX_S_PERMISSION_DENIED = 0x80000002
MUX_S_FAILURE = 0x80000003
MUX_S_EXIT_MESSAGE = 0x80000004
MUX_VERSION = 4
#: No escape character: the session has no terminal.
NO_ESCAPE = 0xFFFFFFFF
#: Seconds to connect to a master and hand it the request: a master that does not take it is as good as dead.
SETUP_TIMEOUT = 5.0
READ_SIZE = 65536
#: Descriptors kept free for the rest of the process while a fan-out holds one socket per host.
SPARE_FDS = 256


def _uint(value: int) -> bytes:
    return struct.pack(">I", value)


def _string(value: bytes) -> bytes:
    return _uint(len(value)) + value


def _message(*fields: bytes) -> bytes:
    body = b"".join(fields)
    return _uint(len(body)) + body


def new_session_request(command: str, request_id: int = 1) -> bytes:
    """The client's hello, then a request for a session without terminal, forwarding or environment."""
    hello = _message(_uint(MUX_MSG_HELLO), _uint(MUX_VERSION))
    flags = _uint(0) * 4  # want tty, X11 forwarding, agent forwarding, subsystem
    session = _message(
        _uint(MUX_C_NEW_SESSION), _uint(request_id), _string(b""), flags, _uint(NO_ESCAPE), _string(b""),
        _string(command.encode()),
    )  # fmt: skip
    return hello + session


@dataclass
class _Session:
    host: str
    index: int
    started: float
    sock: socket.socket | None = None
    received: bytearray = field(default_factory=bytearray)
    exit_code: int | None = None
    error: str | None = None
    ended: float | None = None

    def feed(self, data: bytes) -> None:
        """Take in what the master sent: its hello, the session's opening, a refusal or the exit status."""
        self.received += data
        while len(self.received) >= 4:
            (length,) = struct.unpack(">I", self.received[:4])
            if len(self.received) < 4 + length:
                return
            body = bytes(self.received[4 : 4 + length])
            del self.received[: 4 + length]
            kind = struct.unpack(">I", body[:4])[0] if len(body) >= 4 else None
            if kind == MUX_MSG_HELLO and struct.unpack(">I", body[4:8])[0] != MUX_VERSION:
                self.error = f"the SSH master speaks multiplexing protocol {struct.unpack('>I', body[4:8])[0]}"
            elif kind == MUX_S_EXIT_MESSAGE and len(body) >= 12:
                self.exit_code = struct.unpack(">I", body[8:12])[0]
            elif kind in (MUX_S_FAILURE, MUX_S_PERMISSION_DENIED):
                reason = body[12:].decode(errors="replace") if len(body) > 12 else "no reason given"
                self.error = f"the SSH master refused the session: {reason}"


def _open(session: _Session, path: Path, request: bytes, fds: tuple[int, int, int]) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(SETUP_TIMEOUT)
        sock.connect(str(path))
        sock.sendall(request)
        # The master takes each descriptor in a message of its own (mm_receive_fd): stdin, stdout, stderr.
        for fd in fds:
            socket.send_fds(sock, [b"\0"], [fd])
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        session.error = f"cannot reach the SSH master: {exc.strerror or exc}"
        session.ended = time.monotonic()
        return
    session.sock = sock


def launch(sockets: Mapping[str, Path], command: str, scratch_parent: Path) -> Collector:
    """Start ``command`` on every host at once through its master's socket; the returned function waits and collects."""
    _room_for(len(sockets))
    scratch = Path(tempfile.mkdtemp(prefix="m", dir=scratch_parent))
    request = new_session_request(command)
    sessions: list[_Session] = []
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        for index, (host, path) in enumerate(sockets.items()):
            session = _Session(host, index, time.monotonic())
            out, err = (_create(scratch / f"{index}.{name}") for name in ("out", "err"))
            try:
                _open(session, path, request, (null, out, err))
            finally:
                os.close(out)
                os.close(err)
            sessions.append(session)
    finally:
        os.close(null)

    def collect(limit: float) -> dict[str, Outcome]:
        try:
            _wait(sessions, time.monotonic() + limit)
            return {session.host: _outcome(session, scratch) for session in sessions}
        finally:
            for session in sessions:
                if session.sock is not None:
                    session.sock.close()
            shutil.rmtree(scratch, ignore_errors=True)

    return collect


def _room_for(sockets: int) -> None:
    """Raise the soft limit on open files (often 1024) towards the hard one when a fan-out needs more."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = sockets + SPARE_FDS
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (needed if hard == resource.RLIM_INFINITY else min(hard, needed), hard)
        )


def _create(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)


def _wait(sessions: list[_Session], deadline: float) -> None:
    """Read every master's messages until it closes the socket, or ``deadline``."""
    with selectors.DefaultSelector() as selector:
        for session in sessions:
            if session.sock is not None:
                selector.register(session.sock, selectors.EVENT_READ, session)
        while selector.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            for key, _ in selector.select(left):
                session = key.data
                try:
                    data = session.sock.recv(READ_SIZE)
                except OSError as exc:
                    session.error = session.error or f"lost the SSH master: {exc.strerror or exc}"
                    data = b""
                if data:
                    session.feed(data)
                    continue
                selector.unregister(session.sock)
                session.sock.close()
                session.sock = None
                session.ended = time.monotonic()


def _outcome(session: _Session, scratch: Path) -> Outcome:
    stdout, stderr = (_read(scratch / f"{session.index}.{name}") for name in ("out", "err"))
    if session.ended is None:
        # Still running at the deadline: closing its socket makes the master drop the session.
        duration = time.monotonic() - session.started
        return Outcome(None, stdout, stderr, duration, timed_out=True, error=None, connection_failed=False)
    duration = session.ended - session.started
    if session.exit_code is None:
        error = session.error or "the SSH master ended the session without an exit status"
        return Outcome(SSH_CONNECTION_FAILED, stdout, stderr, duration, False, error, connection_failed=True)
    return Outcome(session.exit_code, stdout, stderr, duration, timed_out=False, error=None, connection_failed=False)


def _read(path: Path) -> str:
    with contextlib.suppress(FileNotFoundError):
        return path.read_bytes().decode(errors="replace")
    return ""
