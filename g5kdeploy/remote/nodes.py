"""A run's nodes, by name or role: a command on many of them at once, or the ``ssh`` command line for one.

Nodes are named as the run knows them (``gros-12.nancy.grid5000.fr``) or by their short name (``gros-12``);
a role stands for its nodes. Both go through the run's ``ssh_config`` (its keys and known hosts; on
Grid'5000 the access gateway when outside), as every phase does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from g5kdeploy.errors import ConfigError
from g5kdeploy.remote.results import CommandResult
from g5kdeploy.remote.ssh import SshRunner
from g5kdeploy.results import NodeAccess, RunRecord


def reachable(record: RunRecord) -> NodeAccess:
    """How to reach the run's nodes; :class:`ConfigError` when it has none (not reserved yet, or released)."""
    if record.released_at:
        raise ConfigError(
            f"run {record.run_id} was released at {record.released_at}: its nodes are no longer its own",
            hint=f"g5k run --resume {record.run_id} reserves them again, or start a new run",
        )
    if record.access is None or not record.roles:
        raise ConfigError(
            f"run {record.run_id} has no nodes yet", hint=f"reserve them first: g5k reserve --run {record.run_id}"
        )
    return record.access


def _ordered(record: RunRecord) -> dict[str, list[str]]:
    """The run's roles with their nodes, in the playbook's order of roles."""
    order = list(record.playbook.reservation.roles)
    names = sorted(record.roles, key=lambda role: order.index(role) if role in order else len(order))
    return {role: list(record.roles[role]) for role in names}


def _unknown(record: RunRecord, what: str, name: str) -> ConfigError:
    """``name`` names nothing of the run: the error lists its roles and nodes."""
    roles = _ordered(record)
    listing = "; ".join(f"{role}: {', '.join(members)}" for role, members in roles.items())
    kind = "node or role" if what == "NODE|ROLE" else "node"
    return ConfigError(
        f"{what}: run {record.run_id} has no {kind} {name!r}",
        hint=f"its roles and nodes: {listing} (a node may be named short, e.g. gros-12)",
    )


def _node(record: RunRecord, name: str, what: str) -> str:
    nodes = {node for members in record.roles.values() for node in members}
    if name in nodes:
        return name
    short = [node for node in nodes if node.split(".")[0] == name]
    if len(short) == 1:
        return short[0]
    raise _unknown(record, what, name)


def target(record: RunRecord, name: str | None = None) -> str:
    """The node ``name`` stands for: a node, a role's first node, or (None) the first node of the first role."""
    roles = _ordered(record)
    if name is None:
        first = next((members[0] for members in roles.values() if members), None)
        if first is None:
            raise ConfigError(f"run {record.run_id} has no nodes", hint=f"g5k reserve --run {record.run_id}")
        return first
    if roles.get(name):
        return roles[name][0]
    return _node(record, name, "NODE|ROLE")


def select(record: RunRecord, *, roles: Sequence[str] = (), nodes: Sequence[str] = ()) -> list[str]:
    """The nodes of ``roles`` and the ``nodes`` named, without repeats; every node of the run when neither is given."""
    known = _ordered(record)
    chosen: list[str] = []
    for role in roles:
        if role not in known:
            raise ConfigError(
                f"--role: run {record.run_id} has no role {role!r}", hint=f"its roles: {', '.join(known)}"
            )
        chosen += known[role]
    chosen += [_node(record, name, "--nodes") for name in nodes]
    if not roles and not nodes:
        chosen = [node for members in known.values() for node in members]
    return list(dict.fromkeys(chosen))


def ssh_argv(access: NodeAccess, node: str, command: str | None = None) -> list[str]:
    """``ssh`` through the run's ``ssh_config`` to ``node``: a login shell, or ``command`` when given."""
    argv = ["ssh", "-F", access.ssh_config]
    if command is None:
        # The run's ssh_config is written for batch commands; a person at a terminal gets one.
        return [*argv, "-t", node]
    return [*argv, node, command]


def run_on_nodes(
    record: RunRecord,
    command: str,
    *,
    roles: Sequence[str] = (),
    nodes: Sequence[str] = (),
    timeout: float = 60.0,
) -> dict[str, CommandResult]:
    """``command`` on the selected nodes at once, as the bench phase runs its workload; a result per node.

    It runs in the login directory, with ``G5K_NODE_DIR`` naming the node's working directory as in the phases'
    commands. A node that fails (non-zero exit, time-out, no connection) has a result that says so; only an
    operation that cannot start at all raises.
    """
    if not command.strip():
        raise ConfigError("COMMAND: empty", hint="give the command after --, e.g. g5k exec RUN -- uname -r")
    if timeout <= 0:
        raise ConfigError(f"--timeout: {timeout:g} s; give a positive number of seconds")
    access = reachable(record)
    chosen = select(record, roles=roles, nodes=nodes)
    with SshRunner(Path(access.ssh_config)) as runner:
        return runner.run(chosen, command, timeout=timeout, env=access.workdir_env(chosen))
