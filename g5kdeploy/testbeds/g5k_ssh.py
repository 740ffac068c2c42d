"""SSH to Grid'5000 nodes: an ``ssh_config`` per run, through the access gateway when outside the platform.

From outside, every node is reached with ``ProxyJump`` through ``access.grid5000.fr`` under the user's
login; on a frontend or node the nodes are reached directly. The gateway's host key must already be known
(``StrictHostKeyChecking yes``); node keys are accepted on first sight into the run's own ``known_hosts``
and checked from then on (``accept-new``): nodes are reinstalled between jobs, so their keys cannot be
known in advance, and a key that changes during a run is refused.
"""

from __future__ import annotations

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
