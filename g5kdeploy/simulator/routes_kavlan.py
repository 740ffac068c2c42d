"""KaVLAN's `/sites/{site}/vlans` routes as g5k-api serves them, and Kwollect's `/sites/{site}/metrics`.

Shapes follow g5k-api's vlans_controller.rb, vlans_users_controller.rb and vlans_nodes_controller.rb (and
their specs and kavlan-rennes-* fixtures); Kwollect's answers are bare JSON lists.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from g5kdeploy.simulator import kavlan, metrics
from g5kdeploy.simulator.app import known_site, require_user, respond, simulator
from g5kdeploy.simulator.errors import ApiError
from g5kdeploy.simulator.render import COLLECTION, ITEM

kavlan_blueprint = Blueprint("kavlan", __name__)
# Kwollect's default window: the last five minutes.
_DEFAULT_WINDOW = 300.0


def _link(rel: str, href: str, media: str) -> dict[str, str]:
    return {"rel": rel, "href": href, "type": media}


def _vlan_doc(site: str, vlan: kavlan.Vlan) -> dict[str, Any]:
    base = f"{simulator().prefix}/sites/{site}/vlans"
    own = f"{base}/{vlan.uid}"
    return {
        "uid": vlan.uid,
        "type": vlan.type,
        "links": [
            _link("dhcpd", f"{own}/dhcpd", ITEM),
            _link("nodes", f"{own}/nodes", ITEM),
            _link("users", f"{own}/users", COLLECTION),
            _link("self", own, ITEM),
            _link("parent", base, COLLECTION),
        ],
    }


def _vlan(site: str, vlan_id: str) -> kavlan.Vlan:
    found = next((v for v in kavlan.site_vlans(known_site(site)) if v.uid == vlan_id), None)
    if found is None:
        raise ApiError(404, f"Vlan {vlan_id} does not exist")
    return found


@kavlan_blueprint.get("/sites/<site>/vlans")
def list_vlans(site: str) -> Response:
    vlans = kavlan.site_vlans(known_site(site))
    base = f"{simulator().prefix}/sites/{site}"
    return respond(
        {
            "total": len(vlans),
            "offset": 0,
            "items": [_vlan_doc(site, v) for v in vlans],
            "links": [
                _link("nodes", f"{base}/vlans/nodes", COLLECTION),
                _link("users", f"{base}/vlans/users", COLLECTION),
                _link("self", f"{base}/vlans", COLLECTION),
                _link("parent", base, ITEM),
            ],
        },
        collection=True,
    )


@kavlan_blueprint.get("/sites/<site>/vlans/<vlan_id>")
def show_vlan(site: str, vlan_id: str) -> Response:
    return respond(_vlan_doc(site, _vlan(site, vlan_id)))


@kavlan_blueprint.get("/sites/<site>/vlans/<vlan_id>/users")
def vlan_users(site: str, vlan_id: str) -> Response:
    """Who may use the VLAN: on Grid'5000, the owner of the job that holds it."""
    vlan = _vlan(site, vlan_id)
    holder = simulator().vlan_holders(site).get(vlan.uid)
    own = f"{simulator().prefix}/sites/{site}/vlans/{vlan.uid}"
    users = [] if holder is None else [holder[0]]
    return respond(
        {
            "offset": 0,
            "total": len(users),
            "items": [
                {"uid": u, "links": [_link("self", f"{own}/users/{u}", ITEM), _link("parent", f"{own}/users", ITEM)]}
                for u in users
            ],
            "links": [_link("self", f"{own}/users", COLLECTION), _link("parent", own, ITEM)],
        },
        collection=True,
    )


def _node_of(address: str) -> str:
    """`gros-3-eth1.nancy.grid5000.fr` (a node's interface, as EnOSlib sends it) to the node's fqdn."""
    host, _, domain = address.partition(".")
    name, _, last = host.rpartition("-")
    if name and not last.isdigit():
        host = name
    return f"{host}.{domain}"


@kavlan_blueprint.post("/sites/<site>/vlans/<vlan_id>/nodes")
def add_nodes(site: str, vlan_id: str) -> Response:
    login = require_user()
    vlan = _vlan(site, vlan_id)
    if request.mimetype != "application/json":
        raise ApiError(415, f"Content-Type '{request.content_type}' is not supported")
    addresses = request.get_json(silent=True)
    if not isinstance(addresses, list) or not addresses or not all(isinstance(a, str) for a in addresses):
        raise ApiError(422, "Missing node list")
    holder = simulator().vlan_holders(site).get(vlan.uid)
    if holder is None or holder[0] != login:
        raise ApiError(403, "Not enough privileges on Kavlan resources")
    known = simulator().reference.by_fqdn
    result: dict[str, dict[str, str]] = {}
    for address in addresses:
        node = _node_of(address)
        if node in holder[1]:
            result[address] = {"status": "success", "message": "Successfully added to vlan"}
        elif node not in known:
            result[address] = {"status": "failure", "message": "Unknown node"}
        else:
            raise ApiError(403, "Not enough privileges on Kavlan resources")
    return respond(result)


@kavlan_blueprint.get("/sites/<site>/metrics")
def site_metrics(site: str) -> Response:
    """Without `nodes` nor `job_id`, the metrics the site offers; with them, their values (Kwollect)."""
    known_site(site)
    sim = simulator()
    described = metrics.available(sim.reference.collection(site, "clusters").values())
    args = request.args
    if not args.get("nodes") and not args.get("job_id"):
        return respond(described)
    now = sim.now()
    try:
        end = min(metrics.parse_time(args["end_time"], "end_time"), now) if args.get("end_time") else now
        start = (
            metrics.parse_time(args["start_time"], "start_time") if args.get("start_time") else end - _DEFAULT_WINDOW
        )
    except metrics.MetricsQueryError as exc:
        raise ApiError(400, str(exc)) from exc
    nodes = [n.strip() for n in args.get("nodes", "").split(",") if n.strip()]
    if args.get("job_id"):
        try:
            job = sim.job(site, int(args["job_id"]))
        except ValueError as exc:
            raise ApiError(400, f"invalid job_id: {args['job_id']!r}") from exc
        nodes += [fqdn.split(".")[0] for fqdn in job["assigned_nodes"]]
    on_site = {n.uid for n in sim.reference.nodes.get(site, [])}
    wanted = [m.strip() for m in args["metrics"].split(",") if m.strip()] if args.get("metrics") else None
    query = metrics.Query([n for n in dict.fromkeys(nodes) if n in on_site], wanted, start, end)
    return respond(metrics.values(query, described))
