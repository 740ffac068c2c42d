"""Where the roles go: sites, clusters, OAR resource strings and job types, decided before any POST.

Everything here only reads the API. What the reference API and the API's clock can tell before OAR does fails
here as bad input, naming the field, with nothing submitted: an unknown site or cluster, a cluster outside the
playbook's queue or with fewer nodes than asked, a reservation date in the past. A set of sites where nothing
fits now fails too, as a reservation problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from g5kdeploy.errors import ConfigError, ReservationError
from g5kdeploy.log import get_logger
from g5kdeploy.playbook import PARIS, Reservation, Role
from g5kdeploy.testbeds.api import Api
from g5kdeploy.walltime import format_duration

log = get_logger(__name__)
#: How far in the past (API seconds) a reservation may start: ``hh:mm`` cannot say "now" more precisely.
RESERVATION_SLACK = 60.0
#: The queues a cluster lists in the reference API; besteffort and admin jobs go to other queues' clusters.
_CLUSTER_QUEUES = ("default", "production", "testing")


@dataclass(frozen=True)
class Part:
    """One ``+``-separated part of an OAR request: roles that share a cluster and properties."""

    cluster: str | None
    properties: str | None
    roles: tuple[tuple[str, int], ...]

    @property
    def nodes(self) -> int:
        return sum(count for _, count in self.roles)

    def oar(self) -> str:
        filters = [f"cluster='{self.cluster}'"] if self.cluster else []
        if self.properties:
            filters.append(f"({self.properties})" if self.cluster else self.properties)
        prefix = "{" + " AND ".join(filters) + "}/" if filters else ""
        return f"{prefix}nodes={self.nodes}"


@dataclass(frozen=True)
class JobPlan:
    """The job to submit on one site."""

    site: str
    parts: tuple[Part, ...]
    walltime: int
    types: tuple[str, ...]

    @property
    def resources(self) -> str:
        return "+".join(part.oar() for part in self.parts) + f",walltime={format_duration(self.walltime)}"


@dataclass
class Placement:
    jobs: list[JobPlan]
    rejected: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    #: What the checks found to be right, one line each, for ``g5k check`` to show.
    checked: list[str] = field(default_factory=list)


def plan(api: Api, reservation: Reservation, *, now: float) -> Placement:
    """Decide the site of every role and the job per site; :class:`ConfigError` for what the API shows is wrong."""
    placement = Placement(jobs=[])
    placement.checked.append(_check_start(reservation, now))
    known_sites = api.site_uids()
    wanted = reservation.sites
    for site in wanted or []:
        if site not in known_sites:
            raise ConfigError(
                f"reservation.site: unknown site {site!r}", hint=f"Grid'5000 sites: {', '.join(known_sites)}"
            )
    candidates = wanted or known_sites
    where = f"{', '.join(wanted)}, known to the API" if wanted else f"auto, among {len(known_sites)} sites"
    placement.checked.append(f"reservation.site: {where}")
    clusters = {site: {c["uid"]: c for c in api.clusters(site)} for site in candidates}
    pinned = _pin_roles_to_sites(reservation, clusters, all_sites=known_sites, api=api)
    placement.checked += _check_clusters(api, reservation, clusters, pinned)
    floating = {name: role for name, role in reservation.roles.items() if name not in pinned}
    chosen: str | None = None
    needs_status = len(candidates) > 1 or any(role.min_nodes for role in reservation.roles.values())
    counts = {name: role.nodes for name, role in reservation.roles.items()}
    if floating or needs_status:
        chosen = _choose_site(api, reservation, candidates, clusters, pinned, counts, now, placement)
    by_site: dict[str, list[str]] = {}
    for name in reservation.roles:
        home = pinned.get(name) or chosen
        if home is None:
            # Unreachable: a site is chosen whenever some role is not pinned to one by its cluster.
            raise AssertionError(f"role {name!r} has neither a pinned site nor a chosen one")
        by_site.setdefault(home, []).append(name)
    for site, names in by_site.items():
        types = list(reservation.types)
        roles = {name: reservation.roles[name] for name in names}
        exotic = any(role.cluster and clusters[site][role.cluster].get("exotic") for role in roles.values())
        if exotic and "exotic" not in types:
            types.append("exotic")
            placement.notes.append(f"{site}: added job type 'exotic' for an exotic cluster")
        placement.jobs.append(
            JobPlan(
                site=site,
                parts=_parts(roles, counts),
                walltime=reservation.walltime_seconds,
                types=tuple(types),
            )
        )
    return placement


def _pin_roles_to_sites(
    reservation: Reservation, clusters: dict[str, dict[str, Any]], *, all_sites: list[str], api: Api
) -> dict[str, str]:
    """Roles that name a cluster belong to that cluster's site."""
    pinned: dict[str, str] = {}
    for name, role in reservation.roles.items():
        if not role.cluster:
            continue
        site = next((s for s, known in clusters.items() if role.cluster in known), None)
        if site is None:
            elsewhere = _find_cluster_site(api, role.cluster, [s for s in all_sites if s not in clusters])
            where = f" (it is on {elsewhere}; add that site)" if elsewhere else ""
            raise ConfigError(
                f"reservation.roles.{name}.cluster: no cluster {role.cluster!r} on {', '.join(clusters)}{where}",
                hint="list clusters with the reference API, or leave cluster out",
            )
        pinned[name] = site
    return pinned


