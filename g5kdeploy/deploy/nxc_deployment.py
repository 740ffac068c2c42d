"""nxc's deployment descriptor: what its initrd reads from ``deploy=`` on the kernel command line to learn
each node's role and hostname, the user's key and where the compositions are.

nxc 0.7.11 only writes it in ``nxc start``, and above four nodes it hands it out from an HTTP server that
lives inside the nxc process: gone as soon as ``nxc start --start-option no-launch`` returns, long before a
node boots. For ``g5k-image`` the descriptor and the Kadeploy environment are written by the same ``nxc
start`` that then runs kadeploy3 itself. So the agent makes the descriptor here (the same JSON, the same
role and host assignment as nxc's ``populate_deployment_ips``), puts it base64-encoded on the kernel command
line when it fits within nxc's limit, and otherwise serves it from the frontend for the boot's duration only.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from g5kdeploy.errors import ConfigError, G5kError
from g5kdeploy.tools.frontend import Frontend
from g5kdeploy.tools.nxc import composition_roles

#: The longest kernel command line the descriptor may be put on: x86's COMMAND_LINE_SIZE is 2048 bytes, NUL
#: included, and the boot loader may add its own words (Kadeploy's grub adds BOOT_IMAGE=...). nxc's own check,
#: 4096 - 256 for the base64 alone, is only safe because it switches to HTTP above four nodes.
CMDLINE_LIMIT = 2048 - 128
#: Each boot serves from a fresh directory of this prefix in the flake directory: two runs, or a server a
#: crashed agent left behind, never hand out each other's descriptor.
SERVE_PREFIX = ".g5k-deploy-http."
DESCRIPTOR_NAME = "deployment.json"
_DEPLOY_PARAM = re.compile(r"(?<!\S)deploy=\S*")
_SERVING = re.compile(r"Serving HTTP on (\S+) port (\d+)")
SERVER_START_SECONDS = 10.0


@dataclass(frozen=True)
class Placement:
    """One node in the descriptor: its address (the initrd finds itself by it), role and hostname."""

    node: str
    ip: str
    role: str
    host: str


def hostnames(role: str, count: int) -> list[str]:
    """``-r role=N`` in nxc names the hosts ``role1`` .. ``roleN``, even for one."""
    return [f"{role}{index}" for index in range(1, count + 1)]


def place(
    roles_in_order: Sequence[str], members: Mapping[str, Sequence[str]], ips: Mapping[str, str]
) -> list[Placement]:
    """Every node of the run, role by role in compose-info's order, as nxc assigns the machine file's lines.

    Every role must have nodes (``check_roles``)."""
    check_roles(roles_in_order, members)
    placements: list[Placement] = []
    for role in roles_in_order:
        nodes = list(members[role])
        for node, host in zip(nodes, hostnames(role, len(nodes)), strict=True):
            if node not in ips:
                raise G5kError(f"no address for {node}")
            placements.append(Placement(node=node, ip=ips[node], role=role, host=host))
    return placements


def descriptor(
    compose_info: Mapping[str, Any],
    placements: Sequence[Placement],
    *,
    ssh_key: str,
    user: str,
    composition: str = "composition",
) -> dict[str, Any]:
    """The JSON nxc writes to ``deploy/<composition>::<flavour>.json``."""
    roles = composition_roles(compose_info, composition)
    deployment: dict[str, dict[str, str]] = {}
    for placement in placements:
        entry = {"role": placement.role, "host": placement.host}
        role_info = roles[placement.role]
        if isinstance(role_info, str):
            entry["toplevel"] = role_info
        elif isinstance(role_info, dict) and "init" in role_info:
            entry["init"] = str(role_info["init"])
        deployment[placement.ip] = entry
    info: dict[str, Any] = {"ssh_key.pub": ssh_key.strip(), "deployment": deployment}
    if "all" in compose_info:
        info["all"] = compose_info["all"]
    if "compositions_info_path" in compose_info:
        info["compositions_info_path"] = compose_info["compositions_info_path"]
    info["composition"] = composition
    info["user"] = user
    return info


def check_roles(roles_in_order: Sequence[str], members: Mapping[str, Sequence[str]]) -> None:
    """Every composition role has nodes, and every role of the run is the composition's: nxc gives a role
    without nodes a host of its own and takes the next address for it, shifting every later node's role."""
    empty = [role for role in roles_in_order if not members.get(role)]
    extra = sorted(set(members) - set(roles_in_order))
    if empty or extra:
        problems = [f"no node for role {role}" for role in empty]
        problems += [f"role {role} is not in the composition" for role in extra]
        raise ConfigError(
            "the run's roles do not match the composition's: " + "; ".join(problems),
            hint="the composition's roles and reservation.roles must be the same names, each with nodes",
        )


def check_placement(info: Mapping[str, Any], expected: Sequence[Placement]) -> None:
    """nxc's descriptor gives each node the role and host the run expects (nxc placed them, not us)."""
    got = {ip: f"{entry.get('role')}/{entry.get('host')}" for ip, entry in info.get("deployment", {}).items()}
    wrong = [
        f"{p.node} ({p.ip}): {p.role}/{p.host} expected, nxc wrote {got.get(p.ip, 'nothing')}"
        for p in expected
        if got.get(p.ip) != f"{p.role}/{p.host}"
    ]
    if wrong:
        raise G5kError("nxc placed the nodes differently from the run:\n  " + "\n  ".join(wrong))


