"""One interactive fabric connection to a node, with real host-key checking, and local port forwarding.

fabric reads HostName, User, Port, IdentityFile and ProxyJump from the ssh_config but ignores
``UserKnownHostsFile`` and accepts unknown host keys; here the known_hosts file is loaded and any key not
in it is refused.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import fabric
import paramiko

from g5kdeploy.errors import RemoteError
from g5kdeploy.process import free_ports
from g5kdeploy.waiting import wait_until

CONNECT_TIMEOUT = 10.0
FORWARD_READY_TIMEOUT = 5.0
LOCALHOST = "127.0.0.1"


def connect(
    host: str, ssh_config: Path, *, known_hosts: Path, gateway: fabric.Connection | None = None
) -> fabric.Connection:
    """An open connection to ``host``; a ``gateway`` is opened first, as several connections may share it."""
    config = fabric.Config(runtime_ssh_path=str(ssh_config))
    connection = fabric.Connection(host, config=config, gateway=gateway, connect_timeout=CONNECT_TIMEOUT)
    connection.connect_kwargs.update({"look_for_keys": False, "allow_agent": False})
    connection.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        connection.client.load_host_keys(str(known_hosts))
        # Members racing to open a shared, unopened gateway hang or fail (fabric issue #2065).
        if gateway is not None and not gateway.is_connected:
            gateway.open()
        connection.open()
    except (paramiko.SSHException, paramiko.hostkeys.InvalidHostKey, OSError) as error:
        connection.close()
        raise RemoteError(
            f"cannot connect to {host}: {error or type(error).__name__}",
            hint="check that the node is up and that its host key is in the known_hosts file",
        ) from error
    return connection


@contextlib.contextmanager
def forward_local(
    connection: fabric.Connection, remote_port: int, *, remote_host: str, local_port: int = 0
) -> Iterator[int]:
    """Forward a local port to ``remote_host:remote_port`` as seen from the node; yields the local port."""
    if local_port == 0:
        local_port = free_ports([LOCALHOST])[0]
    with connection.forward_local(local_port, remote_port=remote_port, remote_host=remote_host):
        # fabric returns before its listener is bound: wait until it accepts.
        _wait_listening(local_port)
        yield local_port


def _wait_listening(port: int) -> None:
    wait_until(
        lambda: _accepts(port),
        timeout=FORWARD_READY_TIMEOUT,
        what=f"the local forward on port {port} to listen",
        interval=0.02,
    )


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((LOCALHOST, port), timeout=1.0):
            return True
    except OSError:
        return False