def _check_start(reservation: Reservation, now: float) -> str:
    """An advance reservation must start after ``now``, the API's clock (OAR answers "Reservation too old")."""
    start = reservation.reservation_epoch()
    clock = datetime.fromtimestamp(now, PARIS).strftime("%Y-%m-%d %H:%M:%S")
    if start is None:
        return "reservation.reservation: none, the job starts as soon as OAR can start it"
    if start < now - RESERVATION_SLACK:
        raise ConfigError(
            f"reservation.reservation: {reservation.reservation} is in the past "
            f"(the API's clock says {clock}, Europe/Paris time)",
            hint="give a later date, or leave reservation out to start as soon as possible; nothing was submitted",
        )
    return f"reservation.reservation: {reservation.reservation} is ahead of the API's clock ({clock}, Europe/Paris)"


def _check_clusters(
    api: Api, reservation: Reservation, clusters: dict[str, dict[str, Any]], pinned: dict[str, str]
) -> list[str]:
    """Roles that name a cluster, against the reference API: the cluster's queue and its number of nodes."""
    checked: list[str] = []
    asked: dict[tuple[str, str], list[tuple[str, Role]]] = {}
    for name, role in reservation.roles.items():
        if not role.cluster:
            continue
        site = pinned[name]
        queues = [queue for queue in clusters[site][role.cluster].get("queues", []) if queue in _CLUSTER_QUEUES]
        if reservation.queue in _CLUSTER_QUEUES and queues and reservation.queue not in queues:
            raise ConfigError(
                f"reservation.queue: cluster {role.cluster} takes jobs in the {' or '.join(queues)} queue, "
                f"not {reservation.queue}",
                hint=f"set queue: {queues[0]}, or give role {name} another cluster; nothing was submitted",
            )
        asked.setdefault((site, role.cluster), []).append((name, role))
    for (site, cluster), roles in asked.items():
        size = len(api.node_uids(site, cluster))
        fewer = "or set min_nodes to start with what is free; nothing was submitted"
        for name, role in roles:
            # With min_nodes, a role takes what is free beyond it: only the minimum must exist.
            key, count = ("min_nodes", role.min_nodes) if role.min_nodes else ("nodes", role.nodes)
            if count > size:
                raise ConfigError(
                    f"reservation.roles.{name}.{key}: {count} nodes on cluster {cluster}, which has {size}",
                    hint=f"ask for at most {size}, {fewer}",
                )
        counts = [(name, role.min_nodes or role.nodes) for name, role in roles]
        total = sum(count for _, count in counts)
        if total > size:
            parts = " + ".join(f"{name} ({count})" for name, count in counts)
            raise ConfigError(
                f"reservation.roles: {parts} = {total} nodes on cluster {cluster}, which has {size}",
                hint=f"ask for at most {size} in all, {fewer}",
            )
        listed = ", ".join(clusters[site][cluster].get("queues", [])) or "none listed"
        asking = " + ".join(f"{name} {count}" for name, count in counts)
        checked.append(f"{site}/{cluster}: {size} nodes (queues: {listed}); the roles ask {asking}")
    return checked


def _find_cluster_site(api: Api, cluster: str, sites: list[str]) -> str | None:
    for site in sites:
        if any(c["uid"] == cluster for c in api.clusters(site)):
            return site
    return None


