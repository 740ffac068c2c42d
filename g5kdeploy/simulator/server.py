"""Serving the simulator over HTTP on loopback, in a background thread or in the foreground."""

from __future__ import annotations

import io
import threading
from types import TracebackType
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from g5kdeploy.simulator.app import create_app
from g5kdeploy.simulator.config import SimConfig
from g5kdeploy.simulator.faults import FaultMiddleware, parse_faults
from g5kdeploy.simulator.frontend import DISCARD_INPUT
from g5kdeploy.simulator.model import Simulator


class _QuietHandler(WSGIRequestHandler):
    """No access log: agents poll a lot and the log would drown their own output.

    Every socket read gives up after `timeout` seconds, so a client that stalls in its request line or body
    holds a thread for that long at most (a stalled body gets the proxy's 408).
    """

    timeout = 30.0

    def log(self, *_args: Any) -> None:
        return None

    def make_environ(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().make_environ()
        environ[DISCARD_INPUT] = self._discard_input
        return environ

    def _discard_input(self) -> None:
        self.rfile = io.BytesIO()


def build_server(config: SimConfig, host: str = "127.0.0.1", port: int = 0) -> tuple[BaseWSGIServer, Simulator]:
    """A bound (not yet serving) threaded server and its simulator; fault spec errors raise ValueError."""
    rules = parse_faults(config.faults)
    sim = Simulator(config)
    flask_app = create_app(sim)
    flask_app.wsgi_app = FaultMiddleware(  # type: ignore[method-assign]
        flask_app.wsgi_app, rules, sim.prefix, config.seed, sim.record_request
    )
    server = make_server(host, port, flask_app, threaded=True, request_handler=_QuietHandler)
    return server, sim


def base_url(server: BaseWSGIServer, sim: Simulator) -> str:
    host = server.host if ":" not in server.host else f"[{server.host}]"
    return f"http://{host}:{server.port}{sim.prefix}"


class SimServer:
    """A simulator serving in a daemon thread; `url` is the API base, e.g. http://127.0.0.1:PORT/stable."""

    def __init__(self, config: SimConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server, self.simulator = build_server(config, host, port)
        self.url = base_url(self._server, self.simulator)
        # A short poll interval: stop() waits for it, and tests start and stop many servers.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="g5k-sim", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> SimServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def serve_in_thread(config: SimConfig, host: str = "127.0.0.1", port: int = 0) -> SimServer:
    return SimServer(config, host, port)
