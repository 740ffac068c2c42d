"""The site's frontend as the Nix, nxc and image tools use it: one host over SSH, commands run in one directory."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

from g5kdeploy.errors import G5kError
from g5kdeploy.remote import CommandResult, SshRunner
from g5kdeploy.remote.transfer import remote_path


@dataclass(frozen=True)
class Frontend:
    """Where the Nix commands run: a host reached by ``runner``, in the flake directory ``directory``."""

    runner: SshRunner
    host: str
    directory: str
    env: Mapping[str, str] = field(default_factory=dict)

    def attempt(self, command: str, *, timeout: float) -> CommandResult:
        """``command`` in the flake directory, whatever its outcome."""
        full = f"cd {remote_path(self.directory)} && {command}"
        return self.runner.run([self.host], full, timeout=timeout, env=dict(self.env) or None)[self.host]

    def run(self, command: str, *, timeout: float, what: str) -> CommandResult:
        """``command`` in the flake directory; G5kError with the end of stderr when it fails."""
        result = self.attempt(command, timeout=timeout)
        if not result.ok:
            raise G5kError(f"{what} failed on {self.host}: {describe_failure(result)}", hint=f"the command: {command}")
        return result

    def file_size(self, path: str, *, timeout: float) -> int:
        """The size of ``path`` here (the nodes read nxc's kernel and initrd from the same NFS home)."""
        result = self.run(f"stat -L -c %s {shlex.quote(path)}", timeout=timeout, what=f"reading the size of {path}")
        try:
            return int(result.stdout.strip())
        except ValueError:
            raise G5kError(f"unexpected size of {path}: {result.stdout[:100]!r}") from None


def describe_failure(result: CommandResult) -> str:
    """A failed command in one line: its time-out, or its exit code and the last lines of its stderr."""
    if result.timed_out:
        return f"timed out after {result.duration:.0f} s"
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    tail = " | ".join(lines[-5:])
    return f"exit {result.exit_code}: {tail or result.error or 'no output'}"
