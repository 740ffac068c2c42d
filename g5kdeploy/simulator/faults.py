"""Fault injection in front of the application: error statuses, delays and dropped connections.

Spec: rules separated by `;`, each `METHOD PATH_GLOB:key=value,...` with METHOD in GET|POST|DELETE|PUT|*,
PATH_GLOB an fnmatch pattern on the path after the version prefix, and keys `500`/`502`/`503`/`504`
(probability of that answer), `delay` (real seconds added), `drop` (probability of closing the connection
unanswered), `after` and `count` (at most that many injections; a rule counts only when it injected
something).

Without `after`, faults strike before the application: a dropped or failed request had no effect. With
`after=1` the application runs first, then the delay, the drop or the status replaces its answer: "the
POST took effect but the answer was slow, lost or an error".
"""

from __future__ import annotations

import fnmatch
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
STATUS_TEXT = {
    500: "500 Internal Server Error",
    502: "502 Bad Gateway",
    503: "503 Service Unavailable",
    504: "504 Gateway Timeout",
}
_BODIES = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Server Unavailable", 504: "Gateway Timeout"}
_METHODS = {"GET", "POST", "DELETE", "PUT", "*"}


@dataclass
class FaultRule:
    method: str
    glob: str
    statuses: dict[int, float] = field(default_factory=dict)
    delay: float = 0.0
    drop: float = 0.0
    after: bool = False
    count: int | None = None
    used: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.count is not None and self.used >= self.count:
            return False
        return self.method in ("*", method) and fnmatch.fnmatchcase(path, self.glob)


def _probability(rule: str, key: str, raw: str) -> float:
    value = float(raw)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"fault rule {rule!r}: {key} must be a probability in [0, 1], got {raw}")
    return value


def _parse_rule(text: str) -> FaultRule:
    head, sep, options = text.rpartition(":")
    method, _, glob = head.strip().partition(" ")
    if not sep or not glob.strip() or method.upper() not in _METHODS:
        raise ValueError(
            f"fault rule {text!r}: expected 'METHOD PATH_GLOB:key=value,...' with METHOD in GET|POST|DELETE|PUT|*"
        )
    rule = FaultRule(method.upper(), glob.strip())
    for option in (o.strip() for o in options.split(",") if o.strip()):
        key, eq, raw = option.partition("=")
        key = key.strip()
        try:
            if not eq:
                raise ValueError
            if key.isdigit() and int(key) in STATUS_TEXT:
                rule.statuses[int(key)] = _probability(text, key, raw)
            elif key == "delay":
                rule.delay = float(raw)
                if rule.delay < 0:
                    raise ValueError
            elif key == "drop":
                rule.drop = _probability(text, key, raw)
            elif key == "after":
                rule.after = raw.strip() in ("1", "yes", "true")
            elif key == "count":
                rule.count = int(raw)
            else:
                raise ValueError(
                    f"fault rule {text!r}: unknown key {key!r} (use 500, 502, 503, 504, delay, drop, after, count)"
                )
        except ValueError as exc:
            raise ValueError(str(exc) or f"fault rule {text!r}: bad value in {option!r}") from exc
    return rule


def parse_faults(spec: str) -> list[FaultRule]:
    """Parse a `--faults` spec; ValueError with a message naming the bad rule."""
    return [_parse_rule(part) for part in spec.split(";") if part.strip()]


@dataclass
class Decision:
    """What the matching rules inject into one request."""

    delay: float = 0.0
    drop: bool = False
    status: int | None = None
    after: bool = False

    @property
    def acts_first(self) -> bool:
        return self.after and (self.delay > 0 or self.drop or self.status is not None)


def _discard(_data: bytes) -> None:
    return None


class FaultMiddleware:
    """Counts requests, strips `.json` suffixes and applies the fault rules around the Flask app."""

    def __init__(
        self, app: WSGIApp, rules: list[FaultRule], prefix: str, seed: int | None, record: Callable[[str, str], None]
    ) -> None:
        self.app = app
        self.rules = rules
        self.prefix = prefix
        self.rng = random.Random(seed)
        self.record = record
        self.lock = threading.Lock()

    def _decide(self, method: str, path: str) -> Decision:
        decision = Decision()
        with self.lock:
            for rule in self.rules:
                if not rule.matches(method, path):
                    continue
                fired = False
                if rule.delay > 0:
                    decision.delay += rule.delay
                    fired = True
                if rule.drop and not decision.drop and self.rng.random() < rule.drop:
                    decision.drop = fired = True
                if not decision.drop:
                    for code, chance in sorted(rule.statuses.items()):
                        if decision.status is None and self.rng.random() < chance:
                            decision.status, fired = code, True
                if fired:
                    rule.used += 1
                    decision.after = decision.after or rule.after
        return decision

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        if path.endswith(".json"):
            environ["PATH_INFO"] = path = path[: -len(".json")]
            environ["g5ksim.json_suffix"] = True
        method = environ.get("REQUEST_METHOD", "GET").upper()
        relative = path.removeprefix(self.prefix) or "/"
        self.record(method, relative)
        decision = self._decide(method, relative)
        answer = self._run(environ) if decision.acts_first else None
        if decision.delay:
            time.sleep(decision.delay)
        if decision.drop:
            return self._drop(environ, start_response)
        if decision.status is not None:
            start_response(STATUS_TEXT[decision.status], [("Content-Type", "text/plain; charset=utf-8")])
            return [_BODIES[decision.status].encode()]
        if answer is not None:
            status, headers, body = answer
            start_response(status, headers)
            return [body]
        return self.app(environ, start_response)

    def _run(self, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
        """Run the application to completion and keep its answer, so a fault can replace or hold it."""
        captured: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], _exc_info: Any = None) -> Callable[..., None]:
            captured[:] = [status, headers]
            return _discard

        result = self.app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close:
                close()
        return captured[0], captured[1], body

    @staticmethod
    def _drop(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Close the socket unanswered; werkzeug then treats the write as a dropped connection."""
        sock = environ.get("werkzeug.socket")
        if isinstance(sock, socket.socket):
            sock.shutdown(socket.SHUT_RDWR)
        start_response(STATUS_TEXT[500], [("Content-Type", "text/plain")])
        return [b""]
