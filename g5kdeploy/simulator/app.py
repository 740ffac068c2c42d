"""The Flask application: authentication, content negotiation and plain-text errors around the routes."""

from __future__ import annotations

import base64
import json
from typing import Any

from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException

from g5kdeploy.simulator.errors import FORBIDDEN, ApiError
from g5kdeploy.simulator.frontend import PAGE_TYPE, BodyGuard, proxy_page
from g5kdeploy.simulator.model import Simulator
from g5kdeploy.simulator.render import COLLECTION, ITEM

JSON_TYPE = "application/json; charset=utf-8"
# g5k-api treats these logins as "no user": reads are allowed, writes get 403.
NO_USER = frozenset({"", "anonymous", "unknown", "(unknown)"})
USER_HEADER = "X-Api-User-CN"


def simulator() -> Simulator:
    sim: Simulator = current_app.config["SIMULATOR"]
    return sim


def user() -> str | None:
    """The authenticated login, None for anonymous callers."""
    login: str | None = g.get("user")
    return login


def require_user() -> str:
    login = user()
    if login is None:
        raise ApiError(403, FORBIDDEN)
    return login


def known_site(site: str) -> dict[str, Any]:
    """The site's reference document; 404 for a site the inventory does not have."""
    doc: dict[str, Any] | None = simulator().reference.sites.get(site)
    if doc is None:
        raise ApiError(404, f"Cannot find resource /sites/{site}")
    return doc


def respond(data: Any, collection: bool = False, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """JSON with the content type g5k-api negotiates: plain JSON only when the client asks for it."""
    pretty = request.args.get("pretty", "").lower() in ("yes", "true", "1") or request.headers.get(
        "X-Rack-PrettyJSON", ""
    ).lower() in ("yes", "true")
    body = json.dumps(data, indent=2 if pretty else None)
    accept = request.headers.get("Accept", "")
    as_json = "application/json" in accept or request.environ.get("g5ksim.json_suffix", False)
    mimetype = JSON_TYPE if as_json else (COLLECTION if collection else ITEM)
    response = Response(body, status=status, headers=headers or {})
    response.headers["Content-Type"] = mimetype
    return response


def text(body: str, status: int, headers: dict[str, str] | None = None) -> Response:
    response = Response(body, status=status, headers=headers or {})
    response.headers["Content-Type"] = "text/plain; charset=utf-8"
    return response


def _unauthorized() -> Response:
    """The front proxy's answer to missing or wrong Basic credentials (g5k-api itself never sends it)."""
    response = Response(proxy_page(401), status=401)
    response.headers["Content-Type"] = PAGE_TYPE
    response.headers["WWW-Authenticate"] = 'Basic realm="Grid\'5000 API"'
    return response


def _authenticate() -> Response | None:
    """Set `g.user` to the caller's login, None for "no user"; a Response stops the request (401)."""
    g.user = None
    config = simulator().config
    if config.trust_user_header and USER_HEADER in request.headers:
        # As on a frontend: the proxy already identified the caller and says who it is.
        login = request.headers[USER_HEADER].strip()
        g.user = None if login in NO_USER else login
        return None
    header = request.headers.get("Authorization", "")
    if not header:
        # With a users file the simulator stands for the outside entry point, which demands credentials.
        return _unauthorized() if config.users is not None and not config.trust_user_header else None
    scheme, _, encoded = header.partition(" ")
    try:
        # Credentials are UTF-8, as requests sends a bytes password. A header with non-ASCII text, bad
        # base64 or non-UTF-8 credentials raises a ValueError: the proxy's 401, like a wrong password.
        login, sep, password = base64.b64decode(encoded.strip()).decode("utf-8").partition(":")
    except ValueError:
        sep = ""
    users = config.users
    valid = (
        scheme.lower() == "basic"
        and bool(sep)
        and bool(login)
        and (users.get(login) == password if users is not None else bool(password))
    )
    if not valid:
        return _unauthorized()
    g.user = None if login in NO_USER else login
    return None


def create_app(sim: Simulator) -> Flask:
    """The API under `/<api_version>`, serving `sim`."""
    from g5kdeploy.simulator.routes_jobs import jobs_blueprint
    from g5kdeploy.simulator.routes_kavlan import kavlan_blueprint
    from g5kdeploy.simulator.routes_oarapi import oarapi_blueprint
    from g5kdeploy.simulator.routes_reference import SID, reference_blueprint

    app = Flask("g5kdeploy.simulator")
    app.config["SIMULATOR"] = sim
    app.url_map.strict_slashes = False
    prefix = f"/{sim.config.api_version}"
    app.register_blueprint(reference_blueprint, url_prefix=prefix)
    app.register_blueprint(jobs_blueprint, url_prefix=prefix)
    app.register_blueprint(oarapi_blueprint, url_prefix=prefix)
    app.register_blueprint(kavlan_blueprint, url_prefix=prefix)
    if prefix != SID:
        # The real front proxy serves the development version beside the stable one.
        for blueprint in (reference_blueprint, jobs_blueprint, oarapi_blueprint, kavlan_blueprint):
            app.register_blueprint(blueprint, url_prefix=SID, name=f"sid_{blueprint.name}")
    app.before_request(_authenticate)
    app.wsgi_app = BodyGuard(app.wsgi_app)  # type: ignore[method-assign]

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> Response:
        return text(exc.text, exc.status)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        if exc.code == 404:
            path = request.path.removeprefix(SID if request.path.startswith(f"{SID}/") else prefix)
            return text(f"Cannot find resource {path}", 404)
        # g5k-api answers with the bare reason phrase, e.g. `Method Not Allowed` for a 405.
        return text(exc.name, exc.code or 500)

    return app
