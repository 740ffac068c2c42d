"""SSH to Grid'5000 nodes: an ``ssh_config`` per run, through the access gateway when outside the platform.

From outside, every node is reached with ``ProxyJump`` through ``access.grid5000.fr`` under the user's
login; on a frontend or node the nodes are reached directly. The gateway's host key must already be known
(``StrictHostKeyChecking yes``); node keys are accepted on first sight into the run's own ``known_hosts``
and checked from then on (``accept-new``): nodes are reinstalled between jobs, so their keys cannot be
known in advance, and a key that changes during a run is refused.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

from g5kdeploy.errors import ConfigError

GATEWAY = "access.grid5000.fr"
KEY_NAMES = ("id_ed25519", "id_ecdsa", "id_rsa")


def find_key(configured: str | None, home: Path) -> Path:
    """The private key to use: the playbook's ``ssh.key``, else the first usual key in ``~/.ssh``."""
    if configured:
        key = Path(configured).expanduser()
        if not key.is_file():
            raise ConfigError(f"ssh.key: {key} does not exist", hint="point ssh.key at your private key")
        return key
    for name in KEY_NAMES:
        if (home / ".ssh" / name).is_file():
            return home / ".ssh" / name
    raise ConfigError(
        f"no SSH key in {home / '.ssh'} ({', '.join(KEY_NAMES)})",
        hint="create one with ssh-keygen -t ed25519 and add its public part to your Grid'5000 account, "
        "or set ssh.key in the playbook",
    )


def grid5000_ssh_config(
    nodes: Sequence[str], *, login: str, key: Path, known_hosts: Path, inside: bool, user: str | None = None
) -> str:
    """The text of an ``ssh_config`` that reaches ``nodes`` (FQDNs) as ``user`` (default: ``login``)."""
    lines: list[str] = []
    if not inside:
        lines += [
            f"Host {GATEWAY}",
            f"  User {login}",
            f"  IdentityFile {key}",
            "  IdentitiesOnly yes",
            "  StrictHostKeyChecking yes",
            "  BatchMode yes",
            "  ConnectTimeout 20",
            "",
        ]
    for node in nodes:
        lines.append(f"Host {node}")
        if not inside:
            lines.append(f"  ProxyJump {GATEWAY}")
        lines += [
            f"  User {user or login}",
            f"  IdentityFile {key}",
            "  IdentitiesOnly yes",
            f"  UserKnownHostsFile {known_hosts}",
            "  StrictHostKeyChecking accept-new",
            "  BatchMode yes",
            "  ConnectTimeout 20",
            "  ServerAliveInterval 15",
            "  LogLevel ERROR",
            "",
        ]
    return "\n".join(lines)


def public_key(private: Path) -> str:
    """The public half of ``private`` (``<key>.pub``), any key type."""
    path = private.with_name(private.name + ".pub")
    try:
        text = path.read_text().strip()
    except OSError:
        raise ConfigError(
            f"{path} is missing: the kexec flavours install your public key for root on the nodes",
            hint=f"recreate it with: ssh-keygen -y -f {private} > {path}",
        ) from None
    if not text.startswith(("ssh-", "ecdsa-", "sk-")):
        raise ConfigError(f"{path} does not look like an SSH public key")
    return text


def root_key_command(key: str, walltime: int) -> str:
    """A job command that lets ``key`` log in as root on every node of the job, then holds the nodes.

    It is what nxc's ``g5k_script`` helper does for the kexec flavours, without its hard-coded
    ``id_rsa.pub``: run on the job's head node, it asks ``sudo-g5k`` on each node to append the key.
    """
    append = "sudo-g5k sh -c 'mkdir -p /root/.ssh && cat >> /root/.ssh/authorized_keys'"
    return (
        f'for node in $(sort -u "$OAR_NODEFILE"); do '
        f'echo {shlex.quote(key)} | ssh -o BatchMode=yes "$node" {shlex.quote(append)}; '
        f"done; sleep {walltime}"
    )
