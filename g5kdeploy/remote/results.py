"""What a remote operation returns per host, and the one error it raises for the whole operation."""

from __future__ import annotations

from dataclasses import dataclass

# What ssh exits with when the connection, not the remote command, failed.
SSH_CONNECTION_FAILED = 255


@dataclass(frozen=True)
class CommandResult:
    host: str
    exit_code: int | None
    stdout: str
    stderr: str
    duration: float
    timed_out: bool
    attempts: int
    error: str | None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and self.error is None


@dataclass(frozen=True)
class TransferResult:
    host: str
    ok: bool
    sha256: str | None
    bytes: int
    error: str | None
    duration: float


@dataclass(frozen=True)
class Outcome:
    """One ssh client's end, before the operation gives it a meaning (a command's or a transfer's)."""

    exit_code: int | None
    stdout: str
    stderr: str
    duration: float
    timed_out: bool
    error: str | None
    connection_failed: bool
    attempts: int = 1
