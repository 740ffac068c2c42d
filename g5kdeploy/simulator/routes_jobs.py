"""Write-capable routes: OAR jobs, walltime changes and Kadeploy deployments."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, request

from g5kdeploy.simulator import walltime
from g5kdeploy.simulator.app import known_site, require_user, respond, simulator, text
from g5kdeploy.simulator.errors import (
    JSON_TOO_DEEP,
    MAX_JSON_NESTING,
    ApiError,
    job_not_found,
    oar_job_not_found,
)
from g5kdeploy.simulator.records import Job
from g5kdeploy.simulator.render import COLLECTION, link

jobs_blueprint = Blueprint("jobs", __name__)
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
_JOB_FILTERS = ("user", "name", "queue", "project")


def _nested_deeper_than(value: Any, limit: int) -> bool:
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is not None:
            if depth > limit:
                return True
            pending.extend((child, depth + 1) for child in children)
    return False


def _json_body() -> Any:
    """The JSON body, None when it does not parse; too deep a nesting is refused as Rails' parser refuses it.

    The real API answers that refusal with a 500 (g5k-api's catch-all rescue gets Rails' ParseError); the
    simulator answers 400, the status Rails itself gives a ParseError, with the same text.
    """
    try:
        data = json.loads(request.get_data())
    except RecursionError:
        raise ApiError(400, JSON_TOO_DEEP) from None
    except ValueError:
        return None
    if _nested_deeper_than(data, MAX_JSON_NESTING):
        raise ApiError(400, JSON_TOO_DEEP)
    return data


def _body() -> dict[str, Any]:
    """JSON or form body; form fields given several times (`types`) become lists."""
    if request.is_json:
        data = _json_body()
        if not isinstance(data, dict):
            raise ApiError(400, "Request body must be a JSON object")
        return data
    return {key: values if key == "types" or len(values) > 1 else values[0] for key, values in request.form.lists()}


def _paging() -> tuple[int, int]:
    try:
        offset = max(int(request.args.get("offset", 0)), 0)
        limit = min(max(int(request.args.get("limit", DEFAULT_LIMIT)), 0), MAX_LIMIT)
    except ValueError as exc:
        raise ApiError(400, "offset and limit must be integers") from exc
    return offset, limit


def _job_uid(raw: str, missing: Callable[[object], ApiError] = job_not_found) -> int:
    """The job id of a URL; anything but ASCII digits (`str.isdigit` also takes '²') names no job."""
    if not (raw.isascii() and raw.isdigit()):
        raise missing(raw)
    try:
        return int(raw)
    except ValueError as exc:  # more digits than int() converts: no job has such an id either
        raise missing(raw) from exc


def _absolute(path: str) -> str:
    return request.host_url.rstrip("/") + path


def _listing(items: list[dict[str, Any]], total: int, offset: int, path: str, parent: str) -> Response:
    prefix = simulator().prefix
    return respond(
        {
            "total": total,
            "offset": offset,
            "items": items,
            "links": [link("self", f"{prefix}{path}", COLLECTION), link("parent", f"{prefix}{parent}")],
        },
        collection=True,
    )


@jobs_blueprint.get("/sites/<site>/jobs")
def list_jobs(site: str) -> Response:
    known_site(site)
    states = {s.strip().lower() for s in request.args.get("state", "").split(",") if s.strip()}
    job_ids = {s.strip() for s in request.args.get("job_id", "").split(",") if s.strip()}
    wanted = {k: request.args[k] for k in _JOB_FILTERS if request.args.get(k)}

    def keep(job: Job) -> bool:
        return (
            (not states or job.state in states)
            and (not job_ids or str(job.uid) in job_ids)
            and all(getattr(job, k) == v for k, v in wanted.items())
        )

    offset, limit = _paging()
    with_resources = request.args.get("resources", "no").lower() == "yes"
    items, total = simulator().list_jobs(site, keep, offset, limit, with_resources)
    return _listing(items, total, offset, f"/sites/{site}/jobs", f"/sites/{site}")


@jobs_blueprint.post("/sites/<site>/jobs")
def submit_job(site: str) -> Response:
    known_site(site)
    login = require_user()
    sim = simulator()
    job = sim.submit(site, login, _body())
    path = f"{sim.prefix}/sites/{site}/jobs/{job['uid']}"
    return respond(job, status=201, headers={"Location": _absolute(path)})


@jobs_blueprint.get("/sites/<site>/jobs/<uid>")
def get_job(site: str, uid: str) -> Response:
    known_site(site)
    return respond(simulator().job(site, _job_uid(uid)))


@jobs_blueprint.delete("/sites/<site>/jobs/<uid>")
def delete_job(site: str, uid: str) -> Response:
    known_site(site)
    login = require_user()
    sim = simulator()
    info = sim.delete(site, _job_uid(uid), login)
    location = _absolute(f"{sim.prefix}/sites/{site}/jobs/{uid}")
    return text("", 202, {"Location": location, "X-Oar-Info": info})


@jobs_blueprint.get("/sites/<site>/jobs/<uid>/walltime")
def walltime_info(site: str, uid: str) -> Response:
    known_site(site)
    require_user()
    return respond(simulator().walltime_info(site, _job_uid(uid, oar_job_not_found)))


@jobs_blueprint.post("/sites/<site>/jobs/<uid>/walltime")
def walltime_change(site: str, uid: str) -> Response:
    known_site(site)
    login = require_user()
    if not request.is_json:
        raise ApiError(415, f"Content-Type '{request.content_type or ''}' is not supported")
    body = _json_body()
    change = walltime.parse_request(body if isinstance(body, dict) else {})
    answer = simulator().change_walltime(site, _job_uid(uid, oar_job_not_found), login, change)
    location = _absolute(f"{simulator().prefix}/sites/{site}/jobs/{uid}/walltime")
    # g5k-api renders OAR's text with `render json:`, which sends a String as it is: the body is not JSON,
    # yet its content type is the negotiated JSON one.
    response = respond(None, status=202, headers={"Location": location})
    response.set_data(answer)
    return response


@jobs_blueprint.get("/sites/<site>/deployments")
def list_deployments(site: str) -> Response:
    known_site(site)
    offset, limit = _paging()
    items, total = simulator().list_deployments(site, dict(request.args), offset, limit)
    return _listing(items, total, offset, f"/sites/{site}/deployments", f"/sites/{site}")


@jobs_blueprint.post("/sites/<site>/deployments")
def create_deployment(site: str) -> Response:
    known_site(site)
    login = require_user()
    sim = simulator()
    dep = sim.deploy(site, login, _body())
    path = f"{sim.prefix}/sites/{site}/deployments/{dep['uid']}"
    return respond(dep, status=201, headers={"Location": _absolute(path)})


@jobs_blueprint.get("/sites/<site>/deployments/<uid>")
def get_deployment(site: str, uid: str) -> Response:
    known_site(site)
    return respond(simulator().deployment(site, uid))


@jobs_blueprint.delete("/sites/<site>/deployments/<uid>")
def cancel_deployment(site: str, uid: str) -> Response:
    known_site(site)
    login = require_user()
    sim = simulator()
    sim.cancel_deployment(site, uid, login)
    return text("", 202, {"Location": _absolute(f"{sim.prefix}/sites/{site}/deployments/{uid}")})
