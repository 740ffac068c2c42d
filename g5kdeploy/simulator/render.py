"""Jobs, deployments and status as g5k-api serializes them (null keys omitted, epoch ints)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from g5kdeploy.simulator.deployments import FLAGS
from g5kdeploy.simulator.records import FINAL_STATES, Deployment, Job, as_flag

ITEM = "application/vnd.grid5000.item+json"
COLLECTION = "application/vnd.grid5000.collection+json"


def link(rel: str, href: str, kind: str = ITEM) -> dict[str, str]:
    return {"rel": rel, "href": href, "type": kind}


def _epoch(value: float | None) -> int | None:
    return None if value is None else int(value)


def _parenthesized(text: str) -> bool:
    """Whether the first `(` of `text` closes at its very end (quotes skipped), as in `(a or b)`."""
    if not (text.startswith("(") and text.endswith(")")):
        return False
    depth, quoted = 0, False
    for i, char in enumerate(text):
        if char == "'":
            quoted = not quoted
        elif not quoted and char in "()":
            depth += 1 if char == "(" else -1
            if depth == 0:
                return i == len(text) - 1
    return False


def oar_properties(job: Job) -> str:
    """OAR's final filter: admission rules append the maintenance term to what the user gave."""
    if not job.properties:
        return "maintenance = 'NO'"
    user = job.properties if _parenthesized(job.properties) else f"({job.properties})"
    return f"{user} AND maintenance = 'NO'"


def job_summary(job: Job) -> dict[str, Any]:
    """The job fields shared by the job item and the status `reservations` entries."""
    data: dict[str, Any] = {
        "uid": job.uid,
        "user_uid": job.user,
        "user": job.user,
        "walltime": job.walltime,
        "queue": job.queue,
        "state": job.state,
        "project": job.project,
        "name": job.name,
        "types": list(job.types),
        "mode": "PASSIVE",
        "command": job.command,
        "submitted_at": _epoch(job.submitted_at),
        "scheduled_at": _epoch(job.scheduled_at),
        # OAR reports start_time 0 before the start rather than nothing.
        "started_at": _epoch(job.started_at) or 0,
        "stopped_at": _epoch(job.stopped_at),
        "message": job.message,
        "exit_code": job.exit_code,
        "properties": oar_properties(job),
        "directory": job.directory or f"/home/{job.user}",
    }
    return {k: v for k, v in data.items() if v is not None}


def job_item(job: Job, prefix: str, cores: Mapping[str, int], resources: bool = True) -> dict[str, Any]:
    data = job_summary(job)
    data["events"] = list(job.events)
    if resources:
        data["assigned_nodes"] = list(job.nodes)
        data["resources_by_type"] = {"cores": [f"{node}/{i}" for node in job.nodes for i in range(cores.get(node, 1))]}
        if job.vlans:
            data["resources_by_type"]["vlans"] = list(job.vlans)
    data["links"] = [
        link("self", f"{prefix}/sites/{job.site}/jobs/{job.uid}"),
        link("parent", f"{prefix}/sites/{job.site}"),
    ]
    return data


def deployment_item(dep: Deployment, prefix: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "uid": dep.uid,
        "site_uid": dep.site,
        "user_uid": dep.user,
        "environment": dep.environment,
        "status": dep.status,
        "nodes": list(dep.nodes),
        "created_at": int(dep.created_at),
        "updated_at": int(dep.updated_at or dep.created_at),
        # as_flag again: state files written before flags were coerced may hold "false" strings.
        **{flag: as_flag(dep.extra.get(flag, False)) for flag in FLAGS},
        "key": dep.key,
        **{k: v for k, v in dep.extra.items() if k not in FLAGS},
    }
    if dep.status in FINAL_STATES:
        data["result"] = {
            node: (
                {"macro": "SetDeploymentEnv", "micro": "format_deploy_part", "state": "KO", "error": "timeout"}
                if dep.status == "error" or node in dep.planned_ko
                else {"macro": None, "micro": None, "state": "OK"}
            )
            for node in dep.nodes
        }
    data["links"] = [
        link("self", f"{prefix}/sites/{dep.site}/deployments/{dep.uid}"),
        link("parent", f"{prefix}/sites/{dep.site}"),
    ]
    return {k: v for k, v in data.items() if v is not None}
