"""Real sshd "nodes" on loopback addresses, each with its own host key, for the local testbed and the tests.

Node ``i`` is one ``sshd -D`` listening on ``127.0.0.(2+i)`` (another ``127.0.x`` block past 250 nodes); all
nodes of one start share one port, picked free on every address, so several runs can coexist. Everything
(keys, configs, logs, each node's working directory) lives in the given directory, so no root privileges are
needed; ``ssh -F <directory>/ssh_config <name>`` reaches a node under its Grid'5000 name with its host key
really checked.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from g5kdeploy.errors import TestbedError
from g5kdeploy.log import get_logger
from g5kdeploy.process import free_ports, is_running, run, spawn_daemon, wait_gone
from g5kdeploy.results import GuestPorts
from g5kdeploy.testbeds.guests import (
    GUEST_NODE_EXPORTER_PORT,
    GUEST_SSH_PORT,
    Accelerator,
    console_tail,
    spawn_guest,
    stop_guests,
    write_guest_files,
)
from g5kdeploy.tools.kernel import BuiltKernel
from g5kdeploy.waiting import wait_until

log = get_logger(__name__)

SSHD_MARK = "sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
NODES_PER_BLOCK = 250
PORT_ATTEMPTS = 3


@dataclass(frozen=True)
class LoopbackNode:
    name: str
    address: str
    port: int
    workdir: Path
    pid: int
    #: A QEMU guest (its pid is vng's) rather than an sshd on the host.
    guest: bool = False


@dataclass(frozen=True)
class LoopbackNodes:
    directory: Path
    ssh_config: Path
    known_hosts: Path
    key: Path
    nodes: tuple[LoopbackNode, ...]
    #: The ports forwarded to the guests (their ssh port is the run's), when some nodes are guests.
    guest_ports: GuestPorts | None = None


@dataclass(frozen=True)
class GuestSetup:
    """Which nodes are QEMU guests, and how to boot them (see :mod:`g5kdeploy.testbeds.guests`)."""

    names: frozenset[str]
    vng: Path
    kernel: BuiltKernel
    accelerator: Accelerator
    memory_mib: int
    boot_timeout: float
    node_exporter_args: tuple[str, ...]


def require_sshd() -> Path:
    """The sshd binary; sshd re-executes itself, so the path must be absolute."""
    for candidate in ("/usr/sbin/sshd", shutil.which("sshd")):
        if candidate and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise TestbedError("sshd not found", hint="apt-get install openssh-server")


def loopback_address(index: int) -> str:
    block, offset = divmod(index, NODES_PER_BLOCK)
    return f"127.0.{block}.{2 + offset}"


def start_nodes(
    directory: Path, names: Sequence[str], *, timeout: float = 30.0, guests: GuestSetup | None = None
) -> LoopbackNodes:
    """Start one sshd (or QEMU guest) per name and return once every node answers the SSH banner.

    Loopback nodes have ``timeout`` seconds, guests their boot deadline; a guest that does not come up is
    named with the tail of its console log. On any failure everything started is stopped.
    """
    if len(set(names)) != len(names) or not names:
        raise TestbedError(f"node names must be distinct and non-empty, got {list(names)!r}")
    sshd = require_sshd()
    deadline = time.monotonic() + timeout
    directory = directory.resolve()
    key = _prepare_directory(directory)
    addresses = [loopback_address(index) for index in range(len(names))]
    guest_names = guests.names & set(names) if guests else frozenset()
    for attempt in range(1, PORT_ATTEMPTS + 1):
        # The guests' exporters are forwarded on ports of their own, the same on every address.
        port, *extra = free_ports(addresses, 3 if guest_names else 1)
        ports = GuestPorts(ssh=port, node_exporter=extra[0], ebpf_exporter=extra[1]) if guest_names else None
        nodes = _write_node_configs(directory, names, addresses, port)
        pids: dict[str, int] = {}
        try:
            for name, address, node_dir in zip(names, addresses, nodes, strict=True):
                if name in guest_names:
                    assert guests is not None and ports is not None
                    pids[name] = _spawn_guest(guests, node_dir, name, address, ports)
                else:
                    pids[name] = _spawn_sshd(sshd, node_dir)
            booted_by = time.monotonic() + (guests.boot_timeout if guests else 0.0)
            starting = [
                _Starting(name, address, pids[name], node_dir, name in guest_names)
                for name, address, node_dir in zip(names, addresses, nodes, strict=True)
            ]
            _wait_ready([node for node in starting if not node.guest], port, deadline=deadline)
            _wait_ready([node for node in starting if node.guest], port, deadline=booted_by)
        except _PortTaken:
            # Another program bound the port between our bind test and sshd's: try another one.
            _stop(pids, guest_names)
            if attempt == PORT_ATTEMPTS:
                raise TestbedError(f"no free loopback port after {PORT_ATTEMPTS} attempts") from None
            continue
        except BaseException:
            _stop(pids, guest_names)
            raise
        result = LoopbackNodes(
            directory=directory,
            ssh_config=_write_ssh_config(directory, names, addresses, port, key),
            known_hosts=_write_known_hosts(directory, names, addresses, port),
            key=key,
            nodes=tuple(
                LoopbackNode(
                    name=name,
                    address=address,
                    port=port,
                    workdir=nodes[i] / "work",
                    pid=pids[name],
                    guest=name in guest_names,
                )
                for i, (name, address) in enumerate(zip(names, addresses, strict=True))
            ),
            guest_ports=ports,
        )
        log.info("nodes started", nodes=len(names), guests=len(guest_names), port=port, directory=str(directory))
        return result
    raise AssertionError("unreachable")


def _spawn_guest(guests: GuestSetup, node_dir: Path, name: str, address: str, ports: GuestPorts) -> int:
    # Inside the guest, sshd listens on the guest's own port 22; the host reaches it through the forward.
    config = (node_dir / "sshd_config").read_text()
    config = "\n".join(
        f"ListenAddress 0.0.0.0:{GUEST_SSH_PORT}" if line.startswith("ListenAddress ") else line
        for line in config.splitlines()
    )
    script = write_guest_files(
        node_dir,
        name=name,
        sshd_config=config + "\n",
        node_exporter_args=[f"--web.listen-address=0.0.0.0:{GUEST_NODE_EXPORTER_PORT}", *guests.node_exporter_args],
    )
    (node_dir / "console.log").write_bytes(b"")
    return spawn_guest(
        guests.vng, guests.kernel, node_dir, name=name, address=address, ports=ports,
        memory_mib=guests.memory_mib, accelerator=guests.accelerator, init_script=script,
    )  # fmt: skip


def _stop(pids: dict[str, int], guest_names: frozenset[str]) -> None:
    stop_guests([pid for name, pid in pids.items() if name in guest_names])
    stop_nodes([pid for name, pid in pids.items() if name not in guest_names])


def stop_nodes(pids: Iterable[int], *, timeout: float = 10.0) -> None:
    """Stop each sshd by PID, with every connection it accepted, if the PID is still an sshd."""
    for pid in pids:
        if not is_running(pid, expect=SSHD_MARK):
            continue
        # sshd puts each accepted connection in a session of its own (setsid), so its process group does not
        # reach them: end those sessions first, or an open connection (a ControlMaster) would outlive the node.
        for child in _children(pid):
            _kill_session(child)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
        # An sshd started by someone else (a restart after kexec) may not lead its process group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
        wait_gone(pid, timeout=timeout)


def forget_keys(directory: Path) -> None:
    """Delete the private keys ``start_nodes`` made in ``directory`` (the client's and every node's host key):
    a stopped run keeps none in its results. Starting the nodes again makes new ones."""
    for key in [directory / "keys" / "id_ed25519", *directory.glob("nodes/*/ssh_host_ed25519_key")]:
        key.unlink(missing_ok=True)
        key.with_suffix(".pub").unlink(missing_ok=True)


def node_is_up(node: LoopbackNode) -> bool:
    return is_running(node.pid, expect=SSHD_MARK) and _banner(node.address, node.port)


class _PortTaken(Exception):
    pass


def _prepare_directory(directory: Path) -> Path:
    (directory / "keys").mkdir(parents=True, exist_ok=True)
    (directory / "keys").chmod(0o700)
    if os.geteuid() == 0:
        # A root sshd needs its privilege-separation directory; an unprivileged one does not use it.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    key = directory / "keys" / "id_ed25519"
    if not key.exists():
        _keygen(key, comment="g5kdeploy-loopback")
    authorized = directory / "authorized_keys"
    authorized.write_text(key.with_suffix(".pub").read_text())
    authorized.chmod(0o600)
    return key


def _keygen(path: Path, *, comment: str) -> None:
    keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)]
    run(keygen, timeout=30, what=f"make the SSH key {path.name}")


def _write_node_configs(directory: Path, names: Sequence[str], addresses: Sequence[str], port: int) -> list[Path]:
    node_dirs = []
    for name, address in zip(names, addresses, strict=True):
        node_dir = directory / "nodes" / name
        (node_dir / "work").mkdir(parents=True, exist_ok=True)
        host_key = node_dir / "ssh_host_ed25519_key"
        if not host_key.exists():
            _keygen(host_key, comment=name)
        (node_dir / "sshd_config").write_text(
            f"ListenAddress {address}:{port}\n"
            f"HostKey {host_key}\n"
            f"PidFile {node_dir / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {directory / 'authorized_keys'}\n"
            "PermitRootLogin prohibit-password\n"
            "PubkeyAuthentication yes\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UsePAM no\n"
            "StrictModes no\n"
            "UseDNS no\n"
            "AllowTcpForwarding yes\n"
            # Many parallel pre-auth connections (fan-out, a node used as a jump host) must not be dropped.
            "MaxStartups 200:30:400\n"
            "MaxSessions 50\n"
            # All nodes share one hostname: this is how a command learns which node it runs on. They also share
            # the developer's home, whose ~/.bashrc bash reads for every ssh command at level 1 (pyenv init
            # there costs 0.2 s a command); SHLVL=1 keeps that shell setup, which no node has, out of them.
            f'SetEnv "G5K_NODE={name}" "G5K_NODE_DIR={node_dir / "work"}" SHLVL=1\n'
            f"Subsystem sftp {SFTP_SERVER}\n"
        )
        node_dirs.append(node_dir)
    return node_dirs


def _spawn_sshd(sshd: Path, node_dir: Path) -> int:
    log_path = node_dir / "sshd.log"
    log_path.write_bytes(b"")
    return spawn_daemon([str(sshd), "-D", "-e", "-f", str(node_dir / "sshd_config")], log_path=log_path)


@dataclass(frozen=True)
class _Starting:
    """A node just started: its sshd's (or its guest's vng's) PID and its directory."""

    name: str
    address: str
    pid: int
    directory: Path
    guest: bool