def _parts(roles: dict[str, Role], counts: dict[str, int]) -> tuple[Part, ...]:
    grouped: dict[tuple[str | None, str | None], list[tuple[str, int]]] = {}
    for name, role in roles.items():
        grouped.setdefault((role.cluster, role.properties), []).append((name, counts[name]))
    return tuple(Part(cluster, props, tuple(members)) for (cluster, props), members in grouped.items())


def cluster_of(fqdn: str) -> str:
    """``gros`` for ``gros-12.nancy.grid5000.fr``."""
    return fqdn.split(".")[0].rsplit("-", 1)[0]


def node_free(node: dict[str, Any], *, now: float, walltime: int) -> bool:
    """Whether a node of the status API is alive with no job overlapping [now, now + walltime]."""
    if node.get("hard") not in ("alive", "standby"):
        return False
    for job in node.get("reservations", []):
        start = job.get("started_at") or job.get("scheduled_at") or now
        if start < now + walltime and start + job.get("walltime", 0) > now:
            return False
    return bool(node.get("soft", "free").startswith("free"))


def free_nodes(status: dict[str, Any], *, now: float, walltime: int) -> dict[str, list[str]]:
    """Alive nodes with no job overlapping [now, now + walltime], by cluster."""
    free: dict[str, list[str]] = {}
    for fqdn, node in status.get("nodes", {}).items():
        if node_free(node, now=now, walltime=walltime):
            free.setdefault(cluster_of(fqdn), []).append(fqdn)
    return free


def _choose_site(
    api: Api,
    reservation: Reservation,
    candidates: list[str],
    clusters: dict[str, dict[str, Any]],
    pinned: dict[str, str],
    counts: dict[str, int],
    now: float,
    placement: Placement,
) -> str:
    """The first listed site (for ``auto``: the roomiest) where every role fits now; reasons for the rest."""
    fitting: list[tuple[int, str, dict[str, int]]] = []
    for site in candidates:
        try:
            status = api.site_status(site)
        except Exception as exc:
            placement.rejected[site] = f"status unavailable ({exc})"
            continue
        # An advance reservation needs its nodes free from its own start, not from now.
        start = reservation.reservation_epoch() or now
        free = free_nodes(status, now=start, walltime=reservation.walltime_seconds)
        usable = {
            cluster for cluster, doc in clusters[site].items() if not doc.get("exotic") or "exotic" in reservation.types
        }
        roles = {n: r for n, r in reservation.roles.items() if pinned.get(n, site) == site}
        granted, reason = _fit(roles, free, usable)
        if reason:
            placement.rejected[site] = reason
            continue
        fitting.append((sum(len(nodes) for nodes in free.values()), site, granted))
    if not fitting:
        details = "; ".join(f"{site}: {why}" for site, why in placement.rejected.items())
        raise ReservationError(
            f"no site can host the roles now ({details})",
            hint="lower nodes or set min_nodes, pick other sites, or try later; nothing was submitted",
        )
    if reservation.sites is None:
        fitting.sort(key=lambda item: -item[0])
    _, site, granted = fitting[0]
    for name, count in granted.items():
        if count < counts[name]:
            placement.notes.append(f"{name}: {count} of {counts[name]} nodes free on {site}; min_nodes allows it")
            counts[name] = count
    for other in candidates:
        if other != site and other not in placement.rejected:
            placement.rejected[other] = f"fits too, but {site} came first"
    log.info("site chosen", site=site, rejected=placement.rejected)
    return site


def _fit(roles: dict[str, Role], free: dict[str, list[str]], usable: set[str]) -> tuple[dict[str, int], str]:
    """Nodes each role would get from the free ones, or the reason it does not fit."""
    left = {cluster: len(nodes) for cluster, nodes in free.items() if cluster in usable}
    granted: dict[str, int] = {}
    # Roles pinned to a cluster first: the others can take whatever is left anywhere.
    for name, role in sorted(roles.items(), key=lambda item: item[1].cluster is None):
        pool = [role.cluster] if role.cluster else sorted(left, key=lambda c: -left[c])
        available = sum(left.get(cluster, 0) for cluster in pool)
        need = role.nodes if available >= role.nodes else (role.min_nodes or role.nodes)
        if available < need:
            where = role.cluster or "any usable cluster"
            return {}, f"{name} needs {need} nodes, {available} free on {where}"
        granted[name] = min(role.nodes, available)
        remaining = granted[name]
        for cluster in pool:
            taken = min(left.get(cluster, 0), remaining)
            left[cluster] = left.get(cluster, 0) - taken
            remaining -= taken
    return granted, ""
