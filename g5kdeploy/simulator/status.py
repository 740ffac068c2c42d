"""The live `status` document of a site or cluster, built from the jobs on each node."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from g5kdeploy.simulator.records import ACTIVE_STATES, Job
from g5kdeploy.simulator.reference import Node
from g5kdeploy.simulator.render import job_summary, link

_RESERVATION_STATES = ACTIVE_STATES | {"waiting"}


def _flag(query: Mapping[str, str], name: str) -> bool:
    return query.get(name, "yes").lower() not in ("no", "false", "0")


def _node_status(node: Node, jobs: list[Job], details: bool, waiting: bool) -> dict[str, Any]:
    running = [j for j in jobs if j.state in ACTIVE_STATES]
    besteffort = bool(running) and all(j.queue == "besteffort" for j in running)
    busy = node.cores if running else 0
    soft = "free" if not running else "busy_besteffort" if besteffort else "busy"
    data: dict[str, Any] = {
        "hard": "alive",
        "soft": soft,
        "free_slots": node.cores - busy,
        # g5k-api's OAR::Resource: besteffort cores are freeable, not busy (busy_slots = busy - besteffort).
        "freeable_slots": busy if besteffort else 0,
        "busy_slots": 0 if besteffort else busy,
        "comment": "",
    }
    if details:
        data["reservations"] = [
            job_summary(j) for j in jobs if j.state in ACTIVE_STATES or (waiting and j.state == "waiting")
        ]
    return data


def build_status(
    nodes: Iterable[Node],
    jobs: Iterable[Job],
    now: float,
    query: Mapping[str, str],
    self_href: str,
    parent_href: str,
    site_doc: Mapping[str, Any] | None,
    anonymous: bool,
) -> dict[str, Any]:
    """`site_doc` is given for a site status (vlans and subnets), None for a cluster status."""
    details = _flag(query, "job_details") and not anonymous
    waiting = _flag(query, "waiting") and not anonymous
    on_node: dict[str, list[Job]] = {}
    for job in sorted(jobs, key=lambda j: j.uid):
        if job.state in _RESERVATION_STATES:
            for fqdn in job.nodes:
                on_node.setdefault(fqdn, []).append(job)
    only = query.get("network_address")
    data: dict[str, Any] = {"uid": int(now), "links": [link("self", self_href), link("parent", parent_href)]}
    if _flag(query, "nodes"):
        data["nodes"] = {
            n.fqdn: _node_status(n, on_node.get(n.fqdn, []), details, waiting)
            for n in nodes
            if not only or n.fqdn == only
        }
    if _flag(query, "disks"):
        # No reservable disks are modelled; the key is kept because clients expect it.
        data["disks"] = {}
    if site_doc is not None:
        if _flag(query, "vlans"):
            data["vlans"] = {
                vlan: {"hard": "alive", "soft": "free", "type": _vlan_type(vlan)}
                for vlan in sorted(site_doc.get("kavlans", {}))
                if vlan != "default"
            }
        if _flag(query, "subnets"):
            data["subnets"] = {}
    return data


def _vlan_type(vlan: str) -> str:
    number = int(vlan) if vlan.isdigit() else 0
    return "kavlan-local" if number <= 3 else "kavlan" if number <= 9 else "kavlan-global"
