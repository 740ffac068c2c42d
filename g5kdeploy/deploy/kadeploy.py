"""Kadeploy through the Grid'5000 API: one deployment per site, polled until it ends or the deadline passes.

The nodes boot a prebuilt image (the playbook's ``deploy.environment``, an http URL to a Kadeploy environment
description); Kadeploy reports each node ``OK`` or ``KO`` in the deployment's ``result``. A ``terminated``
deployment is not a success by itself: only the per-node result is (g5k-api.md §3.2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from g5kdeploy.deploy.base import NIXOS_EBPF_TOGGLE, BootOutcome, DeployContext, Expectation
from g5kdeploy.errors import ConfigError, G5kError
from g5kdeploy.log import get_logger
from g5kdeploy.plans import KadeployPlan
from g5kdeploy.testbeds.g5k_ssh import find_key, public_key

log = get_logger(__name__)

#: EnOSlib polls every 10 s; the API caches a deployment for 60 s anyway, so polling faster gains nothing.
POLL_SECONDS = 10.0
FINAL_STATUSES = ("terminated", "error", "canceled")


def site_of(node: str) -> str:
    """``gros-12.nancy.grid5000.fr`` → ``nancy``: the site is the FQDN's second label."""
    labels = node.split(".")
    if len(labels) < 3:
        raise ConfigError(f"{node!r} is not a Grid'5000 node FQDN (<node>.<site>.grid5000.fr)")
    return labels[1]


