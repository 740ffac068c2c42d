"""OpenSSH ControlMaster sockets: where each host's lives, whether it is up, and shutting them all down.

A host is "warm" when a master answers on its socket: new ssh clients to it then cost one local fork and
one channel, not a TCP connection, a key exchange and an authentication. The socket path is what ssh
itself computes for ``%C`` (read once per host from ``ssh -G``), so ssh and this module always agree,
also for two names that reach the same node.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
from collections.abc import Sequence
from pathlib import Path

from execo import Process

from g5kdeploy.errors import ConfigError, RemoteError, ToolError
from g5kdeploy.process import run

# sockaddr_un.sun_path is 108 bytes with its NUL; %C expands to 40 hex digits.
UNIX_PATH_MAX = 107
CONTROL_NAME_LENGTH = 40
LOOKUP_TIMEOUT = 10.0
EXIT_TIMEOUT = 5.0


class Masters:
    def __init__(self, ssh_config: Path, *, control_dir: Path | None, persist: int, connect_timeout: float) -> None:
        self._owned = control_dir is None
        if control_dir is None:
            # A short private directory under /tmp: a run directory may be too deep for a Unix socket path.
            control_dir = Path(tempfile.mkdtemp(prefix="g5k-ssh-", dir="/tmp"))
        else:
            control_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if len(str(control_dir)) + 1 + CONTROL_NAME_LENGTH > UNIX_PATH_MAX:
            raise ConfigError(
                f"control directory {control_dir} is too long for SSH control sockets",
                hint="pass a shorter control_dir, or none to use a private directory under /tmp",
            )
        self.directory = control_dir
        self.ssh_options: tuple[str, ...] = (
            "-F", str(ssh_config),
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={max(1, round(connect_timeout))}",
            "-o", "ControlMaster=auto",
            "-o", f"ControlPath={control_dir}/%C",
            "-o", f"ControlPersist={persist}",
        )  # fmt: skip
        self._paths: dict[str, Path] = {}

    def lookup(self, hosts: Sequence[str]) -> None:
        """Learn the socket path of every host not seen yet, all ``ssh -G`` at once."""
        new = [host for host in dict.fromkeys(hosts) if host not in self._paths]
        processes = {host: Process(("ssh", "-G", *self.ssh_options, host), nolog_exit_code=True) for host in new}
        for process in processes.values():
            process.start()
        for host, process in processes.items():
            process.wait(LOOKUP_TIMEOUT)
            if not process.ended:
                process.kill()
            paths = [line.split(" ", 1)[1] for line in process.stdout.splitlines() if line.startswith("controlpath ")]
            if not process.ok or not paths:
                raise RemoteError(
                    f"ssh cannot resolve {host!r}: {process.stderr.strip() or 'ssh -G failed'}",
                    hint="check the host name and the ssh_config",
                )
            self._paths[host] = Path(paths[0])

    def socket(self, host: str) -> Path:
        """The control socket of ``host``'s master (after :meth:`lookup`)."""
        return self._paths[host]

    def is_up(self, host: str) -> bool:
        """Whether a master accepts connections on the host's socket (a dead master can leave its file)."""
        path = self._paths.get(host)
        if path is None or not path.exists():
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            try:
                probe.connect(str(path))
            except OSError:
                return False
        return True

    def close(self) -> None:
        for host in list(self._paths):
            if not self.is_up(host):
                continue
            # A master that does not answer in time still ends by itself after ControlPersist.
            with contextlib.suppress(ToolError):
                exit_master = ["ssh", *self.ssh_options, "-O", "exit", host]
                run(exit_master, timeout=EXIT_TIMEOUT, what=f"stop the SSH master of {host}", check=False)
        self._paths.clear()
        if self._owned:
            with contextlib.suppress(OSError):
                shutil.rmtree(self.directory)
