"""The deploy phase: put the experiment's system on every node, prove it, retry, drop or fail.

The method does the work (artifacts, Kadeploy, kexec); this phase owns the policy, per the lessons of
colmena, deploy-rs and Kadeploy: all nodes at once, one deadline for the phase, KO nodes retried up to
``retries`` times, good nodes never undone because another failed, nodes that still fail dropped while every
role keeps ``min_nodes``, and each node's state in the ledger so a rerun touches only unverified nodes.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from g5kdeploy.deploy.artifacts import ArtifactsMethod
from g5kdeploy.deploy.base import DeployContext, DeployMethod
from g5kdeploy.deploy.kadeploy import KadeployMethod
from g5kdeploy.deploy.nxc_image import NxcImageMethod
from g5kdeploy.deploy.nxc_kexec import NxcKexecMethod
from g5kdeploy.deploy.verify import boot_ids, verify
from g5kdeploy.errors import ConfigError, DeployError
from g5kdeploy.log import get_logger
from g5kdeploy.plans import DeployPlan
from g5kdeploy.playbook import Deploy
from g5kdeploy.remote import SshRunner
from g5kdeploy.results import DeployRecord, NodeDeployState, RunRecord, RunStore, finish_phase, start_phase
from g5kdeploy.testbeds.base import Testbed

log = get_logger(__name__)
PHASE = "deploy"
#: Called with (node, what it is doing, attempt) whenever a node changes step.
OnNode = Callable[[str, str, int], None]


@dataclass
class DeploySummary:
    plan: DeployPlan
    verified: list[str] = field(default_factory=list)
    dropped: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False


def method_for(deploy: Deploy, context: DeployContext) -> DeployMethod:
    match deploy.method:
        case "artifacts":
            return ArtifactsMethod()
        case "kadeploy":
            return KadeployMethod.for_context(context)
        case "nxc" if deploy.kexec:
            return NxcKexecMethod.for_context(context)
        case "nxc":
            return NxcImageMethod.for_context(context)
    raise ConfigError(f"deploy.method: unknown method {deploy.method!r}")


def run_deploy(
    record: RunRecord,
    store: RunStore,
    testbed: Testbed,
    *,
    dry_run: bool = False,
    on_node: OnNode | None = None,
) -> DeploySummary:
    playbook = record.playbook
    deploy = playbook.deploy
    if deploy is None:
        raise ConfigError(
            f"{record.playbook_path}: no deploy section",
            hint="add deploy: {method: artifacts} (local testbed) or {method: nxc} / {method: kadeploy, ...}",
        )
    if not record.roles:
        raise ConfigError(f"run {record.run_id} has no nodes yet", hint=f"g5k reserve --run {record.run_id}")
    nodes = sorted({node for members in record.roles.values() for node in members})
    notify = on_node or (lambda _node, _step, _attempt: None)
    if not dry_run:
        start_phase(record, PHASE)
        store.save(record)
    error: str | None = None
    try:
        access = testbed.access(record, store)
        api = testbed.open(record, store)
        with SshRunner(Path(access.ssh_config)) as runner:
            context = DeployContext(
                record, store, playbook, runner, api, testbed.clock, dict(access.workdirs),
                kernel=testbed.experiment_kernel(record), ebpf_nodes=testbed.ebpf_nodes(record),
            )  # fmt: skip
            method = method_for(deploy, context)
            if record.deploy is None or record.deploy.method != method.name:
                record.deploy = DeployRecord(method=method.name, marker=secrets.token_hex(6))
            ledger = record.deploy
            for node in nodes:
                ledger.nodes.setdefault(node, NodeDeployState())
            todo = [node for node in nodes if ledger.nodes[node].state != "verified"]
            for node in todo:
                notify(node, "planning", ledger.nodes[node].attempts)
            plan = method.plan(context, todo).model_copy(
                update={"deadline_s": deploy.timeout, "retries": deploy.retries, "to_deploy": todo}
            )
            ledger.plan = plan
            if dry_run:
                return DeploySummary(plan=plan, dry_run=True)
            store.save(record)
            _rounds(context, method, deploy, ledger, todo, notify, access.workdir_env(todo))
            summary = _settle(record, deploy, ledger, plan)
            artifacts = record.playbook.bench.workload.artifacts if record.playbook.bench else []
            record.provided = [a for a in artifacts if method.pushes_artifacts or a in method.system_artifacts]
            record.ebpf_toggle = method.ebpf_toggle
            return summary
    except BaseException as exc:
        error = str(exc) or type(exc).__name__
        raise
    finally:
        if not dry_run:
            finish_phase(record, PHASE, error=error)
            store.save(record)


def _rounds(
    context: DeployContext,
    method: DeployMethod,
    deploy: Deploy,
    ledger: DeployRecord,
    todo: list[str],
    notify: OnNode,
    env: dict[str, str] | None,
) -> None:
    clock = context.clock
    deadline = clock.now() + deploy.timeout
    for _ in range(deploy.retries + 1):
        if not todo or clock.now() >= deadline:
            break
        expectation = method.expectation(context)
        before = boot_ids(context.runner, todo, env=env) if expectation.rebooted else {}
        for node in todo:
            ledger.nodes[node].attempts += 1
            ledger.nodes[node].state = "pending"
            notify(node, "booting", ledger.nodes[node].attempts)
        context.store.save(context.record)
        outcomes = method.boot(context, todo, deadline=deadline)
        booted = [node for node in todo if outcomes[node].ok]
        for node in booted:
            notify(node, "verifying", ledger.nodes[node].attempts)
        verdicts = verify(
            context.runner, booted, method.expectation(context), marker=ledger.marker, boot_ids_before=before, env=env
        )
        still: list[str] = []
        for node in todo:
            state = ledger.nodes[node]
            outcome = outcomes[node]
            verdict = verdicts.get(node)
            state.deployment = outcome.deployment or state.deployment
            if verdict is not None and verdict.ok:
                state.state, state.reason, state.facts = "verified", None, verdict.facts
                notify(node, "verified", state.attempts)
                continue
            state.state = "failed"
            state.reason = outcome.reason if not outcome.ok else (verdict.reason if verdict else "not verified")
            state.log_tail = list(outcome.log[-20:])
            notify(node, f"failed: {state.reason}", state.attempts)
            log.warning("node not deployed", node=node, attempt=state.attempts, reason=state.reason)
            if outcome.retriable:
                still.append(node)
        context.store.save(context.record)
        todo = still


def _settle(record: RunRecord, deploy: Deploy, ledger: DeployRecord, plan: DeployPlan) -> DeploySummary:
    """Drop failed nodes if every role keeps min_nodes; otherwise fail with every node's reason."""
    short: list[str] = []
    for role, members in record.roles.items():
        good = [node for node in members if ledger.nodes[node].state == "verified"]
        needed = len(members) if deploy.min_nodes is None else min(deploy.min_nodes, len(members))
        if len(good) < needed:
            short.append(f"{role}: {len(good)} of {len(members)} verified, min_nodes {needed}")
    failed = {node: state.reason or "failed" for node, state in ledger.nodes.items() if state.state == "failed"}
    if short:
        details = "\n".join(f"  {node}: {reason}" for node, reason in sorted(failed.items()))
        raise DeployError(
            "deploy failed (" + "; ".join(short) + "):\n" + details,
            hint=f"g5k deploy {record.run_id} retries only the nodes not verified; lower deploy.min_nodes to drop them",
        )
    for node in failed:
        ledger.nodes[node].state = "dropped"
        for role, members in record.roles.items():
            record.roles[role] = [member for member in members if member != node]
    verified = sorted(node for node, state in ledger.nodes.items() if state.state == "verified")
    return DeploySummary(plan=plan, verified=verified, dropped=failed)