def by_site(nodes: list[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for node in nodes:
        groups.setdefault(site_of(node), []).append(node)
    return groups


@dataclass
class _Running:
    """One site's deployment while it is being polled."""

    site: str
    nodes: list[str]
    uid: str
    started: float
    last: dict[str, Any] = field(default_factory=dict)
    poll_error: str | None = None

    @property
    def label(self) -> str:
        return f"{self.site}/{self.uid}"


class KadeployMethod:
    name = "kadeploy"
    pushes_artifacts = False
    system_artifacts: tuple[str, ...] = ("statx-bench",)
    ebpf_toggle: dict[str, str] | None = NIXOS_EBPF_TOGGLE

    def __init__(
        self,
        *,
        public_key_text: str | None = None,
        home: Path | None = None,
        poll_seconds: float = POLL_SECONDS,
        environment: str | None = None,
    ) -> None:
        # The key text may be injected (tests, or a caller that already read it); otherwise it is the user's.
        self._key = public_key_text
        # An environment URL made by the caller (nxc's g5k-image flavour publishes its own) overrides the
        # playbook's deploy.environment.
        self._environment_url = environment
        self._home = home
        self.poll_seconds = poll_seconds

    @classmethod
    def for_context(cls, context: DeployContext) -> KadeployMethod:  # noqa: ARG003 - the key is read at boot
        return cls()

    # The DeployMethod interface --------------------------------------------------------------------------

    def plan(self, context: DeployContext, nodes: list[str]) -> KadeployPlan:
        return KadeployPlan(
            environment=self._environment(context),
            nodes=list(nodes),
            sites=by_site(nodes),
            poll_seconds=self.poll_seconds,
        )

    def boot(self, context: DeployContext, nodes: list[str], *, deadline: float) -> dict[str, BootOutcome]:
        environment = self._environment(context)
        key = self._public_key(context)
        outcomes: dict[str, BootOutcome] = {}
        running: list[_Running] = []
        for site, members in by_site(nodes).items():
            body = {"nodes": members, "environment": environment, "key": key}
            try:
                created = context.api.create_deployment(site, body)
            except G5kError as exc:
                # A refused POST (400: not a deploy job, unknown environment) fails every node it named.
                log.warning("deployment refused", site=site, nodes=len(members), error=str(exc))
                outcomes.update({node: BootOutcome(ok=False, reason=str(exc)) for node in members})
                continue
            uid = str(created["uid"])
            log.info("deployment submitted", site=site, uid=uid, nodes=len(members))
            running.append(_Running(site, members, uid, context.clock.now(), last=created))
        while running:
            for dep in list(running):
                if dep.last.get("status") in FINAL_STATUSES:
                    outcomes.update(self._outcomes(dep))
                    running.remove(dep)
            if not running:
                break
            now = context.clock.now()
            if now >= deadline:
                for dep in running:
                    outcomes.update(self._time_out(context, dep, now))
                break
            context.clock.sleep(min(self.poll_seconds, deadline - now))
            for dep in running:
                self._refresh(context, dep)
        return outcomes

    def expectation(self, context: DeployContext) -> Expectation:  # noqa: ARG002 - the interface's signature
        # The image's kernel command line is fixed by its environment description: no per-run marker on it.
        return Expectation(rebooted=True, marker=False, kernel_options=True, exporter=True)

    # Helpers -------------------------------------------------------------------------------------------

    def _environment(self, context: DeployContext) -> str:
        if self._environment_url:
            return self._environment_url
        deploy = context.playbook.deploy
        if deploy is None or not deploy.environment:
            raise ConfigError("deploy.environment: kadeploy needs the image's environment description (an http URL)")
        return deploy.environment

    def _public_key(self, context: DeployContext) -> str:
        if self._key is None:
            self._key = public_key(find_key(context.playbook.ssh.key, self._home or Path.home()))
        return self._key

    @staticmethod
    def _refresh(context: DeployContext, dep: _Running) -> None:
        try:
            dep.last = context.api.get_deployment(dep.site, dep.uid)
            dep.poll_error = None
        except G5kError as exc:
            # Api already retried transient errors; keep polling until the deadline, which reports the error.
            dep.poll_error = str(exc)
            log.warning("deployment poll failed", site=dep.site, uid=dep.uid, error=str(exc))

    @staticmethod
    def _outcomes(dep: _Running) -> dict[str, BootOutcome]:
        status = dep.last.get("status")
        trail = (f"deployment {dep.label}: {status}",)
        if status != "terminated":
            detail = dep.last.get("output") or dep.last.get("error")
            reason = f"deployment {dep.uid} on {dep.site} ended with status {status}" + (
                f": {detail}" if detail else ""
            )
            return {node: BootOutcome(ok=False, reason=reason, log=trail, deployment=dep.label) for node in dep.nodes}
        results: dict[str, Any] = dep.last.get("result") or {}
        outcomes = {}
        for node in dep.nodes:
            entry = results.get(node)
            if not isinstance(entry, dict):
                outcomes[node] = BootOutcome(
                    ok=False,
                    reason=f"deployment {dep.uid} terminated without a result for this node",
                    log=trail,
                    deployment=dep.label,
                )
                continue
            state = str(entry.get("state", "")).upper()
            if state == "OK":
                outcomes[node] = BootOutcome(ok=True, log=trail, deployment=dep.label)
                continue
            step = "/".join(str(entry.get(part)) for part in ("macro", "micro") if entry.get(part))
            error = entry.get("error") or "no error text"
            reason = f"kadeploy {state or 'no state'}" + (f" at {step}" if step else "") + f": {error}"
            outcomes[node] = BootOutcome(ok=False, reason=reason, log=trail, deployment=dep.label)
        return outcomes

    @staticmethod
    def _time_out(context: DeployContext, dep: _Running, now: float) -> dict[str, BootOutcome]:
        elapsed = now - dep.started
        canceled = _cancel(context, dep)
        reason = f"deployment {dep.uid} on {dep.site} still processing after {elapsed:.0f} s" + (
            " (canceled)" if canceled else " (cancel failed)"
        )
        if dep.poll_error:
            reason += f"; last poll error: {dep.poll_error}"
        return {node: BootOutcome(ok=False, reason=reason, deployment=dep.label) for node in dep.nodes}


def _cancel(context: DeployContext, dep: _Running) -> bool:
    """Cancel the deployment; never raises: its nodes have failed anyway."""
    try:
        context.api.cancel_deployment(dep.site, dep.uid)
    except G5kError as exc:
        log.warning("could not cancel the deployment", site=dep.site, uid=dep.uid, error=str(exc))
        return False
    log.info("deployment canceled at the deadline", site=dep.site, uid=dep.uid)
    return True
