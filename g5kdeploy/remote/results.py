"""What a remote operation returns per host, and the one error it raises for the whole operation."""

from __future__ import annotations

from dataclasses import dataclass

from g5kdeploy.errors import G5kError


class RemoteError(G5kError):
    """An SSH operation could not be made at all (bad arguments, no connection, a refused host key)."""


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