def _wait_ready(nodes: Sequence[_Starting], port: int, *, deadline: float) -> None:
    """Return once every node answers the SSH banner; an error as soon as one exits, or at ``deadline``."""
    waiting = list(nodes)

    def all_answer() -> bool:
        for node in list(waiting):
            if _banner(node.address, port):
                waiting.remove(node)
            # Existence only: right after the fork, before exec, the child's command line is still Python's.
            elif not is_running(node.pid):
                raise _exited(node)
        return not waiting

    guests = [node.name for node in nodes if node.guest]
    if guests:
        what = f"the VM node{'s' if len(guests) > 1 else ''} {', '.join(guests)} to answer SSH (vm.boot_timeout)"
    else:
        what = f"sshd to answer on port {port}"
    wait_until(
        all_answer,
        timeout=deadline - time.monotonic(),
        what=what,
        interval=0.02,
        detail=lambda: _silence(waiting),
    )


def _exited(node: _Starting) -> Exception:
    if node.guest:
        return TestbedError(
            f"the VM node {node.name} stopped while booting; its console ends with:\n{console_tail(node.directory)}"
        )
    tail = (node.directory / "sshd.log").read_text(errors="replace")[-2000:]
    if "Address already in use" in tail:
        return _PortTaken()
    return TestbedError(f"sshd of {node.name} exited at start; its log ends with:\n{tail}")


