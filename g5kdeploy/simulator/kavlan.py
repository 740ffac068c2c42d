"""A site's KaVLAN VLANs as OAR resources: which exist, of which type, and how a job holds them.

OAR books a VLAN like a node, for the job's whole life, so the scheduler books each one on the gantt
under a name no node has (`kavlan:<id>`); a job records the VLAN ids apart from its nodes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from g5kdeploy.simulator.properties import PropertyError, compile_properties

LOCAL = "kavlan-local"
ROUTED = "kavlan"
GLOBAL = "kavlan-global"
# Kavlan's listing shows the other sites' global VLANs under this type (g5k-api renames `kavlan-remote`).
REMOTE = "kavlan-global-remote"
_LOCAL_IDS = range(1, 4)
_ROUTED_IDS = range(4, 10)
# Global VLANs are numbered across Grid'5000 (rennes holds 16); kavlan-rennes-index.json lists 10-21.
_GLOBAL_IDS = range(10, 22)
_SLOT = "kavlan:"
# What a `{...}` of a VLAN part may name: OAR's `type` column and the VLAN number.
COLUMNS = frozenset({"type", "vlan"})


class VlanFilterError(ValueError):
    """A VLAN part's `{...}` filter that OAR would refuse."""


@dataclass(frozen=True)
class Vlan:
    uid: str
    type: str

    @property
    def reservable(self) -> bool:
        return self.type in (LOCAL, ROUTED, GLOBAL)


def site_vlans(site_doc: dict[str, Any]) -> list[Vlan]:
    """The site's VLANs in Kavlan's order: DEFAULT, local, routed, the site's global, the other globals."""
    own_global = (site_doc.get("ipv6") or {}).get("site_global_kavlan")
    vlans = [Vlan("DEFAULT", "NULL")]
    vlans += [Vlan(str(i), LOCAL) for i in _LOCAL_IDS]
    vlans += [Vlan(str(i), ROUTED) for i in _ROUTED_IDS]
    if own_global is not None:
        vlans.append(Vlan(str(own_global), GLOBAL))
    vlans += [Vlan(str(i), REMOTE) for i in _GLOBAL_IDS if i != own_global]
    return vlans


def candidates(site_doc: dict[str, Any], sql: str) -> tuple[tuple[str, str], ...]:
    """The (type, gantt slot) of every VLAN of the site that a part's `{...}` filter selects."""
    try:
        keep = compile_properties(sql, set(COLUMNS))
    except PropertyError as exc:
        raise VlanFilterError(str(exc)) from exc
    return tuple(
        (vlan.type, slot(vlan.uid))
        for vlan in site_vlans(site_doc)
        if vlan.reservable and keep({"type": vlan.type, "vlan": int(vlan.uid)})
    )


def slot(vlan_id: str) -> str:
    return _SLOT + vlan_id


def slots(vlan_ids: Iterable[str]) -> list[str]:
    return [slot(v) for v in vlan_ids]


def split(held: Iterable[str]) -> tuple[list[str], list[str]]:
    """A placement's gantt names into (node fqdns, VLAN ids)."""
    nodes: list[str] = []
    vlans: list[str] = []
    for name in held:
        if name.startswith(_SLOT):
            vlans.append(name.removeprefix(_SLOT))
        else:
            nodes.append(name)
    return nodes, vlans
