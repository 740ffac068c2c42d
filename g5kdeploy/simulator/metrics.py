"""Kwollect, the site's metrics service, with synthetic values.

The metrics a site offers are the ones its clusters' reference documents describe (`metrics`, the entries
EnOSlib's `available_kwollect_metrics` reads). Values are made up, but the same for the same node, metric
and instant, so that a test reading them twice sees the same series.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from g5kdeploy.simulator.oarsub import PARIS

# Kwollect answers in bounded pages; a longer window is sampled more sparsely rather than cut.
MAX_POINTS_PER_SERIES = 120
_DEFAULT_PERIOD_MS = 5000


class MetricsQueryError(ValueError):
    """A query parameter Kwollect cannot read."""


@dataclass(frozen=True)
class Query:
    nodes: list[str]
    metrics: list[str] | None
    start: float
    end: float


def available(clusters: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The site's metric descriptions, one per name, in reference order."""
    seen: dict[str, dict[str, Any]] = {}
    for cluster in clusters:
        for metric in cluster.get("metrics") or []:
            seen.setdefault(str(metric["name"]), metric)
    return list(seen.values())


def parse_time(text: str, what: str) -> float:
    """Epoch seconds or an ISO 8601 date (Paris time when it names no zone), as Kwollect takes them."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip().replace(" ", "T", 1))
    except ValueError as exc:
        raise MetricsQueryError(f"invalid {what}: {text!r} (give an ISO 8601 date or epoch seconds)") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=PARIS)
    return moment.timestamp()


def values(query: Query, described: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Kwollect's data points for `query`, in chronological order."""
    wanted = [m for m in described if query.metrics is None or m["name"] in query.metrics]
    points: list[tuple[float, dict[str, Any]]] = []
    for metric in wanted:
        period = max(float(metric.get("period") or _DEFAULT_PERIOD_MS) / 1000.0, 1.0)
        step = max(period, (query.end - query.start) / MAX_POINTS_PER_SERIES)
        for node in query.nodes:
            t = math.ceil(query.start / step) * step
            while t <= query.end:
                points.append((t, _point(node, str(metric["name"]), t)))
                t += step
    points.sort(key=lambda p: p[0])
    return [p for _, p in points]


def _point(node: str, metric: str, t: float) -> dict[str, Any]:
    base = zlib.crc32(f"{node}/{metric}".encode()) % 200 + 50
    value = round(base + 10 * math.sin(t / 60.0), 2)
    return {
        "timestamp": datetime.fromtimestamp(t, PARIS).isoformat(),
        "device_id": node,
        "metric_id": metric,
        "value": value,
        "labels": {},
    }