def cmdline_value(info: Mapping[str, Any]) -> str:
    """nxc's base64 form: the descriptor with each node reduced to its role and host."""
    reduced = {key: value for key, value in info.items() if key != "deployment"}
    reduced["deployment"] = {
        ip: {"role": entry["role"], "host": entry.get("host", entry["role"])}
        for ip, entry in info["deployment"].items()
    }
    return base64.b64encode(json.dumps(reduced).encode()).decode()


def inline_value(info: Mapping[str, Any], others: str, limit: int = CMDLINE_LIMIT) -> str | None:
    """The base64 value when the whole kernel command line (``others`` is the rest of it) still fits within
    ``limit`` bytes, else None (serve it instead)."""
    value = cmdline_value(info)
    return value if len(f"{others} deploy={value}".encode()) <= limit else None


def with_deploy(append: str, value: str) -> str:
    """The kernel command line with its ``deploy=`` parameter set to ``value``."""
    if not _DEPLOY_PARAM.search(append):
        raise G5kError("nxc's kernel command line has no deploy= parameter", hint=append[:300])
    return _DEPLOY_PARAM.sub(lambda _match: f"deploy={value}", append, count=1)


def without_deploy(append: str) -> str:
    """The kernel command line without its ``deploy=`` parameter."""
    return " ".join(_DEPLOY_PARAM.sub("", append).split())


def resolve_ips(frontend: Frontend, nodes: Sequence[str], *, timeout: float) -> dict[str, str]:
    """Each node's IPv4 address as the frontend resolves it (nxc uses ``gethostbyname_ex`` there)."""
    lookups = "; ".join(f"echo {shlex.quote(node)} $(getent ahostsv4 {shlex.quote(node)} | head -n1)" for node in nodes)
    result = frontend.run(lookups, timeout=timeout, what="resolving the nodes' addresses")
    ips: dict[str, str] = {}
    for line in result.stdout.splitlines():
        words = line.split()
        if len(words) >= 2:
            ips[words[0]] = words[1]
    unresolved = [node for node in nodes if node not in ips]
    if unresolved:
        raise G5kError(f"{frontend.host} cannot resolve {', '.join(unresolved)}")
    return ips


@dataclass(frozen=True)
class ServedDescriptor:
    """The descriptor served over HTTP from the frontend; ``pid`` is the server's ``timeout`` wrapper."""

    url: str
    pid: int


def serve_command(text: str, *, bind: str | None, seconds: float) -> str:
    """Write the descriptor in a fresh directory and serve that directory alone, detached, for at most
    ``seconds`` (``timeout`` ends it even if the agent dies). Prints the server's pid and banner."""
    # The address the nodes reach the frontend by: the source address of its default route (no packet is
    # sent by a UDP connect), as nxc's own HTTP server finds it.
    detect = (
        "python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
        's.connect(("10.255.255.255", 1)); print(s.getsockname()[0])\''
    )
    address = shlex.quote(bind) if bind else f"$({detect})"
    return (
        f"set -e; address={address}; "
        '[ -n "$address" ] || { echo "no address to serve the descriptor on" >&2; exit 1; }; '
        f'dir=$(mktemp -d {SERVE_PREFIX}XXXXXX); cd "$dir"; printf %s {shlex.quote(text)} > {DESCRIPTOR_NAME}; '
        f'nohup timeout {max(1, int(seconds))} python3 -u -m http.server --bind "$address" 0 '
        "> server.log 2>&1 < /dev/null & pid=$!; echo pid=$pid; "
        f"for _ in $(seq {int(SERVER_START_SECONDS * 10)}); do grep -q 'Serving HTTP' server.log && break; "
        "kill -0 $pid 2>/dev/null || break; sleep 0.1; done; cat server.log"
    )


def serve(frontend: Frontend, info: Mapping[str, Any], *, bind: str | None, seconds: float) -> ServedDescriptor:
    """Serve the descriptor from the frontend; the URL is what the nodes' initrd fetches."""
    result = frontend.run(
        serve_command(json.dumps(info, indent=2), bind=bind, seconds=seconds),
        timeout=SERVER_START_SECONDS + 20,
        what="serving the deployment descriptor",
    )
    pid = re.search(r"^pid=(\d+)$", result.stdout, re.MULTILINE)
    banner = _SERVING.search(result.stdout)
    if not pid or not banner:
        if pid:
            stop(frontend, int(pid.group(1)))
        raise G5kError(f"the descriptor's HTTP server did not start on {frontend.host}", hint=result.stdout[-500:])
    return ServedDescriptor(url=f"http://{banner.group(1)}:{banner.group(2)}/{DESCRIPTOR_NAME}", pid=int(pid.group(1)))


def stop(frontend: Frontend, pid: int) -> None:
    """Stop the server; never raises (``timeout`` stops it at its deadline anyway). The pid is checked to
    still be the server's: once ``timeout`` has ended it, another of the user's processes may have it."""
    command = f"if grep -q http.server /proc/{pid}/cmdline 2>/dev/null; then kill {pid}; fi; true"
    try:
        frontend.run(command, timeout=30, what="stopping the descriptor's HTTP server")
    except G5kError:
        return
