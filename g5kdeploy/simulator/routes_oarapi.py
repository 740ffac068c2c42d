"""The site's OAR REST API as Grid'5000 exposes it under `/sites/{site}/internal/oarapi/`.

Only what clients read from it: execo's planning (`execo_g5k.planning._get_site_planning_API`) lists
`resources/details.json` and keeps the `network_address` of the resources whose `type` is `default`, whose
`state` is not `Dead` and whose `maintenance` is not `YES`. OAR's resources are cores: a node appears once
per core, with the node's OAR properties, as OAR's API (`oarapi`, `/resources/details`) lists them.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from g5kdeploy.simulator.app import known_site, respond, simulator
from g5kdeploy.simulator.errors import ApiError

oarapi_blueprint = Blueprint("oarapi", __name__)
# OAR's API pages its listings; without `limit` it answers this many items.
DEFAULT_LIMIT = 500


def _paging() -> tuple[int, int]:
    try:
        offset = max(int(request.args.get("offset", 0)), 0)
        limit = max(int(request.args.get("limit", DEFAULT_LIMIT)), 0)
    except ValueError as exc:
        raise ApiError(400, "offset and limit must be integers") from exc
    return offset, limit


def _resources(site: str) -> list[dict[str, Any]]:
    """One resource per core of every node of `site`, numbered from 1 in inventory order."""
    items: list[dict[str, Any]] = []
    for node in simulator().reference.nodes[site]:
        for core in range(node.cores):
            resource_id = len(items) + 1
            items.append(
                {
                    **node.props,
                    "id": resource_id,
                    "resource_id": resource_id,
                    "type": "default",
                    "state": "Alive",
                    "core": resource_id,
                    "cpuset": core,
                    "links": [
                        {"rel": "self", "href": f"/oarapi/resources/{resource_id}"},
                        {"rel": "node", "href": f"/oarapi/resources/nodes/{node.fqdn}"},
                    ],
                }
            )
    return items


# The `.json` suffix is taken off before routing (see frontend.BodyGuard).
@oarapi_blueprint.get("/sites/<site>/internal/oarapi/resources/details")
def resources_details(site: str) -> Response:
    known_site(site)
    offset, limit = _paging()
    items = _resources(site)
    here = f"/oarapi/resources/details.json?offset={offset}&limit={limit}"
    links = [{"rel": "self", "href": here}]
    if offset + limit < len(items):
        links.append({"rel": "next", "href": f"/oarapi/resources/details.json?offset={offset + limit}&limit={limit}"})
    body = {
        "api_timestamp": int(simulator().now()),
        "total": len(items),
        "offset": offset,
        "items": items[offset : offset + limit],
        "links": links,
    }
    return respond(body)
