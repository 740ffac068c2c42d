"""What the platform has, for choosing where to run: sites, clusters and nodes, from the reference and status APIs.

Counts and states come from each site's status (the API's own view of its OAR resources, at the API's clock);
hardware from the reference API, one node per cluster (Grid'5000's clusters are homogeneous). A node is free
for a walltime exactly as the reserve phase counts it: alive, and no job overlapping now to now + walltime.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from g5kdeploy.errors import ConfigError
from g5kdeploy.reserve.placement import cluster_of, node_free
from g5kdeploy.testbeds.api import Api

_GIB = 1024**3


@dataclass(frozen=True)
class Hardware:
    """A cluster's nodes, as the reference API describes its first one."""

    cpu: str | None
    cores: int | None
    memory_gib: int | None
    gpus: int


@dataclass(frozen=True)
class SiteSummary:
    uid: str
    clusters: int
    nodes: int
    alive: int
    #: Free now (for the shortest job), as the status API shows them.
    free: int


@dataclass(frozen=True)
class ClusterSummary:
    site: str
    uid: str
    nodes: int
    alive: int
    free: int
    queues: list[str]
    exotic: bool
    hardware: Hardware


@dataclass(frozen=True)
class NodeSummary:
    name: str
    hard: str
    soft: str
    #: Alive, with no job from now to now + the walltime asked about.
    free: bool
    #: The end of the job running on it now, if any (epoch seconds, the API's clock).
    busy_until: int | None
    #: The start of its next job, if one is planned.
    next_job_at: int | None


@dataclass(frozen=True)
class ClusterNodes:
    cluster: ClusterSummary
    #: The API's clock when the status was read.
    now: int
    walltime: int
    nodes: list[NodeSummary]


def sites(api: Api) -> list[SiteSummary]:
    """Every site, with its clusters and how many of its nodes are alive and free now."""
    summaries = []
    for site in api.site_uids():
        status = api.site_status(site)
        states = list(status.get("nodes", {}).values())
        now = float(status.get("uid") or 0)
        summaries.append(
            SiteSummary(
                uid=site,
                clusters=len(api.clusters(site)),
                nodes=len(states),
                alive=sum(state.get("hard") in ("alive", "standby") for state in states),
                free=sum(node_free(state, now=now, walltime=0) for state in states),
            )
        )
    return summaries


def clusters(api: Api, site: str | None = None) -> list[ClusterSummary]:
    """The clusters of ``site`` (default: of every site), production ones included."""
    chosen = [_known_site(api, site)] if site else api.site_uids()
    summaries = []
    for uid in chosen:
        status = api.site_status(uid)
        for cluster in api.clusters(uid):
            summaries.append(_cluster(api, uid, cluster, status))
    return summaries


def nodes(api: Api, site: str, cluster: str, *, walltime: int) -> ClusterNodes:
    """Every node of ``site``/``cluster``, with its state and whether it is free now for ``walltime`` seconds."""
    _known_site(api, site)
    found = {doc["uid"]: doc for doc in api.clusters(site)}
    if cluster not in found:
        raise ConfigError(
            f"SITE/CLUSTER: no cluster {cluster!r} on {site}",
            hint=f"{site}'s clusters: {', '.join(sorted(found))} (g5k clusters lists every site's)",
        )
    status = api.site_status(site)
    now = int(status.get("uid") or 0)
    states = {fqdn.split(".")[0]: (fqdn, state) for fqdn, state in status.get("nodes", {}).items()}
    listed = []
    for uid in sorted(api.node_uids(site, cluster), key=_natural):
        fqdn, state = states.get(uid, (f"{uid}.{site}.grid5000.fr", {"hard": "unknown", "soft": "unknown"}))
        busy_until, next_job_at = _jobs_around(state, now)
        listed.append(
            NodeSummary(
                name=fqdn,
                hard=str(state.get("hard", "unknown")),
                soft=str(state.get("soft", "unknown")),
                free=node_free(state, now=now, walltime=walltime),
                busy_until=busy_until,
                next_job_at=next_job_at,
            )
        )
    return ClusterNodes(_cluster(api, site, found[cluster], status), now, walltime, listed)


def parse_site_cluster(text: str) -> tuple[str, str]:
    """``nancy/gros`` as (site, cluster); :class:`ConfigError` for anything else."""
    site, _, cluster = text.partition("/")
    if not site or not cluster or "/" in cluster:
        raise ConfigError(f"SITE/CLUSTER: {text!r} is not a site and a cluster", hint="e.g. g5k nodes nancy/gros")
    return site, cluster


def _known_site(api: Api, site: str) -> str:
    known = api.site_uids()
    if site not in known:
        raise ConfigError(f"SITE: unknown site {site!r}", hint=f"Grid'5000 sites: {', '.join(known)}")
    return site


def _cluster(api: Api, site: str, doc: dict[str, Any], status: dict[str, Any]) -> ClusterSummary:
    uid = str(doc["uid"])
    now = float(status.get("uid") or 0)
    states = {fqdn: state for fqdn, state in status.get("nodes", {}).items() if cluster_of(fqdn) == uid}
    first = min((fqdn.split(".")[0] for fqdn in states), key=_natural, default=None)
    return ClusterSummary(
        site=site,
        uid=uid,
        nodes=len(states),
        alive=sum(state.get("hard") in ("alive", "standby") for state in states.values()),
        free=sum(node_free(state, now=now, walltime=0) for state in states.values()),
        queues=[str(queue) for queue in doc.get("queues", [])],
        exotic=bool(doc.get("exotic")),
        hardware=_hardware(api.node_reference(site, uid, first)) if first else Hardware(None, None, None, 0),
    )


def _hardware(node: dict[str, Any]) -> Hardware:
    processor = node.get("processor") or {}
    memory = (node.get("main_memory") or {}).get("ram_size")
    return Hardware(
        cpu=" ".join(str(part) for part in (processor.get("model"), processor.get("version")) if part) or None,
        cores=(node.get("architecture") or {}).get("nb_cores"),
        memory_gib=round(memory / _GIB) if isinstance(memory, int) else None,
        gpus=len(node.get("gpu_devices") or {}),
    )


def _jobs_around(state: dict[str, Any], now: int) -> tuple[int | None, int | None]:
    """The end of the job running now, and the start of the next one, from the node's reservations."""
    running_ends: list[int] = []
    starts: list[int] = []
    for job in state.get("reservations", []):
        start = int(job.get("started_at") or job.get("scheduled_at") or 0)
        end = start + int(job.get("walltime", 0))
        if start and start <= now < end:
            running_ends.append(end)
        elif start > now:
            starts.append(start)
    return max(running_ends, default=None), min(starts, default=None)


def _natural(name: str) -> tuple[str, int]:
    """``gros-2`` before ``gros-10``."""
    match = re.fullmatch(r"(.*?)-?(\d+)", name)
    return (match.group(1), int(match.group(2))) if match else (name, 0)