def _silence(nodes: Sequence[_Starting]) -> str:
    """Who still does not answer; a guest with its console's tail, where its boot got stuck."""
    if any(node.guest for node in nodes):
        return "\n".join(f"{node.name}'s console ends with:\n{console_tail(node.directory)}" for node in nodes)
    return "still silent: " + ", ".join(node.name for node in nodes)


def _banner(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=1.0) as connection:
            return connection.recv(4) == b"SSH-"
    except OSError:
        return False


def _write_ssh_config(directory: Path, names: Sequence[str], addresses: Sequence[str], port: int, key: Path) -> Path:
    blocks = [f"Host {name}\n  HostName {address}\n" for name, address in zip(names, addresses, strict=True)]
    # ssh keeps the first value it reads, so the per-node HostName blocks come before the common settings.
    blocks.append(
        "Host *\n"
        f"  User {getpass.getuser()}\n"
        f"  Port {port}\n"
        f"  IdentityFile {key}\n"
        "  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {directory / 'known_hosts'}\n"
        "  StrictHostKeyChecking yes\n"
        "  BatchMode yes\n"
        "  ConnectTimeout 5\n"
        "  LogLevel ERROR\n"
    )
    path = directory / "ssh_config"
    path.write_text("".join(blocks))
    return path


def _write_known_hosts(directory: Path, names: Sequence[str], addresses: Sequence[str], port: int) -> Path:
    lines = []
    for name, address in zip(names, addresses, strict=True):
        key_type, key_data = (directory / "nodes" / name / "ssh_host_ed25519_key.pub").read_text().split()[:2]
        lines.append(f"[{address}]:{port} {key_type} {key_data}\n")
    path = directory / "known_hosts"
    path.write_text("".join(lines))
    return path


def _proc_stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _children(pid: int) -> list[int]:
    # Fields after the command name: state, ppid, pgrp, session, ...
    return [other for other in _all_pids() if (stat := _proc_stat(other)) and stat[1] == str(pid)]


def _kill_session(session: int) -> None:
    for member in _all_pids():
        stat = _proc_stat(member)
        if stat and stat[3] == str(session):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(member, signal.SIGKILL)
