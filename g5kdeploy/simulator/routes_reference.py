"""Read-only routes: the reference inventory and the live status documents."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, request

from g5kdeploy.simulator.app import known_site, respond, simulator, user
from g5kdeploy.simulator.environments import environments
from g5kdeploy.simulator.errors import ApiError
from g5kdeploy.simulator.render import COLLECTION, ITEM, link

reference_blueprint = Blueprint("reference", __name__)

# Only what is served: python-grid5000 follows no links, but a client that does must not meet a 404.
SITE_RELS = ("clusters", "deployments", "environments", "jobs", "network_equipments", "pdus", "servers", "status")
# g5k-api's `enrich_params`: no `queues` means admin,default (so every cluster passes: each has the admin
# queue), `all` means admin,default,production; a cluster without `queues` has admin and default.
_DEFAULT_QUEUES = ("admin", "default")
_ALL_QUEUES = ("admin", "default", "production")
# The routes naming a folder of the reference repository, which `?deep=1` expands whole.
_TREE_ENDPOINTS = {
    "reference.root",
    "reference.sites",
    "reference.site_item",
    "reference.clusters",
    "reference.cluster_item",
    "reference.nodes",
    "reference.inventory",
}
# The reference API is a git repository behind a cache; the live documents (status) are not cached.
_CACHE_CONTROL = "public, max-age=60"
_LIVE_ENDPOINTS = {"reference.site_status", "reference.cluster_status", "reference.health"}
# The development version the real front proxy also serves; `create_app` registers the API under it too.
SID = "/sid"
# The bundled inventory is one commit of the reference repository: the g5k-api v3.11.13 release it comes with.
_COMMIT_DATE = "Tue, 18 Mar 2025 09:14:22 GMT"
_COMMIT_AUTHOR = "Alexandre MERLIN"
_COMMIT_MESSAGE = "release v3.11.13"


@reference_blueprint.after_request
def _cache_headers(response: Response) -> Response:
    if response.status_code == 200 and f"reference.{(request.endpoint or '').partition('.')[2]}" not in _LIVE_ENDPOINTS:
        response.headers["Cache-Control"] = _CACHE_CONTROL
    return response


@reference_blueprint.before_request
def _deep() -> Response | None:
    """`?deep=1` (any value: Rails tests the parameter's presence) answers the folder's whole subtree."""
    # Under `/sid` the blueprint is registered a second time, under another name.
    endpoint = f"reference.{(request.endpoint or '').partition('.')[2]}"
    if "deep" not in request.args or endpoint not in _TREE_ENDPOINTS:
        return None
    path = request.path.removeprefix(_prefix()).rstrip("/")
    parts = [p for p in path.split("/") if p]
    data = simulator().reference.subtree(parts)
    if data is None:
        raise _missing(path or "/")
    parent = "/".join(parts[:-1])
    return _collection(data, path or "/", f"/{parent}" if parent else "", total=len(data))


def _wanted_queues() -> set[str]:
    wanted = request.args.get("queues")
    if wanted is None:
        return set(_DEFAULT_QUEUES)
    return set(_ALL_QUEUES) if wanted == "all" else set(wanted.split(","))


def _in_queues(cluster: dict[str, Any], queues: set[str]) -> bool:
    return bool(set(cluster.get("queues") or _DEFAULT_QUEUES) & queues)


def _prefix() -> str:
    """The version the request came in under: links of a `/sid` answer stay under `/sid`, as the proxy's
    `X-Api-Version` makes g5k-api write them."""
    return SID if request.path.startswith(f"{SID}/") else simulator().prefix


def _missing(path: str) -> ApiError:
    return ApiError(404, f"Cannot find resource {path}")


def _item(doc: dict[str, Any], path: str, parent: str, subs: tuple[str, ...] = ()) -> dict[str, Any]:
    prefix = _prefix()
    links = [link("self", f"{prefix}{path}"), link("parent", f"{prefix}{parent}")]
    links += [link(rel, f"{prefix}{path}/{rel}", ITEM if rel == "status" else COLLECTION) for rel in subs]
    return {**doc, "links": links, "version": simulator().reference.version}


def _collection(
    items: list[dict[str, Any]] | dict[str, Any], path: str, parent: str, total: int | None = None
) -> Response:
    prefix = _prefix()
    return respond(
        {
            "total": len(items) if total is None else total,
            "offset": 0,
            "items": items,
            "links": [link("self", f"{prefix}{path}", COLLECTION), link("parent", f"{prefix}{parent}")],
            "version": simulator().reference.version,
        },
        collection=True,
    )


@reference_blueprint.get("/")
def root() -> Response:
    ref = simulator().reference
    prefix = _prefix()
    links = [
        link("self", f"{prefix}/"),
        link("sites", f"{prefix}/sites", COLLECTION),
        link("network_equipments", f"{prefix}/network_equipments", COLLECTION),
    ]
    return respond({**ref.root, "links": links, "version": ref.version})


@reference_blueprint.get("/sites")
def sites() -> Response:
    ref = simulator().reference
    items = [_item(doc, f"/sites/{uid}", "", SITE_RELS) for uid, doc in sorted(ref.sites.items())]
    return _collection(items, "/sites", "")


@reference_blueprint.get("/sites/<site>")
def site_item(site: str) -> Response:
    return respond(_item(known_site(site), f"/sites/{site}", "", SITE_RELS))


@reference_blueprint.get("/sites/<site>/clusters")
def clusters(site: str) -> Response:
    known_site(site)
    queues = _wanted_queues()
    items = [
        _item(doc, f"/sites/{site}/clusters/{uid}", f"/sites/{site}", ("nodes", "status"))
        for uid, doc in sorted(simulator().reference.collection(site, "clusters").items())
        if _in_queues(doc, queues)
    ]
    return _collection(items, f"/sites/{site}/clusters", f"/sites/{site}")


def _cluster(site: str, cluster: str) -> dict[str, Any]:
    known_site(site)
    doc = simulator().reference.collection(site, "clusters").get(cluster)
    if doc is None:
        raise _missing(f"/sites/{site}/clusters/{cluster}")
    return doc


@reference_blueprint.get("/sites/<site>/clusters/<cluster>")
def cluster_item(site: str, cluster: str) -> Response:
    doc = _cluster(site, cluster)
    if not _in_queues(doc, _wanted_queues()):
        raise _missing(f"/sites/{site}/clusters/{cluster}")
    return respond(_item(doc, f"/sites/{site}/clusters/{cluster}", f"/sites/{site}", ("nodes", "status")))


@reference_blueprint.get("/sites/<site>/clusters/<cluster>/nodes")
def nodes(site: str, cluster: str) -> Response:
    _cluster(site, cluster)
    base = f"/sites/{site}/clusters/{cluster}"
    items = [
        _item(doc, f"{base}/nodes/{uid}", base)
        for uid, doc in simulator().reference.cluster_nodes(site, cluster).items()
    ]
    return _collection(items, f"{base}/nodes", base)


@reference_blueprint.get("/sites/<site>/clusters/<cluster>/nodes/<node>")
def node_item(site: str, cluster: str, node: str) -> Response:
    _cluster(site, cluster)
    base = f"/sites/{site}/clusters/{cluster}"
    doc = simulator().reference.cluster_nodes(site, cluster).get(node)
    if doc is None:
        raise _missing(f"{base}/nodes/{node}")
    return respond(_item(doc, f"{base}/nodes/{node}", base))


@reference_blueprint.get("/sites/<site>/<any(servers, pdus, network_equipments):kind>")
def inventory(site: str, kind: str) -> Response:
    known_site(site)
    items = [
        _item(doc, f"/sites/{site}/{kind}/{uid}", f"/sites/{site}")
        for uid, doc in sorted(simulator().reference.collection(site, kind).items())
    ]
    return _collection(items, f"/sites/{site}/{kind}", f"/sites/{site}")


@reference_blueprint.get("/sites/<site>/<any(servers, pdus, network_equipments):kind>/<uid>")
def inventory_item(site: str, kind: str, uid: str) -> Response:
    known_site(site)
    doc = simulator().reference.collection(site, kind).get(uid)
    if doc is None:
        raise _missing(f"/sites/{site}/{kind}/{uid}")
    return respond(_item(doc, f"/sites/{site}/{kind}/{uid}", f"/sites/{site}"))


@reference_blueprint.get("/network_equipments")
def all_network_equipments() -> Response:
    ref = simulator().reference
    items = [
        _item(doc, f"/sites/{site}/network_equipments/{uid}", f"/sites/{site}")
        for site in sorted(ref.sites)
        for uid, doc in sorted(ref.collection(site, "network_equipments").items())
    ]
    return _collection(items, "/network_equipments", "")


@reference_blueprint.get("/sites/<site>/status")
def site_status(site: str) -> Response:
    known_site(site)
    return respond(simulator().status(site, None, request.args, anonymous=user() is None))


@reference_blueprint.get("/sites/<site>/clusters/<cluster>/status")
def cluster_status(site: str, cluster: str) -> Response:
    _cluster(site, cluster)
    return respond(simulator().status(site, cluster, request.args, anonymous=user() is None))


@reference_blueprint.get("/sites/<site>/health")
def health(site: str) -> Response:
    known_site(site)
    return respond({"status": "OK"})


@reference_blueprint.get("/sites/<site>/environments")
def environment_list(site: str) -> Response:
    known_site(site)
    base = f"/sites/{site}/environments"
    items = [_environment(doc, site) for doc in environments(request.args)]
    return _collection(items, base, f"/sites/{site}")


@reference_blueprint.get("/sites/<site>/environments/<uid>")
def environment_item(site: str, uid: str) -> Response:
    known_site(site)
    base = f"/sites/{site}/environments"
    doc = next((d for d in environments({}) if d["uid"] == uid), None)
    if doc is None:
        raise _missing(f"{base}/{uid}")
    return respond(_environment(doc, site))


def _environment(doc: dict[str, Any], site: str) -> dict[str, Any]:
    """Not `_item`: an environment's `version` is its own image version, not the reference commit."""
    prefix = _prefix()
    href = f"{prefix}/sites/{site}/environments/{doc['uid']}"
    return {**doc, "links": [link("self", href), link("parent", f"{prefix}/sites/{site}")]}


def _resource(depth: int) -> str:
    """The reference path the request's `versions` is about (`depth` segments follow it in the URL), 404 as
    g5k-api's VersionsController words it."""
    parts = [p for p in request.path.removeprefix(_prefix()).split("/") if p][: -depth - 1]
    path = "".join(f"/{p}" for p in parts)
    if parts and simulator().reference.subtree(parts) is None:
        raise ApiError(404, f"{path} does not exist.")
    return path


def _version(path: str) -> dict[str, Any]:
    prefix, sha = _prefix(), simulator().reference.version
    return {
        "uid": sha,
        "date": _COMMIT_DATE,
        "message": _COMMIT_MESSAGE,
        "author": _COMMIT_AUTHOR,
        "type": "version",
        "links": [link("self", f"{prefix}{path}/versions/{sha}"), link("parent", f"{prefix}{path}")],
    }


# g5k-api routes `*resource/versions` for any path; here the collections' own rules would take the `versions`
# segment as an item's uid (`/sites/versions` as a site), so the collections get static rules of their own.
_VERSIONED = (
    "",
    "/<path:resource>",
    "/sites",
    "/sites/<site>/clusters",
    "/sites/<site>/clusters/<cluster>/nodes",
    "/sites/<site>/<any(servers, pdus, network_equipments):kind>",
)


def _routes(suffix: str) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    def register(view: Callable[..., Response]) -> Callable[..., Response]:
        for base in _VERSIONED:
            reference_blueprint.add_url_rule(f"{base}/versions{suffix}", view_func=view)
        return view

    return register


@_routes("")
def versions(**_: str) -> Response:
    """g5k-api's VersionsController#index over a history of one commit."""
    path = _resource(0)
    try:
        offset = max(int(request.args.get("offset", 0)), 0)
    except ValueError as exc:
        raise ApiError(400, "offset must be an integer") from exc
    items = [_version(path)][offset:]
    parent = path.rpartition("/")[0]
    prefix = _prefix()
    return respond(
        {
            "total": 1,
            "offset": offset,
            "items": items,
            "links": [link("self", f"{prefix}{path}/versions", COLLECTION), link("parent", f"{prefix}{parent}")],
        },
        collection=True,
    )


@_routes("/latest")
def latest_version(**_: str) -> Response:
    path = _resource(1)
    response = Response("", status=307)
    response.headers["Location"] = f"{_prefix()}{path}/versions/{simulator().reference.version}"
    return response


@_routes("/<sha>")
def version_item(sha: str, **_: str) -> Response:
    path = _resource(1)
    if sha != simulator().reference.version:
        raise ApiError(404, f"Reference (branch or commit) '{sha}' cannot be found.")
    return respond(_version(path))
