"""Fault injection in front of the application: error statuses, delays and dropped connections.

Spec: rules separated by `;`, each `METHOD PATH_GLOB:key=value,...` with METHOD in GET|POST|DELETE|PUT|*,
PATH_GLOB an fnmatch pattern on the path after the version prefix, and keys `500`/`502`/`503`/`504`
(probability of that answer), `delay` (real seconds added), `drop` (probability of closing the connection
unanswered), `after` (1: let the request take effect, then answer with the injected status) and
`count` (at most that many injections).
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


def _ignore_write(_data: bytes) -> None:
    return None


def _discarding_start_response(*_args: Any, **_kwargs: Any) -> Callable[[bytes], None]:
    """For `after` faults: the real answer is produced for its side effects, then thrown away."""
    return _ignore_write


class FaultMiddleware:
    """Counts requests, strips `.json` suffixes and applies the fault rules before the Flask app."""

    def __init__(
        self, app: WSGIApp, rules: list[FaultRule], prefix: str, seed: int | None, record: Callable[[str, str], None]
    ) -> None:
        self.app = app
        self.rules = rules
        self.prefix = prefix
        self.rng = random.Random(seed)
        self.record = record
        self.lock = threading.Lock()

    def _decide(self, method: str, path: str) -> tuple[float, bool, int | None, bool]:
        delay, drop, status, after = 0.0, False, None, False
        with self.lock:
            for rule in self.rules:
                if not rule.matches(method, path):
                    continue
                fired = rule.delay > 0
                delay += rule.delay
                if rule.drop and self.rng.random() < rule.drop:
                    drop = fired = True
                for code, chance in sorted(rule.statuses.items()):
                    if status is None and self.rng.random() < chance:
                        status, after, fired = code, rule.after, True
                if fired:
                    rule.used += 1
        return delay, drop, status, after

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path: str = environ.get("PATH_INFO", "")
        if path.endswith(".json"):
            environ["PATH_INFO"] = path = path[: -len(".json")]
            environ["g5ksim.json_suffix"] = True
        method = environ.get("REQUEST_METHOD", "GET").upper()
        relative = path.removeprefix(self.prefix) or "/"
        self.record(method, relative)
        delay, drop, status, after = self._decide(method, relative)
        if delay:
            time.sleep(delay)
        if drop:
            return self._drop(environ, start_response)
        if status is not None and after:
            result = self.app(environ, _discarding_start_response)
            try:
                for _ in result:
                    pass
            finally:
                close = getattr(result, "close", None)
                if close:
                    close()
        if status is not None:
            start_response(STATUS_TEXT[status], [("Content-Type", "text/plain; charset=utf-8")])
            return [_BODIES[status].encode()]
        return self.app(environ, start_response)

    @staticmethod
    def _drop(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Close the socket unanswered; werkzeug then treats the write as a dropped connection."""
        sock = environ.get("werkzeug.socket")
        if isinstance(sock, socket.socket):
            sock.shutdown(socket.SHUT_RDWR)
        start_response(STATUS_TEXT[500], [("Content-Type", "text/plain")])
        return [b""]
