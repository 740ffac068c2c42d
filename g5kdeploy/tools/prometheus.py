"""Prometheus, one function per operation: configs, the HTTP API, CSV export, and replaying a TSDB snapshot.

A snapshot (``POST /api/v1/admin/tsdb/snapshot``, needs ``--web.enable-admin-api``) is a directory of TSDB blocks
under ``<storage.tsdb.path>/snapshots/<name>``. :func:`serve_snapshot` copies one elsewhere and starts a Prometheus
on the copy that scrapes nothing (``scrape_configs: []``) and keeps everything (``retention.time=100y``; retention
is measured from the newest block anyway), so old data can be queried later, always with an explicit time: an
instant query at "now" sees nothing older than the 5 min lookback.

``query_range`` is refused by Prometheus beyond 11,000 points per series (``(end - start) / step > 11000``);
:meth:`PrometheusClient.query_range` splits longer ranges on the same grid and merges the pieces.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
import yaml

from g5kdeploy.errors import PrometheusError, TestbedError
from g5kdeploy.files import atomic_write_text
from g5kdeploy.log import get_logger
from g5kdeploy.process import free_ports, is_running, listens_on, port_free, spawn_daemon, stop_pid
from g5kdeploy.waiting import wait_until

log = get_logger(__name__)

INSTALL_HINT = "apt-get install prometheus prometheus-node-exporter"
#: Where the Debian packages put the binaries, searched before $PATH.
DEFAULT_SEARCH_PATH = ("/usr/bin", "/usr/sbin", "/usr/local/bin")
#: Prometheus refuses a range query whose (end - start) / step exceeds this.
MAX_POINTS_PER_SERIES = 11_000
PROMETHEUS_PROGRAMS = frozenset({"prometheus"})
SNAPSHOT_RETENTION = "100y"
PORT_ATTEMPTS = 3


@dataclass
class Series:
    """One time series: its labels (``__name__`` included when Prometheus gives it) and its (time s, value)."""

    labels: dict[str, str]
    points: list[tuple[float, float]]


@dataclass(frozen=True)
class Target:
    """One scrape target as ``/api/v1/targets`` reports it."""

    job: str
    url: str
    labels: dict[str, str]
    health: str
    #: When its last scrape started (Unix seconds, Prometheus' clock), None before the first one.
    last_scrape: float | None
    last_error: str

    @property
    def name(self) -> str:
        return self.labels.get("node") or self.labels.get("instance") or self.url

    def describe(self) -> str:
        detail = f": {self.last_error}" if self.last_error else ""
        return f"{self.job}/{self.name} ({self.health}{detail})"


@dataclass(frozen=True)
class ServedSnapshot:
    pid: int
    url: str
    data_dir: Path


# --- binaries -------------------------------------------------------------------------------------------------


def require_binary(name: str, *, search_path: str | None = None) -> Path:
    """The absolute path of ``name`` (``prometheus``, ``prometheus-node-exporter``, ``promtool``).

    ``search_path`` (``os.pathsep``-separated directories) replaces the default search: the Debian locations,
    then ``$PATH``.
    """
    if search_path is None:
        search_path = os.pathsep.join([*DEFAULT_SEARCH_PATH, os.environ.get("PATH", "")])
    found = shutil.which(name, path=search_path)
    if found is None:
        raise TestbedError(
            f"{name} not found (searched {search_path}); install it with: {INSTALL_HINT}", hint=INSTALL_HINT
        )
    return Path(found).resolve()


# --- configuration --------------------------------------------------------------------------------------------


def prometheus_config(jobs: Mapping[str, Sequence[tuple[str, str]]], *, scrape_interval: str = "1s") -> str:
    """Prometheus YAML: job name -> [(target ``host:port``, node name)], each target labelled ``node=<name>``.

    No jobs gives ``scrape_configs: []``, a Prometheus that only serves what its TSDB already holds.
    ``scrape_interval`` is a Prometheus duration (``1s``, ``500ms``); the scrape timeout is the same.
    """
    scrape_configs = [
        {
            "job_name": job,
            "static_configs": [{"targets": [target], "labels": {"node": node}} for target, node in targets],
        }
        for job, targets in jobs.items()
    ]
    config = {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": scrape_interval,
        },
        "scrape_configs": scrape_configs,
    }
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


# --- HTTP API -------------------------------------------------------------------------------------------------


def split_range(
    start: float, end: float, step: float, *, max_points: int = MAX_POINTS_PER_SERIES
) -> list[tuple[int, int]]:
    """[start, end] at ``step`` as chunks of at most ``max_points`` evaluation times each, in milliseconds.

    Every chunk starts on the grid ``start + k * step`` right after the previous chunk's last point, so the
    chunks together evaluate exactly the times one unlimited query would, each once. Prometheus works in
    milliseconds, so the step is rounded to one (and must be at least 1 ms).
    """
    start_ms, end_ms, step_ms = round(start * 1000), round(end * 1000), round(step * 1000)
    if step_ms < 1:
        raise PrometheusError(f"query_range step must be at least 1 ms, got {step!r} s")
    if end_ms < start_ms:
        raise PrometheusError(f"query_range end {end!r} is before start {start!r}")
    if max_points < 1:
        raise ValueError("max_points must be positive")
    total = (end_ms - start_ms) // step_ms + 1
    chunks = []
    for first in range(0, total, max_points):
        last = min(first + max_points, total) - 1
        chunks.append((start_ms + first * step_ms, start_ms + last * step_ms))
    return chunks


def _ms_text(milliseconds: int) -> str:
    """Unix seconds with exactly three decimals, which Prometheus parses back to the same millisecond."""
    seconds, millis = divmod(milliseconds, 1000)
    return f"{seconds}.{millis:03d}"


def _time_text(at: float) -> str:
    return _ms_text(round(at * 1000))


class PrometheusClient:
    """The HTTP API of one Prometheus (``http://host:port``); every failure is a :class:`PrometheusError`."""

    def __init__(self, base_url: str, *, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        # Loopback and cluster-internal addresses: a proxy from the environment would only get in the way.
        self._session.trust_env = False

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> PrometheusClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def ready(self) -> bool:
        """Whether ``/-/ready`` answers 200 (the TSDB is loaded and queries are served)."""
        try:
            response = self._session.get(f"{self.base_url}/-/ready", timeout=min(self.timeout, 2.0))
        except requests.RequestException:
            return False
        return response.status_code == 200

    def wait_ready(self, deadline_s: float, *, alive: Callable[[], bool] | None = None) -> None:
        """Return once ready; DeadlineExceeded after ``deadline_s`` seconds; PrometheusError if ``alive()`` fails."""

        def ready() -> bool:
            if self.ready():
                return True
            if alive is not None and not alive():
                raise PrometheusError(f"Prometheus at {self.base_url} exited before it was ready")
            return False

        wait_until(ready, timeout=deadline_s, what=f"Prometheus at {self.base_url} to be ready")

    def query(self, expr: str, at: float) -> list[dict[str, Any]]:
        """Instant query at ``at`` (Unix seconds): the result's entries, each ``{"metric": {...}, "value": [t, v]}``.

        A scalar or string result comes back as one entry with an empty ``metric``.
        """
        data = self._api("POST", "/api/v1/query", data={"query": expr, "time": _time_text(at)})
        result = data.get("result", [])
        if data.get("resultType") in ("scalar", "string"):
            return [{"metric": {}, "value": result}]
        return list(result)

    def query_range(
        self, expr: str, start: float, end: float, step: float, *, max_points: int = MAX_POINTS_PER_SERIES
    ) -> list[Series]:
        """Range query over [start, end], split into chunks Prometheus accepts, merged per series.

        Series come in the order Prometheus first returns them; their points are sorted by time, each time once.
        """
        merged: dict[tuple[tuple[str, str], ...], dict[int, float]] = {}
        labels_of: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
        step_text = _ms_text(round(step * 1000))
        for chunk_start, chunk_end in split_range(start, end, step, max_points=max_points):
            data = self._api(
                "POST",
                "/api/v1/query_range",
                data={"query": expr, "start": _ms_text(chunk_start), "end": _ms_text(chunk_end), "step": step_text},
            )
            for entry in data.get("result", []):
                labels = {str(k): str(v) for k, v in entry.get("metric", {}).items()}
                key = tuple(sorted(labels.items()))
                labels_of.setdefault(key, labels)
                points = merged.setdefault(key, {})
                for timestamp, value in entry.get("values", []):
                    points[round(float(timestamp) * 1000)] = float(value)
        return [
            Series(labels=labels_of[key], points=[(ms / 1000, points[ms]) for ms in sorted(points)])
            for key, points in merged.items()
        ]

    def snapshot(self, *, skip_head: bool = False) -> str:
        """Take a TSDB snapshot (admin API) and return its name, a directory under ``<data>/snapshots/``."""
        data = self._api("POST", "/api/v1/admin/tsdb/snapshot", params={"skip_head": str(skip_head).lower()})
        name = data.get("name") if isinstance(data, dict) else None
        if not name:
            raise PrometheusError(f"snapshot answer from {self.base_url} has no name: {data!r}")
        return str(name)

    def server_time(self) -> float:
        """Prometheus' own "now" (Unix seconds): scrape times are in its clock, not ours."""
        data = self._api("POST", "/api/v1/query", data={"query": "time()"})
        return float(data["result"][0])

    def targets(self) -> list[Target]:
        """The active scrape targets with their health and last scrape."""
        data = self._api("GET", "/api/v1/targets", params={"state": "active"})
        return [_target(entry) for entry in data.get("activeTargets", [])]

    def wait_scraped(
        self, *, after: float, deadline_s: float, healthy: bool = True, jobs: set[str] | None = None
    ) -> list[Target]:
        """Wait until every target's last scrape started after ``after`` (Prometheus time); return the targets.

        With ``healthy``, the scrape must also have succeeded; ``jobs`` limits the targets to those jobs. Polls
        at most every 0.1 s; at the deadline, :class:`DeadlineExceeded` names the targets still waiting and why.
        """
        waiting: list[Target] = []

        def scraped() -> list[Target]:
            targets = [target for target in self.targets() if jobs is None or target.job in jobs]
            waiting[:] = [target for target in targets if not _scraped(target, after, healthy=healthy)]
            return [] if waiting else targets

        return wait_until(
            scraped,
            timeout=deadline_s,
            what=f"a {'successful ' if healthy else ''}scrape of every target of Prometheus at {self.base_url}",
            interval=0.1,
            detail=lambda: "still waiting: " + (", ".join(t.describe() for t in waiting) or "any target (it has none)"),
        )

    def label_values(self, name: str) -> list[str]:
        """All values of label ``name`` (``__name__`` gives the metric names)."""
        return [str(value) for value in self._api("GET", f"/api/v1/label/{name}/values")]

    def _api(
        self,
        method: str,
        path: str,
        *,
        data: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        url = f"{self.base_url}{path}"
        try:
            response = self._session.request(method, url, data=data, params=params, timeout=self.timeout)
        except requests.RequestException as error:
            raise PrometheusError(f"{method} {url} failed: {error}") from error
        text = response.text
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or body.get("status") != "success" or response.status_code >= 400:
            error_type = body.get("errorType") if isinstance(body, dict) else None
            detail = body.get("error") if isinstance(body, dict) and body.get("error") else text.strip()[:2000]
            raise PrometheusError(
                f"{method} {path} answered {response.status_code}{f' ({error_type})' if error_type else ''}: {detail}",
                status=response.status_code,
                error_type=error_type,
            )
        for warning in body.get("warnings") or []:
            log.warning("prometheus warning", path=path, warning=warning)
        return body.get("data")


def _target(entry: Mapping[str, Any]) -> Target:
    labels = {str(key): str(value) for key, value in (entry.get("labels") or {}).items()}
    return Target(
        job=labels.get("job", str(entry.get("scrapePool", ""))),
        url=str(entry.get("scrapeUrl", "")),
        labels=labels,
        health=str(entry.get("health", "unknown")),
        last_scrape=_rfc3339(str(entry.get("lastScrape") or "")),
        last_error=str(entry.get("lastError") or ""),
    )


def _rfc3339(text: str) -> float | None:
    """Prometheus' RFC 3339 times (nanoseconds, ``Z`` or an offset) as Unix seconds; None for its zero time."""
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", text)
    if not match:
        return None
    whole, fraction, zone = match.groups()
    moment = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    if moment.year < 1971:
        return None
    return moment.timestamp() + (float(f"0.{fraction}") if fraction else 0.0)


def _scraped(target: Target, after: float, *, healthy: bool) -> bool:
    if target.last_scrape is None or target.last_scrape <= after:
        return False
    return target.health == "up" or not healthy


# --- results --------------------------------------------------------------------------------------------------


def _value_text(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def write_csv(series: Sequence[Series], path: Path) -> int:
    """Long format ``timestamp,value,<every label name, sorted>``, one row per point; returns the row count.

    Timestamps are Unix seconds with millisecond precision; a label a series lacks is an empty cell.
    The file is replaced atomically.
    """
    label_names = sorted({name for one in series for name in one.labels})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["timestamp", "value", *label_names])
    rows = 0
    for one in series:
        label_cells = [one.labels.get(name, "") for name in label_names]
        for timestamp, value in one.points:
            writer.writerow([f"{timestamp:.3f}", _value_text(value), *label_cells])
            rows += 1
    atomic_write_text(path, buffer.getvalue())
    return rows


# --- snapshots ------------------------------------------------------------------------------------------------


def snapshot_tree_time_range(snapshot_dir: Path) -> tuple[float, float]:
    """(min, max) time of a snapshot's blocks in Unix seconds, from each block's ``meta.json``.

    The max is meta.json's ``maxTime``, which TSDB makes exclusive: 1 ms after the last sample. An instant
    query at that time sees the last samples.
    """
    metas = sorted(snapshot_dir.glob("*/meta.json"))
    if not metas:
        raise TestbedError(f"no TSDB block (*/meta.json) in {snapshot_dir}")
    low, high = math.inf, -math.inf
    for meta_path in metas:
        try:
            meta = json.loads(meta_path.read_text())
            low, high = min(low, int(meta["minTime"])), max(high, int(meta["maxTime"]))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise TestbedError(f"unreadable block metadata {meta_path}: {error}") from error
    return low / 1000, high / 1000


def serve_snapshot(
    snapshot_dir: Path,
    workdir: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    timeout: float = 30.0,
    search_path: str | None = None,
) -> ServedSnapshot:
    """Start a Prometheus that serves a copy of ``snapshot_dir`` (``workdir/tsdb``) and scrapes nothing.

    The original is only read. ``port`` 0 picks a free port. Returns once ``/-/ready`` answers, within
    ``timeout`` seconds; stop it with :func:`stop_served`.
    """
    binary = require_binary("prometheus", search_path=search_path)
    deadline = time.monotonic() + timeout
    snapshot_dir, workdir = snapshot_dir.resolve(), workdir.resolve()
    if not snapshot_dir.is_dir():
        raise TestbedError(f"snapshot directory {snapshot_dir} does not exist")
    data_dir = workdir / "tsdb"
    if data_dir == snapshot_dir or data_dir in snapshot_dir.parents or snapshot_dir in data_dir.parents:
        raise TestbedError(f"the replay copy {data_dir} would overlap the snapshot {snapshot_dir}")
    workdir.mkdir(parents=True, exist_ok=True)
    if data_dir.exists():
        shutil.rmtree(data_dir)
    shutil.copytree(snapshot_dir, data_dir)
    config = workdir / "replay.yml"
    atomic_write_text(config, prometheus_config({}, scrape_interval="1m"))
    log_path = workdir / "prometheus-replay.log"
    if port and not port_free(host, port):
        raise TestbedError(f"port {port} on {host} is already taken", hint="choose another port, or 0 for any")
    for attempt in range(1, PORT_ATTEMPTS + 1):
        chosen = port or free_ports([host])[0]
        argv = [
            str(binary),
            f"--config.file={config}",
            f"--storage.tsdb.path={data_dir}",
            f"--storage.tsdb.retention.time={SNAPSHOT_RETENTION}",
            f"--web.listen-address={host}:{chosen}",
        ]
        start_offset = log_path.stat().st_size if log_path.exists() else 0
        pid = spawn_daemon(argv, log_path=log_path)
        url = f"http://{host}:{chosen}"
        try:
            wait_http_ready(
                f"{url}/-/ready",
                pid=pid,
                log_path=log_path,
                deadline=deadline,
                what="replay Prometheus",
                log_offset=start_offset,
                owned=(host, chosen),
            )
        except PortTakenError:
            stop_served(pid)
            if port or attempt == PORT_ATTEMPTS:
                raise
            continue
        except BaseException:
            stop_served(pid)
            raise
        log.info("snapshot served", url=url, pid=pid, data_dir=str(data_dir))
        return ServedSnapshot(pid=pid, url=url, data_dir=data_dir)
    raise AssertionError("unreachable")


def stop_served(pid: int, *, timeout: float = 10.0) -> bool:
    """Stop a Prometheus started by :func:`serve_snapshot`, if ``pid`` is still one; True if it ran."""
    return stop_program(pid, PROMETHEUS_PROGRAMS, timeout=timeout)


# --- processes (shared with g5kdeploy.testbeds.monitoring) -----------------------------------------------------


class PortTakenError(TestbedError):
    """A daemon could not bind its address: another program holds the port."""


def program_of(pid: int) -> str | None:
    """The file name of ``pid``'s program (argv[0]), or None if it is gone or a zombie."""
    if not is_running(pid):
        return None
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
    except OSError:
        return None
    return Path(argv0).name


def stop_program(pid: int, programs: frozenset[str], *, timeout: float = 10.0) -> bool:
    """SIGTERM (then SIGKILL) ``pid`` only if its program is one of ``programs``; True if it was running."""
    program = program_of(pid)
    if program not in programs:
        return False
    return stop_pid(pid, expect=program, timeout=timeout)


def log_tail(log_path: Path, *, offset: int = 0, size: int = 2000) -> str:
    try:
        with log_path.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")[-size:]
    except OSError:
        return ""


def wait_http_ready(
    url: str,
    *,
    pid: int,
    log_path: Path,
    deadline: float,
    what: str,
    log_offset: int = 0,
    owned: tuple[str, int] | None = None,
) -> None:
    """Poll ``url`` until it answers 200; if ``pid`` dies first, TestbedError with its log's tail, and at
    ``deadline`` DeadlineExceeded with that tail too.

    With ``owned`` (address, port), the answer counts only once ``pid`` itself listens there: another program
    on the same address and port (another run's daemon) must not pass for ours.
    """
    with requests.Session() as session:
        session.trust_env = False

        def answers() -> bool:
            with contextlib.suppress(requests.RequestException):
                if session.get(url, timeout=1.0).status_code == 200 and (owned is None or listens_on(pid, *owned)):
                    return True
            if not is_running(pid):
                tail = log_tail(log_path, offset=log_offset)
                if "address already in use" in tail.lower():
                    raise PortTakenError(f"{what} could not bind {url.split('/')[2]}; its log ends with:\n{tail}")
                raise TestbedError(f"{what} (pid {pid}) exited at start; its log ends with:\n{tail}")
            return False

        wait_until(
            answers,
            timeout=deadline - time.monotonic(),
            what=f"{what} (pid {pid}) to be ready at {url}",
            detail=lambda: f"its log ends with:\n{log_tail(log_path, offset=log_offset)}",
        )
